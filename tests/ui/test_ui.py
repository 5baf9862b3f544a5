"""The student's experience in a real JupyterLab in a real browser (headless Debian Chromium, Playwright).

For every lab, the student version in ``labs/`` and the solution in ``solutions/`` are opened in one JupyterLab
started from the project's ``.venv`` (``SEGLAB_BUDGET=ci``, an empty data folder so data are generated on first
use as on a fresh machine). All code cells run one by one, then the page must show:

- the notebook running on the project's kernel (the ``.venv``'s Python);
- no error at all in a solution; in a student version only the ``NotImplementedError`` of unanswered exercises;
- no red stderr box, no widget shown as plain text (``IntSlider(...)``) or "Error displaying widget", and no
  error in the browser's console;
- every matplotlib figure as a loaded image; every widget rendered, and every slider changes what its widget
  shows when dragged with the mouse (the dataset browser, the transposed-convolution stepper, ...);
- a live training plot (a ``fit(...)`` cell) that redraws while it trains, and progress bars that finish.

``test_helpers_widgets_in_jupyterlab`` does the same for a small notebook using the helpers' dataset browser,
``fit``'s live plot and the transposed-convolution stepper, whether or not a lab uses them yet.

A screenshot of each whole notebook (JPEG; and a PNG close-up of each widget or live-plot cell) goes to ``screenshots/``
(git-ignored). Run alone with ``make test-ui``; ``make test`` runs it too (one worker, one server, one browser).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.labtools import LABS, ROOT, SOLUTIONS, VENV_BIN, lab_names, release_path, solution_path
from tests.ui.ui_jupyter import CHROMIUM, CHROMIUM_ARGS, CellReport, JupyterLab, NotebookSession

pytestmark = [pytest.mark.ui, pytest.mark.slow, pytest.mark.xdist_group("ui")]

SCREENSHOTS = ROOT / "screenshots"
VENV = VENV_BIN.parent
WIDGET_AS_TEXT = re.compile(
    r"\b(?:IntSlider|FloatSlider|HBox|VBox|FloatProgress|Image|Output)\((?:value|children|layout)"
)
# Calls whose output must be an interactive widget with a slider.
SLIDER_WIDGETS = ("dataset_browser(", "transposed_conv_stepper(")
# The solutions also run under nbval and in the grading tests of `make test`; in the browser they are checked by
# `make test-ui` and `make test-full` (SEGLAB_UI_SOLUTIONS=1), which keeps `make test` within its 15 minutes.
UI_SOLUTIONS = os.environ.get("SEGLAB_UI_SOLUTIONS") == "1"
NOTEBOOKS = [("labs", lab) for lab in lab_names()] + [
    ("solutions", lab) for lab in lab_names() if UI_SOLUTIONS
]


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory):
    """One JupyterLab for the session, serving copies of labs/ and solutions/ (the repository stays clean)."""
    work = tmp_path_factory.mktemp("jupyterlab")
    root = work / "root"
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for src in (LABS, SOLUTIONS):
        if src.is_dir():
            shutil.copytree(src, root / src.name, ignore=ignore)
    server = JupyterLab(
        VENV_BIN,
        root,
        work,
        # ci: kernels train small; an empty data folder: the first lab that needs data generates it, as on a
        # student's fresh machine.
        env={"SEGLAB_BUDGET": "ci", "SEGLAB_DATA": str(work / "data")},
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser_context():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: `make test-ui` installs Debian's package "
            "(apt-get install chromium), or set CHROMIUM=/path/to/chromium"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # One context for the session: JupyterLab's scripts are fetched once, each notebook gets its own tab.
        context = chromium.new_context()
        yield context
        context.close()
        chromium.close()


def _traceback_tail(error: dict, lines: int = 6) -> str:
    tail = [line for line in error["traceback"].splitlines() if line.strip()][-lines:]
    return "\n      ".join(tail)


def _problems(kind: str, cells: list[CellReport]) -> list[str]:
    """Everything on the page a student should not see, one line (or short block) each."""
    problems = []
    for cell in cells:
        if cell.type != "code":
            continue
        for error in cell.errors:
            if kind == "labs" and error["ename"] == "NotImplementedError":
                continue  # an unanswered exercise: expected in the student version
            problems.append(
                f"{cell.where()}: {error['ename']}: {error['evalue']}\n      {_traceback_tail(error)}"
            )
        if cell.stderr.strip():
            problems.append(
                f"{cell.where()}: writes to stderr (a red box):\n      {cell.stderr.strip()[:600]}"
            )
        dom = cell.dom or {}
        pngs = cell.mime_count("image/png")
        if pngs and dom.get("loaded_images", 0) < pngs:
            problems.append(
                f"{cell.where()}: {pngs} figure(s) in the output but {dom.get('loaded_images', 0)} "
                f"loaded image(s) on the page"
            )
        views = cell.mime_count("application/vnd.jupyter.widget-view+json")
        if views and not dom.get("widgets"):
            problems.append(f"{cell.where()}: {views} widget(s) in the output but none rendered on the page")
        if dom.get("widget_errors"):
            problems.append(f"{cell.where()}: a widget failed to render: {dom.get('text', '')[:300]!r}")
        if WIDGET_AS_TEXT.search(dom.get("text", "")):
            problems.append(f"{cell.where()}: a widget is shown as plain text: {dom.get('text', '')[:200]!r}")
        if any("danger" in bar for bar in dom.get("progress", [])):
            problems.append(f"{cell.where()}: a progress bar stopped before the end (red)")
        if not cell.errors and any(call in cell.source for call in SLIDER_WIDGETS):
            if not dom.get("sliders") or not dom.get("widget_images"):
                problems.append(
                    f"{cell.where()}: the interactive widget shows no slider or no picture "
                    f"({dom.get('sliders', 0)} slider(s), {dom.get('widget_images', 0)} picture(s))"
                )
        trained = dom.get("progress") or dom.get("distinct_images_seen", 0)  # a skipped `if` shows neither
        if (
            not cell.errors
            and trained
            and re.search(r"\bfit\(", cell.source)
            and "live_plot=False" not in cell.source
        ):
            if dom.get("distinct_images_seen", 0) < 2:
                problems.append(
                    f"{cell.where()}: the live training plot did not redraw while training "
                    f"({dom.get('distinct_images_seen', 0)} distinct picture(s) seen; under SEGLAB_BUDGET=ci "
                    "validate at least twice, e.g. eval_every=steps // 2)"
                )
    return problems


def _exercise(context, server: JupyterLab, path: str, *, student: bool, shots: Path) -> list[CellReport]:
    """Open ``path``, run every code cell, check the page, drag every slider, save screenshots to ``shots``.*"""
    shots.parent.mkdir(parents=True, exist_ok=True)
    for old in shots.parent.glob(
        f"{shots.name}[.-]*"
    ):  # a picture from an earlier run must not pass for this one
        old.unlink()
    record: dict = {"notebook": path, "phases_s": {}}
    clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        record["phases_s"][name] = round(now - clock, 1)
        clock = now

    session = NotebookSession(context, server, path)
    try:
        session.open()
        phase("open and start the kernel")
        facts = record["kernel"] = session.kernel_facts()
        assert Path(facts["prefix"]).resolve() == VENV.resolve(), (
            f"{path} runs on {facts['executable']} (prefix {facts['prefix']}), not on the project's {VENV}"
        )
        assert facts["toolbar"] == facts["display"] == "Python 3 (ipykernel)", (
            f"{path}: the toolbar shows kernel {facts['toolbar']!r} ({facts['display']!r})"
        )

        record["cell_seconds"] = session.run_cells(session.code_cells())
        phase("run the cells")
        session.wait_for_widgets()
        cells = session.report()
        problems = record["problems"] = _problems("labs" if student else "solutions", cells)
        if student and not any(e["ename"] == "NotImplementedError" for c in cells for e in c.errors):
            problems.append("no exercise raised NotImplementedError: is this really the student version?")

        # Drag every slider with the mouse: what its widget shows must change.
        record["sliders_moved"] = []
        for slider in session.sliders():
            try:
                session.drag_slider(slider["n"])
                record["sliders_moved"].append(slider)
            except AssertionError as err:
                problems.append(f"cell {slider['cell']}: slider {slider['description']!r}: {err}")
        problems.extend(f"browser console error: {text[:300]}" for text in session.console_errors)
        phase("check outputs and move sliders")

        close_ups = {
            cell.index: shots.parent / f"{shots.name}-cell{cell.index:02d}.png"
            for cell in cells
            if cell.dom and (cell.dom["widgets"] or cell.dom["distinct_images_seen"] > 1)
        }
        # The whole notebook as JPEG (a 20000-pixel page encodes twice as fast as PNG), close-ups as PNG.
        session.screenshots(shots.parent / f"{shots.name}.jpg", close_ups)
        phase("screenshots")
        assert not problems, f"{path} in JupyterLab ({len(problems)} problem(s)):\n" + "\n".join(
            f"  - {p}" for p in problems
        )
        return cells
    except Exception:
        session.page.screenshot(path=str(shots.parent / f"{shots.name}-failure.png"))  # the page as it failed
        raise
    finally:
        record["console_errors"] = session.console_errors
        record["seconds"] = round(sum(record["phases_s"].values()), 1)
        (shots.parent / f"{shots.name}.json").write_text(json.dumps(record, indent=2))
        session.close()


@pytest.mark.parametrize("kind, lab", NOTEBOOKS, ids=[f"{k}-{lab}" for k, lab in NOTEBOOKS])
def test_notebook_in_jupyterlab(kind, lab, jupyterlab, browser_context):
    source = release_path(lab) if kind == "labs" else solution_path(lab)
    assert source.is_file(), f"{source.relative_to(ROOT)} is missing: run `make labs`"
    _exercise(
        browser_context,
        jupyterlab,
        f"{kind}/{lab}/{source.name}",
        student=kind == "labs",
        shots=SCREENSHOTS / kind / lab,
    )


# The helpers' interactive pieces, each as a student meets it, whether or not a lab uses it yet.
WIDGET_GALLERY = [
    "from helpers.data import SegmentationFolder, ensure_scenes\n"
    "from helpers.viz import dataset_browser\n\n"
    "root = ensure_scenes('ui-test', n_train=8, n_val=4)  # first use: generated here, with a progress bar\n"
    "dataset_browser(SegmentationFolder(root, 'train'))",
    "import torch\n"
    "from helpers.train import fit, make_loaders, seed_everything\n\n"
    "seed_everything(0)\n"
    "train_loader, val_loader = make_loaders(root, batch_size=4)\n"
    "model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 5, 1))\n"
    "history = fit(model, train_loader, val_loader, steps=3, eval_every=1)",
    "from helpers.viz import transposed_conv_stepper\n\n"
    "transposed_conv_stepper(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.arange(1.0, 10.0).reshape(3, 3),\n"
    "                        stride=2, padding=1, output_padding=1)",
]


def test_helpers_widgets_in_jupyterlab(jupyterlab, browser_context):
    """The dataset browser, the live training plot of ``fit`` and the transposed-convolution stepper render,
    react to their sliders, and generating data on first use shows a progress bar, not an error."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in WIDGET_GALLERY])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    folder = jupyterlab.root / "widgets"
    folder.mkdir(exist_ok=True)
    nbformat.write(nb, str(folder / "helpers_widgets.ipynb"))
    cells = _exercise(
        browser_context,
        jupyterlab,
        "widgets/helpers_widgets.ipynb",
        student=False,
        shots=SCREENSHOTS / "widgets" / "helpers_widgets",
    )
    record = json.loads((SCREENSHOTS / "widgets" / "helpers_widgets.json").read_text())
    moved = {s["description"] for s in record["sliders_moved"]}
    assert {"sample", "opacity", "position"} <= moved, f"sliders moved: {moved}"
    data, training = cells[0].dom, cells[1].dom
    assert data["progress"], "generating the scenes on first use showed no progress bar"
    assert training["progress"] and training["distinct_images_seen"] >= 3, (
        f"fit(steps=3, eval_every=1): progress bar {training['progress']}, "
        f"{training['distinct_images_seen']} live-plot picture(s)"
    )
