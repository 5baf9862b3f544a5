"""Hostile students try to forge grades; the property: **no code in the kernel raises its score above what its
answers earn.**

Every hostile submission of lab 00 is built on answers whose worth is known without grading them: the untouched
student version (earns 0 on every test cell), or the solution of exercise 1 with exercise 2 untouched (earns
exactly exercise 1's points). The attack is added as code or metadata; the submission is graded with plain
``nbgrader autograde`` and the course's ``nbgrader_config.py`` (the harness's pipeline), and no test cell may score
above what its answers earn. The attacks: every forging way of issue 15 (``skip-execution``, ``sys.displayhook``,
IPython hooks, custom exception handlers, patched torch and checks, objects equal to anything, ``sys.modules``
shadowing, a fake kernel-side dispatcher, replies for requests never asked, edited tags and metadata) plus
``os._exit`` and a never-ending call; a submission that records everything the kernel is sent proves the hidden
tests' source never reaches the kernel. ``SEGLAB_TEST_ALL_STUBS=1`` (``make test-full``) adds the slow ones.

The same batch checks per-case credit (one failed case of K scores P × (K−1)/K), and one submission is graded
again with ``course grade`` (the sandbox): the same scores as plain ``nbgrader autograde``.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from seglabs_grading import course as course_mod
from seglabs_grading import sandbox
from seglabs_grading.harness.runner import cell_score
from tests import submissions as subs
from tests.labtools import (
    hidden_test_lines,
    lab_names,
    nbgrader,
    nbgrader_env,
    nbgrader_meta,
    read,
    solution_path,
)

LAB = "00_getting_started"
EX1, EX2 = "ex1_count_pixels_tests", "ex2_image_level_labels_tests"
ANSWERS = {EX1: "ex1_count_pixels", EX2: "ex2_image_level_labels"}
POINTS = {EX1: 6.0, EX2: 4.0}
ALL = os.environ.get("SEGLAB_TEST_ALL_STUBS") == "1"
CALL_LIMIT_S = 2  # the harness's per-call limit in this course (the sleeping attack waits for it)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("forging")]

WRONG_ANSWERS = """
import sys
def count_pixels(label_map, num_classes):  # wrong for every case
    {payload}
    return torch.full((num_classes,), 7, dtype=torch.int64)

def image_level_labels(label_map, class_names):  # wrong for every case
    {payload}
    return ["not a class"]
"""

HOOKS = """
import sys
_ip = get_ipython()
_ip.events.register("pre_run_cell", lambda *a: sys.displayhook(10))
_ip.events.register("post_run_cell", lambda *a: print(10))
_ip.events.register("pre_execute", lambda: sys.displayhook("ok"))
_ip.set_custom_exc((BaseException,), lambda shell, etype, evalue, tb, tb_offset=None: sys.displayhook(10))
_ip.showtraceback = lambda *a, **k: None
sys.excepthook = lambda *a: None
"""

PATCHES = """
import builtins, sys, types, torch, helpers.checks as _hc
torch.equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
torch.Tensor.tolist = lambda self: [0] * 21
_hc.check_equal = lambda *a, **k: True
_hc.run_cases = lambda *a, **k: print("all hidden cases passed")
_fake = types.ModuleType("helpers.checks")
_fake.__dict__.update(_hc.__dict__)
sys.modules["helpers.checks"] = _fake
"""

ANYTHING = """
class _Anything(list):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = None

class _Liar(torch.Tensor):
    def __eq__(self, other):
        return True
    def tolist(self):
        return _Anything()

def count_pixels(label_map, num_classes):
    return torch.full((num_classes,), 7, dtype=torch.int64).as_subclass(_Liar)

def image_level_labels(label_map, class_names):
    return _Anything()
"""

FAKE_DISPATCHER = """
import json, sys, types
from IPython.display import publish_display_data
_MIME = "application/vnd.seglabs.harness+json"

def _serve(namespace, nonce, request=None):  # claims every call passed: True, no forbidden call, no error
    publish_display_data({_MIME: json.dumps({"nonce": nonce, "value": True, "forbidden": [], "count": 0})})

