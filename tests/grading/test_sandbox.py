"""Hostile submissions against ``course grade``: the gradebook and every other file survive, every case is explained.

One batch of lab 00 (the fastest lab) is graded in a throw-away course under /tmp (world-traversable, as a
course folder usually is, so only the sandbox stands between a submission and the files). It holds:

- ``alice``: an honest solution graded *before* the batch; her gradebook rows must not change;
- one submission per attack in ``submissions.ATTACKS`` (delete files, overwrite the gradebook, read other
  submissions, ``sys.exit``, kill the kernel, fork past the process cap, allocate past the memory cap,
  print 100 MB, an infinite loop, a loop that ignores the interrupt);
- one per tampering in ``submissions.TAMPERING`` (test cell deleted, metadata stripped, points or lock changed,
  a duplicated grade_id, a test cell's source emptied) and a corrupt file.

Every attack is bounded (6 GB against a 2 GB cap, 200 forks against 64, 100 MB of output against a 2 MB cap,
loops against 20 s per cell), so a sandbox failure cannot take the machine down. The test ends with the figure
"N hostile submissions, N graded or scored 0 with a reason, 0 gradebook rows lost, 0 files outside the sandbox
changed".

Attacks on files need the grader to run as root (it then switches the kernel to an unprivileged user); as a
normal user they are skipped: the kernel would have the grader's own rights.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tests import submissions as subs
from tests.labtools import lab_names

from seglabs_grading import course as course_mod
from seglabs_grading import sandbox

LAB = "00_getting_started"
FILE_ATTACKS = {"delete_files", "overwrite_gradebook", "read_others", "fork_past_cap"}
LIMITS = sandbox.Limits(
    cell_timeout=20,
    notebook_timeout=180,
    memory_mb=2048,
    max_procs=64,
    output_mb=2,
    threads=1,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("course-grading"),
    pytest.mark.skipif(LAB not in lab_names(), reason=f"{LAB} is not present"),
]

# What each hostile submission must end as: its status, and its score (None: any score below full marks).
EXPECTED = {
    "delete_files": ("graded", 10.0),
    "overwrite_gradebook": ("graded", 10.0),
    "read_others": ("graded", 10.0),
    "sys_exit": ("graded", 10.0),
    "kill_kernel": ("ungraded: kernel died", 0.0),
    "fork_past_cap": ("graded", 10.0),
    "allocate_past_cap": ("graded", 10.0),
    "print_100mb": ("graded", 10.0),
    "infinite_loop": ("graded", None),
    "loop_ignoring_interrupt": ("ungraded: timed out", 0.0),
    "test_cell_deleted": ("tampered: test cell removed", 0.0),
    "test_metadata_stripped": ("tampered: test cell removed", 0.0),
    "test_points_changed": ("tampered: test cell metadata changed", 0.0),
    "test_unlocked": ("tampered: test cell metadata changed", 0.0),
    "duplicate_grade_id": ("tampered: duplicate grade_id", 0.0),
    "test_source_emptied": ("graded", None),
    "monkeypatch_checks": ("graded", 4.0),
    "corrupt": ("ungraded: corrupt notebook", 0.0),
}


def _digest_tree(root: Path, skip) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if skip(rel) or path.is_dir():
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "special"
    return out


def _grading_output(rel: str) -> bool:
    """What grading itself is meant to write in the course folder."""
    return (
        rel.startswith("grading/gradebook.db")
        or rel == "grading/status.json"
        or rel.startswith("grading/autograded")
        or rel.startswith("grading/feedback")
        or rel.startswith("grading/grades")
    )


def _gradebook_rows(db: Path) -> dict[tuple[str, str], float | None]:
    from nbgrader.api import Gradebook

    rows = {}
    with Gradebook(f"sqlite:///{db}") as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                for snb in sub.notebooks:
                    for g in snb.grades:
                        rows[(sub.student.id, g.name)] = g.auto_score
    return rows


def _outputs_text(path: Path) -> str:
    nb = json.loads(path.read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
            parts.extend(str(v) for v in out.get("data", {}).values())
            parts.extend(out.get("traceback", []))
    return "\n".join(parts)


PATCH_AND_WRONG_ANSWER = """
import torch
torch.equal = lambda *args, **kwargs: True  # make every tensor comparison pass...
torch.allclose = lambda *args, **kwargs: True
from helpers.checks import check_equal  # ...before the checks are (first) imported
print("FOOLED" if check_equal("probe", torch.tensor([1]), torch.tensor([2]), strict=False) else "CAUGHT")

def count_pixels(label_map, num_classes):  # wrong on purpose
    return torch.zeros(num_classes, dtype=torch.int64)
"""


def _monkeypatching(release: Path):
    """Lab 00 with a wrong ex1 answer that patches torch's comparisons to hide it."""
    nb = subs.correct(LAB, release)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "ex1_count_pixels":
            cell.source = PATCH_AND_WRONG_ANSWER
    return nb


