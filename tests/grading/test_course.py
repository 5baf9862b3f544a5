"""The instructor's `course` command: collect, grade, feedback, export, due dates, and the release guard.

Collecting is tested on files alone. Grading runs nbgrader's real autograde (through `course grade`) on lab 00,
the fastest lab, for three students graded twice (the grades must be identical), then a failed re-grade and an
edited submission, which must never show a stale score.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers.config import budget, budget_level
from seglabs_grading import course as course_mod
from seglabs_grading import sandbox
from tests import submissions as subs
from tests.labtools import ROOT, hidden_test_lines, lab_names, read, solution_path

LAB = "00_getting_started"
LIMITS = sandbox.Limits(cell_timeout=60, notebook_timeout=300, memory_mb=4096, threads=1)


# =====================================================================================================
# collect (files only, no nbgrader)
# =====================================================================================================
def _bare_course(tmp: Path, labs=("00_getting_started", "01_per_pixel_labels")) -> course_mod.Course:
    for lab in labs:
        (tmp / "solutions" / lab).mkdir(parents=True)
        (tmp / "solutions" / lab / f"{lab}.ipynb").write_text("{}")
    grading = tmp / "grading"
    return course_mod.Course(
        root=tmp,
        config_file=tmp / "nbgrader_config.py",
        source=tmp / "solutions",
        release=tmp / "labs",
        submitted=grading / "submitted",
        autograded=grading / "autograded",
        feedback=grading / "feedback",
        db_path=grading / "gradebook.db",
        cell_timeout=120,
    )


LABS = ["00_getting_started", "01_per_pixel_labels"]


@pytest.mark.parametrize(
    "path, hint, expected",
    [
        ("alice_00_getting_started.ipynb", None, ("alice", "00_getting_started")),
        ("bob_12345_01_per_pixel_labels.ipynb", None, ("bob", "01_per_pixel_labels")),  # Moodle-like id
        (
            "carolking_LATE_111_222_00_getting_started-1.ipynb",
            None,
            ("carolking", "00_getting_started"),
        ),  # Canvas
        (
            "Dan Smith_777_assignsubmission_file_/00_getting_started.ipynb",
            None,
            ("Dan_Smith", "00_getting_started"),
        ),
        (
            "erin/00_getting_started/00_getting_started.ipynb",
            None,
            ("erin", "00_getting_started"),
        ),  # nbgrader
        (  # inside Eve's Moodle folder a student-made bob/<lab>/<lab>.ipynb is still Eve's
            "Eve Smith_5_assignsubmission_file_/bob/01_per_pixel_labels/01_per_pixel_labels.ipynb",
            None,
            ("Eve_Smith", "01_per_pixel_labels"),
        ),
        ("frank.ipynb", "01_per_pixel_labels", ("frank", "01_per_pixel_labels")),
        ("notes.ipynb", None, (None, None)),
        ("alice_00_getting_started.ipynb", "01_per_pixel_labels", (None, None)),  # another lab than --lab
        ("..._00_getting_started.ipynb", None, (None, None)),
        ("readme.txt", None, (None, None)),
    ],
)
def test_match_submission_names(path, hint, expected):
    student, lab, reason = course_mod.match_submission(tuple(path.split("/")), LABS, hint)
    assert (student, lab) == expected, reason
    assert bool(reason) == (student is None)


def _notebook(text: str) -> bytes:
    return json.dumps({"cells": [], "metadata": {"x": text}, "nbformat": 4, "nbformat_minor": 5}).encode()


def test_collect_folder_reports_every_file_and_never_overwrites_silently(tmp_path):
    course = _bare_course(tmp_path / "course")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files = {
        "alice_00_getting_started.ipynb": _notebook("alice"),
        "bob_123_00_getting_started.ipynb": _notebook("bob"),
        "bob_456_00_getting_started.ipynb": _notebook("bob"),  # the same file twice: imported once
        "carol_00_getting_started.ipynb": _notebook("carol v1"),
        "carol_9_00_getting_started.ipynb": _notebook("carol v2"),  # two different files: a conflict
        "notes.ipynb": _notebook("?"),
        "readme.txt": b"hello",
    }
    for name, data in files.items():
        (inbox / name).write_bytes(data)
    when = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp()
    os.utime(inbox / "alice_00_getting_started.ipynb", (when, when))

    report = course_mod.collect(course, inbox)
    assert sorted(s for s, _, _ in report.imported) == ["alice", "bob"]
    assert [c[:2] for c in report.conflicts] == [("carol", LAB)]
    assert [u[0] for u in report.unmatched] == ["notes.ipynb"]
    assert report.ignored == ["readme.txt"]
    alice = course.submission_dir("alice", LAB)
    assert (alice / f"{LAB}.ipynb").read_bytes() == files["alice_00_getting_started.ipynb"]
    assert (alice / "timestamp.txt").read_text().startswith("2025-03-01T12:00:00")
    assert not course.submission_dir("carol", LAB).exists()
    text = "\n".join(report.lines())
    assert "CONFLICT  carol" in text and "UNMATCHED notes.ipynb" in text

    # Collecting again: unchanged. A different alice: kept unless --replace, which keeps the old one aside.
    (inbox / "alice_00_getting_started.ipynb").write_bytes(_notebook("alice v2"))
    again = course_mod.collect(course, inbox)
    assert [r[0] for r in again.kept] == ["alice"] and [r[0] for r in again.unchanged] == ["bob"]
    assert (alice / f"{LAB}.ipynb").read_bytes() == files["alice_00_getting_started.ipynb"]
    replaced = course_mod.collect(course, inbox, replace=True)
    assert [r[0] for r in replaced.replaced] == ["alice"]
    assert (alice / f"{LAB}.ipynb").read_bytes() == _notebook("alice v2")
    backups = list((course.grading / "replaced" / "alice" / LAB).glob(f"*/{LAB}.ipynb"))
    assert len(backups) == 1 and backups[0].read_bytes() == files["alice_00_getting_started.ipynb"]


def test_collect_lms_zip_stays_inside_the_course(tmp_path):
    course = _bare_course(tmp_path / "course")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("submissions/erin_LATE_1_2_01_per_pixel_labels.ipynb", _notebook("erin"))
        zf.writestr("submissions/../../../evil_00_getting_started.ipynb", _notebook("evil"))
        zf.writestr("__MACOSX/submissions/._erin_LATE_1_2_01_per_pixel_labels.ipynb", b"junk")
    report = course_mod.collect(course, archive, timestamps="none")
    assert sorted((s, lab) for s, lab, _ in report.imported) == [
        ("erin", "01_per_pixel_labels"),
        ("evil", LAB),
    ]
    assert not (tmp_path / "evil_00_getting_started.ipynb").exists()
    assert (course.submission_dir("evil", LAB) / f"{LAB}.ipynb").exists()
    assert not (course.submission_dir("erin", "01_per_pixel_labels") / "timestamp.txt").exists()
    with pytest.raises(course_mod.CourseError, match="unknown lab"):
        course_mod.collect(course, archive, lab="99_nope")


MOODLE = "{name}_{id}_assignsubmission_file_/{file}"


def test_collect_moodle_credits_the_submission_folder_never_the_file_name(tmp_path):
    # Eve names her file after Bob; Bob's own file comes in the same export. Each is credited to its folder.
    course = _bare_course(tmp_path / "course")
    archive = tmp_path / "moodle.zip"
    lab = "01_per_pixel_labels"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(MOODLE.format(name="Eve Stone", id=12, file=f"Bob_Lee_{lab}.ipynb"), _notebook("eve"))
        zf.writestr(MOODLE.format(name="Bob Lee", id=13, file=f"{lab}.ipynb"), _notebook("bob"))
        zf.writestr(MOODLE.format(name="Ann Hill", id=14, file=f"{lab}.ipynb"), _notebook("ann v1"))
        zf.writestr(MOODLE.format(name="Ann Hill", id=14, file=f"{lab} (1).ipynb"), _notebook("ann v2"))
        zf.writestr(f"Carl_Fox_{lab}.ipynb", _notebook("outside every folder"))
    report = course_mod.collect(course, archive, timestamps="none")
    assert sorted(s for s, _, _ in report.imported) == ["Bob_Lee", "Eve_Stone"]
    assert course.submission_dir("Eve_Stone", lab).joinpath(f"{lab}.ipynb").read_bytes() == _notebook("eve")
    assert course.submission_dir("Bob_Lee", lab).joinpath(f"{lab}.ipynb").read_bytes() == _notebook("bob")
    assert [c[:2] for c in report.conflicts] == [("Ann_Hill", lab)]  # two different files: reported, neither
    assert [u[0] for u in report.unmatched] == [f"Carl_Fox_{lab}.ipynb"]
    assert (
        not course.submission_dir("Ann_Hill", lab).exists()
        and not course.submission_dir("Carl_Fox", lab).exists()
    )


def _canvas_roster(path: Path) -> Path:
    path.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section\n"
        "    Points Possible,,,,\n"
        '"Lee, Bob",501,u501,blee,S1\n'
        '"Stone, Eve",502,u502,estone,S1\n'
    )
    return path


def test_collect_canvas_matches_user_ids_through_the_roster(tmp_path):
    course = _bare_course(tmp_path / "course")
    inbox = tmp_path / "canvas"
    inbox.mkdir()
    (inbox / f"stoneeve_502_9001_Bob_Lee_{LAB}.ipynb").write_bytes(_notebook("eve"))  # Eve's, named after Bob
    (inbox / f"leebob_LATE_501_9002_{LAB}.ipynb").write_bytes(_notebook("bob"))
    (inbox / f"someone_777_9003_{LAB}.ipynb").write_bytes(_notebook("?"))  # not on the roster: ambiguous
    (inbox / f"blee_{LAB}.ipynb").write_bytes(_notebook("not a Canvas name"))
    roster = course_mod.read_roster(_canvas_roster(tmp_path / "roster.csv"))
    assert roster == {"501": "blee", "502": "estone"}
    report = course_mod.collect(course, inbox, timestamps="none", roster=roster)
    assert sorted(s for s, _, _ in report.imported) == ["blee", "estone"]
    assert course.submission_dir("estone", LAB).joinpath(f"{LAB}.ipynb").read_bytes() == _notebook("eve")
    assert sorted(u[0] for u in report.unmatched) == [f"blee_{LAB}.ipynb", f"someone_777_9003_{LAB}.ipynb"]
    assert any("not in the roster" in reason for _, reason in report.unmatched)
    # Without a roster, Canvas's own name for the user (never the student's file name) is the id.
    plain = course_mod.collect(_bare_course(tmp_path / "course2"), inbox, timestamps="none")
    assert {s for s, _, _ in plain.imported} >= {"stoneeve", "leebob"}


def test_a_bad_roster_is_named_with_what_is_wrong(tmp_path):
    (tmp_path / "r.csv").write_text("Name,Email\nBob,b@x\n")
    with pytest.raises(course_mod.CourseError, match="r.csv: not a Canvas gradebook export"):
        course_mod.read_roster(tmp_path / "r.csv")


def test_shared_data_dir_matches_helpers_data(monkeypatch):
    pytest.importorskip("helpers.data")
    from helpers.data import data_dir

    monkeypatch.delenv("SEGLAB_DATA", raising=False)
    assert course_mod.shared_data_dir() == data_dir()
    monkeypatch.setenv("SEGLAB_DATA", "/somewhere/else")
    assert course_mod.shared_data_dir() == data_dir()


def test_cli_runs_as_a_module_and_lists_the_commands():
    run = subprocess.run(
        [sys.executable, "-m", "seglabs_grading.course", "--help"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    for command in ("release", "collect", "grade", "feedback", "export", "due", "extend"):
        assert command in run.stdout
    script = Path(sys.executable).parent / "course"
    if script.exists():  # installed by `pip install -e .` once pyproject declares it
        assert subprocess.run([str(script), "--help"], capture_output=True).returncode == 0


# =====================================================================================================
# grade, twice; feedback; export; then a failed re-grade and an edited submission
# =====================================================================================================
DUE = "2025-01-10 00:00:00 UTC"
ON_TIME = "2025-01-09T12:00:00+00:00"
LATE = "2025-01-11T00:00:00+00:00"  # one day late


def _visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _csv(path: Path) -> dict:
    return {(r["student"], r["lab"]): r for r in csv.DictReader(open(path))}


@pytest.fixture(scope="module")
def graded():
    if LAB not in lab_names():
        pytest.skip(f"{LAB} is not present")
    late_is_zero = 'c.LateSubmissionPlugin.penalty_method = "zero"'  # nbgrader's own late policy
    with subs.throwaway_course(LAB, "seglabs-course-", config=late_is_zero) as path:
        root = path.parent
        course = course_mod.load_course(path)
        release = course.release / LAB / f"{LAB}.ipynb"
        batch = {
            "ann": (subs.correct(LAB, release), ON_TIME),
            "ben": (subs.partial(LAB, release), LATE),  # late, but with a 48 h extension
            "dan": (subs.correct(LAB, release), LATE),  # late: the "zero" policy takes everything
        }
        for student, (nb, when) in batch.items():
            folder = subs.submit(nb, course.submitted, student, LAB).parent
            (folder / "timestamp.txt").write_text(when)
        course_mod.set_due(course, LAB, DUE)
        course_mod.extend(course, LAB, "ben", hours=48)

        first = course_mod.grade(course, LAB, workers=2, limits=LIMITS, reference=False, progress=False)
        print("\n" + course_mod.grade_summary(first))
        second = course_mod.grade(
            course, LAB, workers=2, limits=LIMITS, force=True, reference=False, progress=False
        )
        skipped = course_mod.grade(course, LAB, workers=2, limits=LIMITS, progress=False)
        pages = {p.parent.parent.name: _visible_text(p.read_text()) for p in course_mod.feedback(course, LAB)}
        export_1 = _csv(course_mod.export(course, root / "out" / "grades.csv")[0])
        by_exercise = list(csv.DictReader(open(root / "out" / "grades-by-exercise.csv")))
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "seglabs_grading.course",
                "--course",
                str(path),
                "export",
                "--out",
                str(root / "cli.csv"),
            ],
            capture_output=True,
            text=True,
        )

        # ann's file is replaced by a corrupt one and re-graded; ben's is edited and not re-graded.
        subs.corrupt(course.submitted, "ann", LAB)
        regrade = course_mod.grade(
            course, LAB, students=["ann"], limits=LIMITS, reference=False, progress=False
        )
        with open(course.submission_dir("ben", LAB) / f"{LAB}.ipynb", "a") as fh:
            fh.write("\n")
        export_2 = _csv(course_mod.export(course, root / "out2" / "grades.csv")[0])
        from nbgrader.api import Gradebook

        with Gradebook(course.db_url) as gb:
            ann_grades = [
                (g.auto_score, g.needs_manual_grade)
                for g in gb.find_submission_notebook(LAB, LAB, "ann").grades
            ]
        yield {
            "course": course,
            "first": first,
            "second": second,
            "skipped": skipped,
            "pages": pages,
            "export_1": export_1,
            "by_exercise": by_exercise,
            "cli": cli,
            "cli_csv": root / "cli.csv",
            "regrade": regrade,
            "export_2": export_2,
            "ann_grades": ann_grades,
        }


@pytest.mark.slow
@pytest.mark.xdist_group("course-grading")
class TestGradedCourse:
    """Three students of lab 00 graded twice, then a failed re-grade and an edited submission."""

    def test_grades_and_late_submissions(self, graded):
        rows = graded["export_1"]
        ann, ben, dan = (rows[(s, LAB)] for s in ("ann", "ben", "dan"))
        assert [r["status"] for r in (ann, ben, dan)] == ["graded"] * 3
        assert float(ann["score"]) == 10 and float(ann["final_score"]) == 10 and ann["late"] == "no"
        assert 0 < float(ben["score"]) < 10 and ben["late"] == "no" and float(ben["extension_hours"]) == 48
        assert dan["late"] == "yes" and float(dan["seconds_late"]) == 86400
        assert (
            float(dan["score"]) == 10 and float(dan["late_penalty"]) == 10 and float(dan["final_score"]) == 0
        )
        assert ann["due"].startswith("2025-01-10")

    def test_grading_twice_gives_identical_grades(self, graded):
        def grades(report):
            return {r["student"]: (r["status"], r["grades"]) for r in report.results}

        assert grades(graded["first"]) == grades(graded["second"])
        assert len(graded["first"].results) == 3

    def test_unchanged_submissions_are_not_graded_again(self, graded):
        assert graded["skipped"].results == [] and sorted(graded["skipped"].skipped) == ["ann", "ben", "dan"]

    def test_per_exercise_breakdown(self, graded):
        rows = [r for r in graded["by_exercise"] if r["student"] == "ben"]
        assert [r["exercise"] for r in rows] == ["ex1", "ex2"]
        assert [float(r["score"]) for r in rows] == [0.0, 4.0]  # ben's first answer is the stub
        assert sum(float(r["max_points"]) for r in rows) == 10

    def test_feedback_says_what_failed_without_hidden_tests(self, graded):
        pages = graded["pages"]
        assert sorted(pages) == ["ann", "ben", "dan"]
        hidden = hidden_test_lines(read(solution_path(LAB)))
        for student, page in pages.items():
            assert not [line for line in hidden if line in page], f"hidden tests in {student}'s feedback"
        assert "NotImplementedError" in pages["ben"]

    def test_cli_export(self, graded):
        assert graded["cli"].returncode == 0, graded["cli"].stderr
        assert _csv(graded["cli_csv"]) == graded["export_1"]

    def test_a_failed_regrade_never_leaves_a_stale_score(self, graded):
        [result] = graded["regrade"].results
        assert result["status"] == "ungraded: corrupt notebook"
        ann = graded["export_2"][("ann", LAB)]
        assert (
            ann["status"] == "ungraded: corrupt notebook"
            and float(ann["score"]) == 0
            and ann["nbgrader_score"] == ""
        )
        assert "NotJSONError" in ann["reason"]
        # In nbgrader's own gradebook too: the old 10 points are gone and every cell awaits a human.
        assert graded["ann_grades"] and all(score is None and flag for score, flag in graded["ann_grades"])
        assert not (graded["course"].autograded / "ann" / LAB).exists()
        assert not (
            graded["course"].feedback / "ann" / LAB
        ).exists()  # her old feedback cannot be handed back

    def test_an_edited_submission_is_not_reported_with_its_old_score(self, graded):
        ben = graded["export_2"][("ben", LAB)]
        assert ben["status"] == "ungraded: submission changed since grading" and float(ben["score"]) == 0

    def test_release_guard_refuses_changes_that_orphan_submitted_grades(self, graded):
        course = graded["course"]
        source = course.source / LAB / f"{LAB}.ipynb"
        original = source.read_text()
        try:
            nb = read(source)
            for cell in nb.cells:
                meta = cell.get("metadata", {}).get("nbgrader", {})
                if meta.get("grade_id", "").startswith("ex1") and meta.get("grade"):
                    meta["points"] = float(meta["points"]) + 1
            import nbformat

            nbformat.write(nb, str(source))
            problems = course_mod.release_guard(course, LAB)
            assert problems and "changed from" in problems[0]
            with pytest.raises(course_mod.CourseError, match="Fixing a lab mid-term"):
                course_mod.release(course, [LAB])
        finally:
            source.write_text(original)
        assert course_mod.release_guard(course, LAB) == []


def test_readme_documents_the_course_command():
    text = (ROOT / "README.md").read_text()
    assert "### Course-scale workflow with the `course` command" in text


@pytest.mark.slow
@pytest.mark.xdist_group("course-grading")
def test_grading_benchmark_loses_nothing():
    """benchmarks/bench_grading.py: a handful of lab 00 submissions here, 100 over labs 00-03 in `make test-full`."""
    if LAB not in lab_names():
        pytest.skip(f"{LAB} is not present")
    spec = importlib.util.spec_from_file_location("bench_grading", ROOT / "benchmarks" / "bench_grading.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    labs = budget(full=[lab for lab in lab_names() if lab.startswith(bench.DEFAULT_LABS)], ci=[LAB])
    args = ["--n", str(budget(full=100 // len(labs), ci=3)), "--labs", *labs, "--budget", budget_level()]
    args += ["--cell-timeout", os.environ.get("SEGLAB_CELL_TIMEOUT", "120")]
    summaries = bench.main(args)
    assert [s["lab"] for s in summaries] == labs
    for s in summaries:
        assert not s["problems"], s["problems"]
        assert s["identical"], f"{s['lab']}: grades differ between 1 and 2 workers"