for _name in ("seglabs_grading.harness.kernel_side", "seglabs_grading.harness", "seglabs_grading"):
    _module = types.ModuleType(_name)
    _module.serve, _module.kernel_side, _module.harness = _serve, None, None
    sys.modules[_name] = _module
sys.modules["seglabs_grading.harness"].kernel_side = sys.modules["seglabs_grading.harness.kernel_side"]
sys.modules["seglabs_grading"].harness = sys.modules["seglabs_grading.harness"]
"""

UNASKED_REPLIES = """
import json
from IPython.display import publish_display_data
_MIME = "application/vnd.seglabs.harness+json"

def _flood():
    for nonce in ("0" * 32, "x", None):
        publish_display_data({_MIME: json.dumps({"nonce": nonce, "value": {"$": "list", "v": []}})})
    publish_display_data({_MIME: "{not json"})
    publish_display_data({_MIME: json.dumps({"nonce": 1, "value": [1] * 1000})})

def count_pixels(label_map, num_classes):
    _flood()
    return None

def image_level_labels(label_map, class_names):
    _flood()
    return None
"""

HUGE_REPLY = """
from IPython.display import publish_display_data

def count_pixels(label_map, num_classes):
    publish_display_data({"application/vnd.seglabs.harness+json": "x" * (70 << 20)})
    return None
"""

EXIT = """
import os
def count_pixels(label_map, num_classes):
    os._exit(0)
"""

SLEEP = """
import time
def count_pixels(label_map, num_classes):
    time.sleep(10**6)
"""

# Records everything the kernel is asked to run; a later cell prints it, base64-encoded (as a student would
# carry hidden tests out in their own feedback).
EXFILTRATE = """
import base64
_seen = []
_kernel = get_ipython().kernel
_do_execute = _kernel.do_execute

async def _recording(code, *args, **kwargs):
    _seen.append(code)
    result = _do_execute(code, *args, **kwargs)
    return (await result) if hasattr(result, "__await__") else result