@pytest.fixture(scope="module")
def batch():
    root = Path(tempfile.mkdtemp(prefix="seglabs-hostile-", dir="/tmp"))
    os.chmod(root, 0o755)  # like a course checkout: other users may traverse it
    canary_dir = Path(tempfile.mkdtemp(prefix="seglabs-canary-", dir="/tmp"))
    os.chmod(canary_dir, 0o755)
    canary = canary_dir / "canary.txt"
    canary.write_text("must survive grading\n")
    os.chmod(canary, 0o644)
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("SEGLAB_GRADING_DIR", str(root / "course" / "grading"))
        mp.setenv("SEGLAB_BUDGET", "ci")
        path = subs.released_course(root, LAB)
        course = course_mod.load_course(path)
        release = course.release / LAB / f"{LAB}.ipynb"
        subs.submit(subs.correct(LAB, release), course.submitted, "alice", LAB)
        first = course_mod.grade(course, LAB, students=["alice"], limits=LIMITS, progress=False)
        assert [r["status"] for r in first.results] == ["graded"], first.results
        # The solution itself was graded first in the same sandbox, with full marks, before any student.
        assert first.reference and first.reference["status"] == "graded", first.reference

        targets = subs.Targets(
            course=course.root,
            gradebook=course.db_path,
            other_submission=course.submission_dir("alice", LAB) / f"{LAB}.ipynb",
            canary=canary,
        )
        hostile = [a for a in subs.ATTACKS if sandbox.is_root() or a not in FILE_ATTACKS]
        for attack in hostile:
            subs.submit(subs.hostile(LAB, release, attack, targets), course.submitted, attack, LAB)
        for how in subs.TAMPERING:
            subs.submit(subs.tampered(LAB, release, how), course.submitted, how, LAB)
        subs.corrupt(course.submitted, "corrupt", LAB)
        subs.submit(_monkeypatching(release), course.submitted, "monkeypatch_checks", LAB)
        students = hostile + list(subs.TAMPERING) + ["corrupt", "monkeypatch_checks"]

        rows_before = _gradebook_rows(course.db_path)
        tree_before = _digest_tree(course.root, _grading_output)
        canary_before = _digest_tree(canary_dir, lambda rel: False)
        report = course_mod.grade(
            course, LAB, students=students, workers=2, limits=LIMITS, reference=False, progress=False
        )
        print("\n" + course_mod.grade_summary(report))
        grades_csv, by_exercise = course_mod.export(course)
        yield {
            "course": course,
            "report": report,
            "students": students,
            "results": {r["student"]: r for r in report.results},
            "rows_before": rows_before,
            "rows_after": _gradebook_rows(course.db_path),
            "tree_before": tree_before,
            "tree_after": _digest_tree(course.root, _grading_output),
            "canary_before": canary_before,
            "canary_after": _digest_tree(canary_dir, lambda rel: False),
            "csv": {(r["student"], r["lab"]): r for r in csv.DictReader(open(grades_csv))},
            "by_exercise": list(csv.DictReader(open(by_exercise))),
        }
    finally:
        mp.undo()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(canary_dir, ignore_errors=True)


def _autograded(batch, student: str) -> Path:
    return batch["course"].autograded / student / LAB / f"{LAB}.ipynb"


@pytest.mark.parametrize("student", list(EXPECTED))
def test_each_hostile_submission_ends_as_expected(batch, student):
    if student not in batch["results"]:
        pytest.skip(f"{student} needs the grader to run as root")
    result = batch["results"][student]
    status, score = EXPECTED[student]
    assert result["status"] == status, (
        f"{student}: {result['status']} ({result['details']}, {result['notes']})"
    )
    row = batch["csv"][(student, LAB)]
    assert row["status"] == status
    if score is None:
        assert 0 <= float(row["score"]) < 10, f"{student} scored {row['score']}"
    else:
        assert float(row["score"]) == score, f"{student} scored {row['score']} (expected {score})"
    if status != "graded":
        assert row["reason"], f"{student}: status {status} has no reason in the export"


def test_attacks_achieved_nothing(batch):
    for student in batch["results"]:
        path = _autograded(batch, student)
        if path.exists():
            text = _outputs_text(path)
            assert "ESCAPED" not in text, f"{student}: " + next(
                ln for ln in text.splitlines() if "ESCAPED" in ln
            )


def test_limits_stopped_forks_memory_and_output(batch):
    if "fork_past_cap" in batch["results"]:
        text = _outputs_text(_autograded(batch, "fork_past_cap"))
        assert "blocked after" in text and "BlockingIOError" in text, text[-500:]
        forks = int(text.split("blocked after ")[1].split()[0])
        assert forks < LIMITS.max_procs
    assert "blocked: MemoryError" in _outputs_text(_autograded(batch, "allocate_past_cap"))
    printed = _autograded(batch, "print_100mb")
    assert printed.stat().st_size < 8 * (1 << 20), "100 MB of output reached the autograded notebook"
    assert any("output truncated" in n for n in batch["results"]["print_100mb"]["notes"])
    assert any("timed out" in n for n in batch["results"]["infinite_loop"]["notes"])


