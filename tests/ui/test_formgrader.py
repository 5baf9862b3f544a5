"""The formgrader is inert: a graded submission runs no JavaScript in the instructor's browser (real Chromium).

A hostile lab 00 submission is graded with ``course grade``; its first answer displays HTML whose ``<script>``
and ``<img onerror>`` would write a file through the Jupyter API (``PUT /api/contents``, with the page's XSRF
cookie, as the instructor's logged-in session), and a markdown cell of it holds a ``<script>`` doing the same.
nbgrader's formgrader, in a JupyterLab server started on the course folder with the course's
``nbgrader_config.py``, then shows that submission in headless Debian Chromium.

The same script is first run on that origin by the test itself (``page.evaluate``): it writes its file, so the
attack works where it runs. On the formgrader's page it must write nothing and set no flag.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import nbformat
import pytest

from seglabs_grading import course as course_mod
from seglabs_grading import sandbox
from tests import submissions as subs
from tests.labtools import VENV_BIN, lab_names
from tests.ui.ui_jupyter import CHROMIUM, CHROMIUM_ARGS, JupyterLab

pytestmark = [pytest.mark.ui, pytest.mark.slow, pytest.mark.xdist_group("ui")]

LAB = "00_getting_started"
STUDENT = "mallory"
LIMITS = sandbox.Limits(cell_timeout=60, notebook_timeout=300, threads=1)
SETTLE_S = (
    5  # after the page loaded: time for any script or image error handler to have run (and its request)
)


def attack_js(name: str) -> str:
    """JavaScript that writes ``name`` into the served folder through the Jupyter API, then raises a flag."""
    return (
        "(async () => { const m = document.cookie.match(/_xsrf=([^;]+)/);"
        f" await fetch('/api/contents/{name}', {{method: 'PUT', headers: {{'Content-Type': 'application/json',"
        " 'X-XSRFToken': m ? decodeURIComponent(m[1]) : ''}, body: JSON.stringify({type: 'file', format: 'text',"
        f" content: 'written by a student'}})}}); window.seglabsEscaped = '{name}'; }})()"
    )


def _eval(js: str) -> str:
    return "eval(atob('" + base64.b64encode(js.encode()).decode() + "'))"


def _hostile_submission(release: Path):
    nb = subs.correct(LAB, release)
    html = f'<script>{_eval(attack_js("from-script.txt"))}</script><img src=x onerror="{_eval(attack_js("from-img.txt"))}">'
    code = f"from IPython.display import HTML, display\ndisplay(HTML({html!r}))\n"
    answer = next(
        c for c in nb.cells if subs.nbgrader_meta(c).get("grade_id") == subs.answer_code_cells(nb)[0]
    )
    answer.source = code + answer.source
    markdown = f"My written answer.\n\n<script>{_eval(attack_js('from-markdown.txt'))}</script>\n"
    nb.cells.append(nbformat.v4.new_markdown_cell(markdown))
    return nb


@pytest.fixture(scope="module")
def graded_course():
    if LAB not in lab_names():
        pytest.skip(f"{LAB} is not present")
    with subs.throwaway_course(LAB, "seglabs-formgrader-") as folder:
        course = course_mod.load_course(folder)
        subs.submit(
            _hostile_submission(course.release / LAB / f"{LAB}.ipynb"), course.submitted, STUDENT, LAB
        )
        report = course_mod.grade(course, LAB, limits=LIMITS, reference=False, progress=False)
        assert [r["status"] for r in report.results] == ["graded"], report.results
        yield course, folder.parent


@pytest.fixture(scope="module")
def page(graded_course):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make test-ui` installs Debian's package")
    from playwright.sync_api import sync_playwright

    course, root = graded_course
    work = root / "server"
    work.mkdir()
    server = JupyterLab(VENV_BIN, course.root, work, env={"SEGLAB_GRADING_DIR": str(course.grading)}).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = browser.new_context().new_page()
            tab.goto(f"{server.base}/lab?token={server.token}", timeout=120_000)  # logs in: cookies set
            yield tab, server, course
            browser.close()
    finally:
        server.stop()


def _submission_id(course) -> str:
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        return gb.find_submission_notebook(LAB, LAB, STUDENT).id


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.2)
    return path.exists()


def test_the_attack_writes_a_file_where_it_runs(page):
    tab, _, course = page
    tab.evaluate(attack_js("control.txt"))
    assert _wait_for(course.root / "control.txt", 30), "the attack script cannot write through the API here"
    assert tab.evaluate("window.seglabsEscaped") == "control.txt"
    os.remove(course.root / "control.txt")


def test_formgrader_page_of_a_hostile_submission_runs_no_script(page):
    tab, server, course = page
    try:
        tab.goto(f"{server.base}/formgrader/submissions/{_submission_id(course)}/", timeout=120_000)
    except Exception as err:  # noqa: BLE001 - say why the formgrader did not serve the page
        pytest.fail(f"the formgrader did not show the submission ({err}):\n{server.log_tail()}")
    tab.wait_for_load_state("load")
    text = tab.inner_text("body")
    assert "count_pixels" in text and "My written answer" in text, text[:2000]  # the submission is shown
    time.sleep(SETTLE_S)
    written = [
        name
        for name in ("from-script.txt", "from-img.txt", "from-markdown.txt")
        if (course.root / name).exists()
    ]
    assert written == [], f"the formgrader ran a student's script: it wrote {written}"
    assert tab.evaluate("window.seglabsEscaped") is None