_kernel.do_execute = _recording
"""
DUMP = "print('EXFIL:' + base64.b64encode('\\n'.join(map(str, _seen)).encode()).decode() + ':END')"


# --- building submissions -------------------------------------------------------------------------------
def _cell(nb, grade_id):
    return next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)


def _blank(release: Path):
    return read(release)


def _ex1_solved(release: Path):
    nb = read(release)
    _cell(nb, ANSWERS[EX1]).source = _cell(read(solution_path(LAB)), ANSWERS[EX1]).source
    return nb


def _with_cell(nb, code: str, after: str = "setup"):
    index = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == after)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def _replace_answers(nb, code: str, which=(EX1, EX2)):
    for test in which:
        _cell(nb, ANSWERS[test]).source = code
    return nb


def _tagged(release: Path):
    nb = _replace_answers(_blank(release), WRONG_ANSWERS.format(payload="pass"))
    for test in (EX1, EX2):
        cell = _cell(nb, test)
        cell.metadata["tags"] = ["skip-execution", "raises-exception", "init_cell"]
        cell.metadata["jupyter"] = {"source_hidden": True, "outputs_hidden": True}
        cell.metadata["editable"] = True
    return nb


def _hostile(release: Path) -> dict[str, tuple]:
    """name -> (notebook, {test cell: points its answers earn}).

    ``make test`` grades five submissions that each combine attacks which do not mask one another;
    ``SEGLAB_TEST_ALL_STUBS=1`` adds every attack on its own and the slow ones."""
    zero = {EX1: 0.0, EX2: 0.0}
    ex1_only = {EX1: POINTS[EX1], EX2: 0.0}
    displayhook = WRONG_ANSWERS.format(payload='sys.displayhook("ok")')
    wrong = WRONG_ANSWERS.format(payload="pass")
    out = {
        "kernel_output_forging": (
            _with_cell(_replace_answers(_tagged(release), displayhook), HOOKS, after=ANSWERS[EX2]),
            zero,
        ),
        "values_that_lie": (_with_cell(_with_cell(_blank(release), PATCHES), ANYTHING), zero),
        "fake_dispatcher_in_sys_modules": (_with_cell(_blank(release), FAKE_DISPATCHER), zero),
        "unasked_replies_and_exfiltration": (
            _with_cell(_with_cell(_with_cell(_blank(release), EXFILTRATE), UNASKED_REPLIES), DUMP, after=EX2),
            zero,
        ),
        "ex1_solved_then_hooks_for_ex2": (
            _with_cell(_ex1_solved(release), HOOKS, after=ANSWERS[EX1]),
            ex1_only,
        ),
    }
    if ALL:
        out.update(
            skip_execution_and_other_tags=(_tagged(release), zero),
            displayhook_in_answers=(_replace_answers(_blank(release), displayhook), zero),
            ipython_hooks_and_exception_handlers=(_with_cell(_blank(release), HOOKS), zero),
            patched_torch_and_checks=(_replace_answers(_with_cell(_blank(release), PATCHES), wrong), zero),
            patched_isinstance=(
                _with_cell(_blank(release), "import builtins\nbuiltins.isinstance = lambda *a: True"),
                zero,
            ),
            objects_equal_to_anything=(_with_cell(_blank(release), ANYTHING), zero),
            replies_for_requests_never_asked=(_with_cell(_blank(release), UNASKED_REPLIES), zero),
            huge_junk_reply=(_with_cell(_blank(release), HUGE_REPLY), zero),
            os_exit_mid_call=(_with_cell(_blank(release), EXIT), zero),
            sleeps_forever_in_a_call=(_with_cell(_blank(release), SLEEP), zero),
            displayhook_after_solved_ex1=(
                _replace_answers(
                    _ex1_solved(release), WRONG_ANSWERS.format(payload="sys.displayhook(4)"), (EX2,)
                ),
                ex1_only,
            ),
        )
    return out


ONE_CASE_WRONG = {
    # fails only "all pixels ignored" (1 of 5 cases)
    ANSWERS[EX1]: "def count_pixels(label_map, num_classes):\n"
    "    labels = label_map.reshape(-1).long()\n"
    "    if bool((labels == 255).all()):\n"
    "        return torch.ones(num_classes, dtype=torch.int64)\n"
    "    labels = labels[labels < num_classes]\n"
    "    return torch.bincount(labels, minlength=num_classes)\n",
    # fails only "other class names" (1 of 4 cases): ignores its class_names argument
    ANSWERS[EX2]: "from helpers.data import CLASSES as _C\n"
    "def image_level_labels(label_map, class_names):\n"
    "    return [_C[c] for c in sorted(torch.unique(label_map).tolist()) if 0 < c < len(_C)]\n",
}


def _one_case_wrong(release: Path):
    nb = read(release)
    for grade_id, source in ONE_CASE_WRONG.items():
        _cell(nb, grade_id).source = source
    return nb


# --- grading ----------------------------------------------------------------------------------------------
def _scores(course: Path) -> dict[str, dict[str, float | None]]:
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}") as gb:
        for student in gb.students:
            try:
                nb = gb.find_submission_notebook(LAB, LAB, student.id)
            except Exception:  # noqa: BLE001 - not graded (e.g. its kernel died)
                continue
            out[student.id] = {g.name: g.auto_score for g in nb.grades if g.name in POINTS}
    return out


@pytest.fixture(scope="module")
def batch():
    limits = f"c.HarnessExecute.call_time_limit = {CALL_LIMIT_S}\nc.Execute.timeout = 20"
    with subs.throwaway_course(LAB, "seglabs-forging-", config=limits) as course:
        release = course / "labs" / LAB / f"{LAB}.ipynb"
        submitted = course / "grading" / "submitted"
        hostile = _hostile(release)
        for name, (nb, _) in hostile.items():
            subs.submit(nb, submitted, name.replace("_", "-"), LAB)
        subs.submit(_one_case_wrong(release), submitted, "one-case-wrong", LAB)
        env = nbgrader_env(grading_dir=course / "grading")
        run = nbgrader(["autograde", LAB, "--force"], cwd=course, env=env, timeout=1200)
        scores = _scores(course)
        yield {"course": course, "hostile": hostile, "scores": scores, "log": run.stdout + run.stderr}


def test_no_code_in_the_kernel_raises_its_score_above_what_its_answers_earn(batch):
    above, graded = [], 0
    for name, (_, earned) in batch["hostile"].items():
        got = batch["scores"].get(name.replace("_", "-"))
        if got is None:  # not graded at all (e.g. the kernel died): scores nothing, never above
            continue
        graded += 1
        for cell, points in earned.items():
            if (got.get(cell) or 0.0) > points:
                above.append(f"{name}: {cell} scored {got.get(cell)} > {points} earned")
    n = len(batch["hostile"])
    print(f"\n{n} hostile submissions, {len(above)} scored above their answers")
    assert not above, "\n".join(above) + "\n" + batch["log"][-3000:]
    may_fail = {"os_exit_mid_call", "patched_isinstance"}  # ungraded (kernel died or hung): scores nothing
    expected = len(set(batch["hostile"]) - may_fail)
    assert graded >= expected, f"only {graded} of {n} hostile submissions were graded\n{batch['log'][-3000:]}"


def test_the_harness_runs_only_hidden_blocks_of_the_release_read_from_the_gradebook(batch):
    # A cell a student adds with test-cell metadata and a "hidden block" is never run in the grader's process:
    # the blocks come from the gradebook. (nbgrader itself refuses a notebook with a grade cell it does not know,
    # and stops its whole batch there: `course grade` grades one submission per job.)
    from seglabs_grading.harness.preprocessors import trusted_test_cells
    from seglabs_grading.harness.runner import split_test_cell

    db_url = f"sqlite:///{batch['course'] / 'grading' / 'gradebook.db'}"
    trusted = trusted_test_cells({"nbgrader": {"db_url": db_url, "notebook": LAB, "assignment": LAB}})
    solution = {
        nbgrader_meta(c)["grade_id"]: c.source for c in read(solution_path(LAB)).cells if nbgrader_meta(c)
    }
    assert sorted(trusted) == [EX1, EX2]
    for grade_id, (split, points) in trusted.items():
        assert split == split_test_cell(solution[grade_id]) and points == POINTS[grade_id]


def test_an_honest_answer_next_to_an_attack_still_earns_its_points(batch):
    got = batch["scores"]["ex1-solved-then-hooks-for-ex2"]
    assert got[EX1] == POINTS[EX1], got


def test_the_hidden_tests_source_never_reaches_the_kernel(batch):
    autograded = batch["course"] / "grading" / "autograded" / "unasked-replies-and-exfiltration" / LAB
    text = json.dumps(nbformat.read(str(autograded / f"{LAB}.ipynb"), as_version=4).cells)
    carried = re.findall(r"EXFIL:([A-Za-z0-9+/=]*):END", text)
    assert carried, "the exfiltrating cell printed nothing"
    seen = base64.b64decode(carried[-1]).decode()
    assert "count_pixels" in seen  # it did record what the kernel ran
    hidden = hidden_test_lines(read(solution_path(LAB)))
    leaked = [line for line in hidden if line in seen]
    assert not leaked and "# harness" not in seen, f"the kernel was sent hidden-test source: {leaked[:3]}"


def test_one_failed_case_of_k_scores_points_times_k_minus_1_over_k(batch):
    got = batch["scores"]["one-case-wrong"]
    assert got[EX1] == cell_score(POINTS[EX1], 4, 5) == 4.8, got
    assert got[EX2] == cell_score(POINTS[EX2], 3, 4) == 3.0, got


def test_feedback_lists_each_case_with_its_message(batch):
    autograded = batch["course"] / "grading" / "autograded" / "one-case-wrong" / LAB / f"{LAB}.ipynb"
    cell = _cell(nbformat.read(str(autograded), as_version=4), EX1)
    kinds = [o["output_type"] for o in cell.outputs]
    assert "error" not in kinds and kinds.count("execute_result") == 1 and kinds[-1] == "execute_result"
    assert all(o.get("name") != "stderr" for o in cell.outputs)
    text = "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
    assert "✗ all pixels ignored: a map of only ignored pixels has no counted pixels" in text
    assert "✓ random 7x9 map" in text and "4 of 5 cases passed" in text


def test_course_grade_gives_the_same_scores_as_plain_nbgrader_autograde(batch):
    course = course_mod.load_course(batch["course"])
    limits = sandbox.Limits(cell_timeout=60, notebook_timeout=300, memory_mb=4096, threads=1)
    report = course_mod.grade(
        course, LAB, students=["one-case-wrong"], limits=limits, force=True, reference=False, progress=False
    )
    assert [r["status"] for r in report.results] == ["graded"], report.results
    again = _scores(batch["course"])["one-case-wrong"]
    assert again == batch["scores"]["one-case-wrong"], (again, batch["scores"]["one-case-wrong"])


def test_a_leaking_feedback_page_is_withheld_and_the_others_are_kept(batch, monkeypatch):
    course = course_mod.load_course(batch["course"])
    leak = hidden_test_lines(read(solution_path(LAB)))[0]
    real = course_mod.nbgrader_cmd

    def generate_then_leak(course_, args, **kw):
        run = real(course_, args, **kw)
        page = course_.feedback / "one-case-wrong" / LAB / f"{LAB}.html"
        if args[0] == "generate_feedback" and page.exists():
            page.write_text(page.read_text() + f"<pre>{leak}</pre>")  # as if a student had printed it
        return run

    monkeypatch.setattr(course_mod, "nbgrader_cmd", generate_then_leak)
    report = course_mod.feedback_report(course, LAB)
    assert [w.split(" ")[0] for w in report.withheld] == [
        str(course.feedback / "one-case-wrong" / LAB / f"{LAB}.html")
    ]
    assert report.pages and all("one-case-wrong" not in str(p) for p in report.pages)
    assert not (course.feedback / "one-case-wrong" / LAB / f"{LAB}.html").exists()


# --- every lab (make test-full): generic attacks on the untouched student version must score 0 -------------------
def _generic_hostile(lab: str, release: Path) -> dict[str, object]:
    """Attacks that need no knowledge of the lab, on its untouched version (which earns 0 everywhere)."""
    tests = subs.test_cell_ids(read(release))

    def tagged_with_hooks():
        nb = _with_cell(read(release), HOOKS)
        for cell in nb.cells:
            if nbgrader_meta(cell).get("grade_id") in tests:
                cell.metadata["tags"] = ["skip-execution", "raises-exception", "init_cell"]
        return nb

    return {
        "hooks-and-tags": tagged_with_hooks(),
        "fake-dispatcher": _with_cell(read(release), FAKE_DISPATCHER),
    }


@pytest.mark.skipif(not ALL, reason="one batch per lab: runs in make test-full (SEGLAB_TEST_ALL_STUBS=1)")
@pytest.mark.parametrize("lab", [lab for lab in lab_names() if lab != LAB])
def test_generic_attacks_on_every_lab_score_zero(lab):
    limit = f"c.HarnessExecute.call_time_limit = {CALL_LIMIT_S}"
    with subs.throwaway_course(lab, f"seglabs-forging-{lab}-", config=limit) as course:
        release = course / "labs" / lab / f"{lab}.ipynb"
        attacks = _generic_hostile(lab, release)
        for name, nb in attacks.items():
            subs.submit(nb, course / "grading" / "submitted", name, lab)
        run = nbgrader(
            ["autograde", lab, "--force"], cwd=course, env=nbgrader_env(grading_dir=course / "grading")
        )
        from nbgrader.api import Gradebook

        above = []
        with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}") as gb:
            for name in attacks:
                try:
                    grades = gb.find_submission_notebook(lab, lab, name).grades
                except Exception:  # noqa: BLE001 - not graded: scores nothing
                    continue
                above += [
                    f"{name}: {g.name} scored {g.auto_score}" for g in grades if (g.auto_score or 0) > 0
                ]
        print(f"\n{lab}: {len(attacks)} hostile submissions, {len(above)} scored above their answers")
        assert not above, "\n".join(above) + "\n" + (run.stdout + run.stderr)[-3000:]