def test_monkeypatched_comparisons_do_not_fool_the_checks(batch):
    # helpers.checks was imported before the student's first cell: it kept the original torch.equal.
    text = _outputs_text(_autograded(batch, "monkeypatch_checks"))
    assert "CAUGHT" in text and "FOOLED" not in text, text[-800:]
    grades = batch["results"]["monkeypatch_checks"]["grades"]
    assert grades[f"{LAB}/ex1_count_pixels_tests"] == 0, grades


def test_restored_test_cell_still_catches_a_wrong_answer(batch):
    # The test cell's source was replaced by `pass` and the answer left as the stub: nbgrader restores the
    # test from the gradebook, so the stubbed exercise scores 0 while the other one keeps its points.
    grades = batch["results"]["test_source_emptied"]["grades"]
    first, second = sorted(grades)
    assert grades[first] == 0 and grades[second] > 0, grades


def test_no_process_of_the_sandbox_users_is_left(batch):
    # Checked by `course grade` itself before it gives the users back (another grader may use them next).
    assert batch["report"].leftover_processes == []


def test_figure_hostile_submissions_are_all_accounted_for(batch):
    students = batch["students"]
    rows = [batch["csv"][(s, LAB)] for s in students]
    explained = [
        r
        for r in rows
        if r["status"] == "graded" or (float(r["score"]) == 0 and r["status"] != "graded" and r["reason"])
    ]
    before, after = batch["rows_before"], batch["rows_after"]
    lost = [key for key, value in before.items() if after.get(key) != value]
    graded_students = {student for student, _ in after}
    lost += [s for s in students if s not in graded_students]  # every hostile submission has gradebook rows
    changed = sorted(
        set(batch["tree_before"].items()) ^ set(batch["tree_after"].items())
        | set(batch["canary_before"].items()) ^ set(batch["canary_after"].items())
    )
    changed_files = sorted({path for path, _ in changed})
    figure = (
        f"{len(students)} hostile submissions, {len(explained)} graded or scored 0 with a reason, "
        f"{len(lost)} gradebook rows lost, {len(changed_files)} files outside the sandbox changed"
    )
    print("\n" + figure)
    assert (
        figure
        == f"{len(students)} hostile submissions, {len(students)} graded or scored 0 with a reason, 0 gradebook rows lost, 0 files outside the sandbox changed"
    ), (
        figure,
        lost,
        changed_files,
    )


def test_instructor_can_accept_a_reviewed_tampered_submission(batch, tmp_path):
    course = batch["course"]
    with pytest.raises(course_mod.CourseError, match="no scores"):
        course_mod.accept(course, LAB, "duplicate_grade_id")  # nbgrader could not grade it: nothing to accept
    entry = course_mod.accept(course, LAB, "test_unlocked")
    assert entry["status"] == "graded" and "accepted by the instructor" in entry["details"][0]
    grades_csv, _ = course_mod.export(course, tmp_path / "grades.csv")
    row = {(r["student"], r["lab"]): r for r in csv.DictReader(open(grades_csv))}[("test_unlocked", LAB)]
    assert row["status"] == "graded" and float(row["score"]) == 10


def test_two_graders_on_one_machine_never_share_a_sandbox_user():
    if not sandbox.is_root():
        pytest.skip("no sandbox users when not root")
    with sandbox.SlotLease(2) as first, sandbox.SlotLease(1) as second:
        assert len({i.uid for i in first.identities + second.identities}) == 3
    with sandbox.SlotLease(1) as again:  # released: the first user is free again
        assert again.identities[0] == first.identities[0]


def test_limits_are_set_in_the_kernel_process():
    limits = sandbox.Limits(memory_mb=1024, max_procs=20, cpu_s=30, file_mb=8)
    code = (
        "import resource as r; print([r.getrlimit(x) for x in "
        "(r.RLIMIT_DATA, r.RLIMIT_NPROC, r.RLIMIT_CPU, r.RLIMIT_FSIZE, r.RLIMIT_CORE)])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=sandbox._limit_setter(limits, 20),
        capture_output=True,
        text=True,
    )
    expected = [(1024 << 20,) * 2, (20, 20), (30, 30), (8 << 20,) * 2, (0, 0)]
    assert run.stdout.strip() == str(expected), run.stderr  # soft and hard: the kernel cannot raise them


def test_kernel_environment_is_a_whitelist(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("SEGLAB_GRADING_DIR", "/somewhere/private")
    monkeypatch.setenv("SEGLAB_BUDGET", "ci")
    env = sandbox.kernel_env(tmp_path, "/data", threads=3)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "SEGLAB_GRADING_DIR" not in env
    assert env["SEGLAB_BUDGET"] == "ci" and env["SEGLAB_DATA"] == "/data" and env["PYTHONHASHSEED"] == "0"
    assert env["OMP_NUM_THREADS"] == "3" and env["HOME"].startswith(str(tmp_path))
