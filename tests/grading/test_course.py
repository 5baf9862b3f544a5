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
import unicodedata
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
            ("carolking_111", "00_getting_started"),
        ),  # Canvas: its name and user id
        (
            "Dan Smith_777_assignsubmission_file_/00_getting_started.ipynb",
            None,
            ("Dan_Smith_777", "00_getting_started"),
        ),  # Moodle: its name and participant number
        (
            "erin/00_getting_started/00_getting_started.ipynb",
            None,
            ("erin", "00_getting_started"),
        ),  # nbgrader
        (  # inside Eve's Moodle folder a student-made bob/<lab>/<lab>.ipynb is still Eve's
            "Eve Smith_5_assignsubmission_file_/bob/01_per_pixel_labels/01_per_pixel_labels.ipynb",
            None,
            ("Eve_Smith_5", "01_per_pixel_labels"),
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


def _submitted(course: course_mod.Course, student: str, lab: str = LAB) -> bytes:
    return (course.submission_dir(student, lab) / f"{lab}.ipynb").read_bytes()


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
        ("erin_1", "01_per_pixel_labels"),
        ("evil", LAB),
    ]
    assert not (tmp_path / "evil_00_getting_started.ipynb").exists()
    assert (course.submission_dir("evil", LAB) / f"{LAB}.ipynb").exists()
    assert not (course.submission_dir("erin_1", "01_per_pixel_labels") / "timestamp.txt").exists()
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
    assert sorted(s for s, _, _ in report.imported) == ["Bob_Lee_13", "Eve_Stone_12"]
    assert _submitted(course, "Eve_Stone_12", lab) == _notebook("eve")
    assert _submitted(course, "Bob_Lee_13", lab) == _notebook("bob")
    assert [c[:2] for c in report.conflicts] == [
        ("Ann_Hill_14", lab)
    ]  # two different files: reported, neither
    assert [u[0] for u in report.unmatched] == [f"Carl_Fox_{lab}.ipynb"]
    assert not course.submission_dir("Ann_Hill_14", lab).exists()
    assert not course.submission_dir("Carl_Fox", lab).exists()


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
    assert roster.lms == "Canvas" and roster.ids == {"501": "blee", "502": "estone"}
    report = course_mod.collect(course, inbox, timestamps="none", roster=roster)
    assert sorted(s for s, _, _ in report.imported) == ["blee", "estone"]
    assert course.submission_dir("estone", LAB).joinpath(f"{LAB}.ipynb").read_bytes() == _notebook("eve")
    assert sorted(u[0] for u in report.unmatched) == [f"blee_{LAB}.ipynb", f"someone_777_9003_{LAB}.ipynb"]
    assert any("not in the roster" in reason for _, reason in report.unmatched)
    # Without a roster, Canvas's own name for the user and its user id (never the student's file name).
    plain = course_mod.collect(_bare_course(tmp_path / "course2"), inbox, timestamps="none")
    assert {s for s, _, _ in plain.imported} >= {"stoneeve_502", "leebob_501"}


def test_a_bad_roster_is_named_with_what_is_wrong(tmp_path):
    (tmp_path / "r.csv").write_text("Name,Email\nBob,b@x\n")
    with pytest.raises(course_mod.CourseError, match="r.csv: not a Canvas gradebook export"):
        course_mod.read_roster(tmp_path / "r.csv")


LAB1 = "01_per_pixel_labels"
THAI = "สมชาย ใจดี"  # ใจดี ends in U+0E35, a combining vowel (not \w)


def _zip(path: Path, files: dict[str, bytes], utf8_flag: bool = True) -> Path:
    """A zip of ``files``; without ``utf8_flag`` its names are raw UTF-8 without zip's UTF-8 flag, as rubyzip
    (Canvas) writes them, so :mod:`zipfile` reads them as cp437."""
    stand_ins = {name: f"n{i}_".ljust(len(name.encode()), "x") for i, name in enumerate(files)}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name if utf8_flag else stand_ins[name], data)
    if not utf8_flag:
        raw = path.read_bytes()
        for name, stand_in in stand_ins.items():
            raw = raw.replace(stand_in.encode(), name.encode())
        path.write_bytes(raw)
    return path


def _moodle_export() -> dict[str, bytes]:
    return {
        MOODLE.format(name="John Smith", id=101, file=f"{LAB1}.ipynb"): _notebook("john 101"),
        MOODLE.format(name="John Smith", id=102, file=f"{LAB1}.ipynb"): _notebook("john 102"),
        MOODLE.format(name="Seán O'Brien", id=103, file=f"{LAB1}.ipynb"): _notebook("sean"),
        MOODLE.format(name=THAI, id=104, file=f"{LAB1}.ipynb"): _notebook("somchai"),
        # Eve names her file after John 101 (Moodle's flat name, even): still Eve's.
        MOODLE.format(
            name="Eve Stone", id=105, file=f"John Smith_101_assignsubmission_file_{LAB1}.ipynb"
        ): _notebook("eve"),
    }


def test_moodle_ids_come_from_the_participant_number_and_survive_any_name(tmp_path):
    course = _bare_course(tmp_path / "course")
    export = _moodle_export()
    report = course_mod.collect(course, _zip(tmp_path / "moodle.zip", export), timestamps="none")
    expected = {
        "John_Smith_101": "john 101",
        "John_Smith_102": "john 102",  # two John Smiths: two students, never one
        "Seán_OBrien_103": "sean",
        "สมชาย_ใจดี_104": "somchai",
        "Eve_Stone_105": "eve",
    }
    assert sorted(s for s, _, _ in report.imported) == sorted(expected), report.lines()
    for student, text in expected.items():
        assert _submitted(course, student, LAB1) == _notebook(text)
        assert course_mod.valid_student_id(student)
    assert not report.unmatched and not report.conflicts and not report.ambiguous
    assert any("per assignment" in line for line in report.lines())  # says to pass the worksheet
    # Re-collecting the same export (zip again, or unpacked on macOS, names NFD): the same ids, all unchanged.
    again = course_mod.collect(course, tmp_path / "moodle.zip", timestamps="none")
    assert not again.imported and sorted(s for s, _, _ in again.unchanged) == sorted(expected)
    for name, data in export.items():
        dest = tmp_path / "unpacked" / unicodedata.normalize("NFD", name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    unpacked = course_mod.collect(course, tmp_path / "unpacked", timestamps="none")
    assert not unpacked.imported and sorted(s for s, _, _ in unpacked.unchanged) == sorted(expected)


def test_moodle_flat_names_and_a_one_student_export_credit_the_participant(tmp_path):
    # "Download submissions in folders" off: <Full Name>_<participant>_assignsubmission_file_<file>.
    course = _bare_course(tmp_path / "course")
    flat = f"Eve Stone_105_assignsubmission_file_Bob_Lee_{LAB1}.ipynb"
    report = course_mod.collect(
        course, _zip(tmp_path / "flat.zip", {flat: _notebook("eve")}), timestamps="none"
    )
    assert [s for s, _, _ in report.imported] == ["Eve_Stone_105"]
    # An export holding one student's folder: that folder is the student, not a wrapper to drop.
    one = MOODLE.format(name="Eve Stone", id=105, file=f"Bob_Lee_{LAB1}.ipynb")
    other = _bare_course(tmp_path / "course2")
    report = course_mod.collect(other, _zip(tmp_path / "one.zip", {one: _notebook("eve")}), timestamps="none")
    assert [s for s, _, _ in report.imported] == ["Eve_Stone_105"]
    assert not other.submission_dir("Bob_Lee", LAB1).exists()
    # A file beside the submission folders is no one's, even when no file in them names a lab.
    loose = {
        MOODLE.format(name="Eve Stone", id=105, file="notes.ipynb"): b"{}",
        f"Bob_Lee_{LAB1}.ipynb": b"{}",
    }
    report = course_mod.collect(other, _zip(tmp_path / "loose.zip", loose), timestamps="none")
    assert not report.imported and dict(report.unmatched)[f"Bob_Lee_{LAB1}.ipynb"].startswith("outside every")


def _moodle_worksheet(path: Path) -> Path:
    # Moodle's "Download grading worksheet" CSV; "ID number" appears where the site shows it.
    path.write_text(
        "Identifier,Full name,ID number,Email address,Status,Grade\n"
        "Participant 101,John Smith,6401001,john.smith@uni.example,Submitted,\n"
        "Participant 102,John Smith,,jsmith2@uni.example,Submitted,\n"
        "Participant 103,Seán O'Brien,,sean.obrien@uni.example,Submitted,\n"
        f"Participant 104,{THAI},6401004,,Submitted,\n"
        "Participant 105,Eve Stone,6401005,eve@uni.example,Submitted,\n"
        "Participant 106,Ann Hill,6401005,ann@uni.example,Submitted,\n",  # a typo: Eve's ID number
        encoding="utf-8-sig",
    )
    return path


def test_moodle_worksheet_maps_participants_to_the_instructors_ids(tmp_path):
    roster = course_mod.read_roster(_moodle_worksheet(tmp_path / "worksheet.csv"))
    assert roster.lms == "Moodle"
    assert {k: roster.ids[k] for k in ("101", "102", "103", "104")} == {
        "101": "6401001",  # ID number
        "102": "jsmith2",  # else the email address before its '@'
        "103": "sean.obrien",
        "104": "6401004",
    }
    assert set(roster.ambiguous) == {"105", "106"}  # one ID number for two participants: neither credited
    course = _bare_course(tmp_path / "course")
    export = _moodle_export()
    export[MOODLE.format(name="Ann Hill", id=106, file=f"{LAB1}.ipynb")] = _notebook("ann")
    export[MOODLE.format(name="Zoe Park", id=999, file=f"{LAB1}.ipynb")] = _notebook("not on the worksheet")
    archive = _zip(tmp_path / "moodle.zip", export)
    report = course_mod.collect(course, archive, timestamps="none", roster=roster)
    assert sorted(s for s, _, _ in report.imported) == ["6401001", "6401004", "jsmith2", "sean.obrien"]
    assert _submitted(course, "6401001", LAB1) == _notebook("john 101")
    assert [u[0] for u in report.unmatched] == [n for n in export if "_999_" in n]
    assert [a[:3] for a in report.ambiguous] == [
        ("6401005", LAB1, sorted(n for n in export if "_105_" in n or "_106_" in n))
    ]
    assert not course.submission_dir("6401005", LAB1).exists()
    assert not any("per assignment" in line for line in report.lines())
    # A Canvas roster for a Moodle export: every file reported, none credited.
    canvas = course_mod.read_roster(_canvas_roster(tmp_path / "canvas.csv"))
    wrong = course_mod.collect(_bare_course(tmp_path / "course2"), archive, dry_run=True, roster=canvas)
    assert not wrong.imported and all("roster is Canvas's" in r for _, r in wrong.unmatched)


def test_canvas_ids_keep_two_john_smiths_and_any_name(tmp_path):
    # Canvas writes the sortable name lower-cased, stripped of non-word characters, and the user id after it.
    files = {
        f"smithjohn_501_9001_{LAB1}.ipynb": _notebook("john 501"),
        f"smithjohn_late_502_9002_{LAB1}.ipynb": _notebook("john 502"),
        f"obrienseán_503_9003_{LAB1}.ipynb": _notebook("sean"),
        f"ใจดีสมชาย_504_9004_{LAB1}.ipynb": _notebook("somchai"),
        f"stoneeve_505_9005_smithjohn_501_9001_{LAB1}.ipynb": _notebook("eve"),  # Eve imitates John 501
    }
    archive = _zip(tmp_path / "canvas.zip", files, utf8_flag=False)  # rubyzip: UTF-8 names, no flag
    with zipfile.ZipFile(archive) as zf:  # what zipfile alone makes of those names
        assert not any(i.flag_bits & 0x800 for i in zf.infolist())
        assert f"obrienseán_503_9003_{LAB1}.ipynb" not in zf.namelist()
    course = _bare_course(tmp_path / "course")
    report = course_mod.collect(course, archive, timestamps="none")
    expected = {
        "smithjohn_501": "john 501",
        "smithjohn_502": "john 502",
        "obrienseán_503": "sean",
        "ใจดีสมชาย_504": "somchai",
        "stoneeve_505": "eve",
    }
    assert sorted(s for s, _, _ in report.imported) == sorted(expected), report.lines()
    for student, text in expected.items():
        assert _submitted(course, student, LAB1) == _notebook(text)
    again = course_mod.collect(course, archive, timestamps="none")
    assert not again.imported and len(again.unchanged) == len(expected)
    # Through the roster: SIS Login ID, else the roster's name with the user id; one login for two users is
    # ambiguous, never merged.
    (tmp_path / "roster.csv").write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section\n"
        "    Points Possible,,,,\n"
        '"Smith, John",501,,,S1\n"Smith, John",502,,,S1\n'
        '"O\'Brien, Seán",503,,sobrien,S1\n'
        '"ใจดี, สมชาย",504,,somchai,S1\n"Stone, Eve",505,,somchai,S1\n',
        encoding="utf-8",
    )
    roster = course_mod.read_roster(tmp_path / "roster.csv")
    report = course_mod.collect(_bare_course(tmp_path / "course2"), archive, timestamps="none", roster=roster)
    # (A row without a login: the name as Canvas writes it and the user id, the id without a roster.)
    assert sorted(s for s, _, _ in report.imported) == ["smithjohn_501", "smithjohn_502", "sobrien"]
    assert [a[:3] for a in report.ambiguous] == [
        ("somchai", LAB1, sorted(n for n in files if "_504_" in n or n.startswith("stoneeve")))
    ]


def test_files_of_two_lms_users_with_one_id_are_ambiguous_never_merged(tmp_path):
    # A Canvas roster built by hand can give two users one id; identical files must not merge them either.
    course = _bare_course(tmp_path / "course")
    inbox = tmp_path / "canvas"
    inbox.mkdir()
    (inbox / f"smithjohn_501_9001_{LAB}.ipynb").write_bytes(_notebook("same"))
    (inbox / f"smithjohn_502_9002_{LAB}.ipynb").write_bytes(_notebook("same"))
    roster = course_mod.Roster("Canvas", {"501": "jsmith", "502": "jsmith"})
    report = course_mod.collect(course, inbox, timestamps="none", roster=roster)
    assert not report.imported and [a[:2] for a in report.ambiguous] == [("jsmith", LAB)]
    assert "AMBIGUOUS jsmith" in "\n".join(report.lines())
    assert not course.submission_dir("jsmith", LAB).exists()


def test_a_canvas_export_stays_canvas_whatever_a_student_names_a_file(tmp_path):
    # Eve names her file as a whole Moodle flat name; the export is still Canvas's, every file is credited by
    # its Canvas user id (with a roster and without), and no file is reported outside any Moodle folder.
    imitation = f"smithjohn_555_777_Bob Lee_42_assignsubmission_file_{LAB}.ipynb"
    files = {
        f"leebob_501_9001_{LAB}.ipynb": _notebook("bob"),
        f"stoneeve_502_9002_{imitation}": _notebook("eve"),
        "stoneeve_502_9003_Bob Lee_42_assignsubmission_file_01_x.ipynb": _notebook("no lab"),
    }
    archive = _zip(tmp_path / "canvas.zip", files)
    plain = course_mod.collect(_bare_course(tmp_path / "c1"), archive, timestamps="none")
    assert sorted(s for s, _, _ in plain.imported) == ["leebob_501", "stoneeve_502"], plain.lines()
    assert dict(plain.unmatched) == {
        "stoneeve_502_9003_Bob Lee_42_assignsubmission_file_01_x.ipynb": "no lab name in the file name (pass "
        "--lab LAB)"
    }
    assert not any("Moodle" in line for line in plain.lines())
    roster = course_mod.read_roster(_canvas_roster(tmp_path / "roster.csv"))
    course = _bare_course(tmp_path / "c2")
    with_roster = course_mod.collect(course, archive, timestamps="none", roster=roster)
    assert sorted(s for s, _, _ in with_roster.imported) == ["blee", "estone"], with_roster.lines()
    assert _submitted(course, "estone") == _notebook("eve")
    assert [r for _, r in with_roster.unmatched] == ["no lab name in the file name (pass --lab LAB)"]
    # One such file alone, with the roster: the roster says Canvas, so it is Canvas user 502's.
    alone = {f"stoneeve_502_9002_{imitation}": _notebook("eve")}
    one = course_mod.collect(
        _bare_course(tmp_path / "c3"), _zip(tmp_path / "one.zip", alone), timestamps="none", roster=roster
    )
    assert [s for s, _, _ in one.imported] == ["estone"], one.lines()


def test_a_moodle_export_stays_moodle_whatever_a_student_names_a_file(tmp_path):
    # Flat Moodle names whose student part is a whole Canvas name: Moodle's participant, never Canvas's user.
    flat = {
        f"Eve Stone_105_assignsubmission_file_leebob_501_9001_{LAB}.ipynb": _notebook("eve"),
        f"Bob Lee_106_assignsubmission_file_{LAB}.ipynb": _notebook("bob"),
        "notes.txt": b"instructor's notes",
    }
    report = course_mod.collect(
        _bare_course(tmp_path / "c1"), _zip(tmp_path / "flat.zip", flat), timestamps="none"
    )
    assert sorted(s for s, _, _ in report.imported) == ["Bob_Lee_106", "Eve_Stone_105"], report.lines()
    folders = {MOODLE.format(name="Eve Stone", id=105, file=f"leebob_501_9001_{LAB}.ipynb"): _notebook("eve")}
    report = course_mod.collect(
        _bare_course(tmp_path / "c2"), _zip(tmp_path / "f.zip", folders), timestamps="none"
    )
    assert [s for s, _, _ in report.imported] == ["Eve_Stone_105"], report.lines()


def test_recollecting_an_nbgrader_tree_keeps_its_ids(tmp_path):
    # A previous submitted/ (or a TA's folder): today's ids, numbers and all, are kept as written.
    tree = tmp_path / "old" / "submitted"
    for student, text in (("John_Smith_101", "john 101"), ("John_Smith_102", "john 102"), ("bob_7", "bob")):
        (tree / student / LAB1).mkdir(parents=True)
        (tree / student / LAB1 / f"{LAB1}.ipynb").write_bytes(_notebook(text))
    (
        tree / "Ann_Hill_104"
    ).mkdir()  # a folder per student, the file named after the lab: the folder's name too
    (tree / "Ann_Hill_104" / f"{LAB1}.ipynb").write_bytes(_notebook("ann"))
    course = _bare_course(tmp_path / "course")
    report = course_mod.collect(course, tree, timestamps="none")
    assert sorted(s for s, _, _ in report.imported) == [
        "Ann_Hill_104",
        "John_Smith_101",
        "John_Smith_102",
        "bob_7",
    ], report.lines()
    assert _submitted(course, "John_Smith_102", LAB1) == _notebook("john 102")
    assert not report.conflicts and not report.unmatched


def test_a_one_student_nbgrader_folder_is_that_student_never_the_lab(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "alice" / LAB1).mkdir(parents=True)
    (inbox / "alice" / LAB1 / f"{LAB1}.ipynb").write_bytes(_notebook("alice"))
    (inbox / "alice" / LAB1 / "timestamp.txt").write_text("2025-03-01T12:00:00+00:00")
    report = course_mod.collect(_bare_course(tmp_path / "c1"), inbox, timestamps="none")
    assert [(s, lab) for s, lab, _ in report.imported] == [("alice", LAB1)], report.lines()
    # A lab's folder alone names no student: reported, not credited to a student called after the lab.
    lone = tmp_path / "lone"
    (lone / LAB1).mkdir(parents=True)
    (lone / LAB1 / f"{LAB1}.ipynb").write_bytes(_notebook("?"))
    report = course_mod.collect(_bare_course(tmp_path / "c2"), lone, timestamps="none")
    assert not report.imported and "is a lab's name" in report.unmatched[0][1], report.lines()


def test_a_canvas_file_without_a_lab_says_so_with_a_roster(tmp_path):
    inbox = tmp_path / "canvas"
    inbox.mkdir()
    (inbox / "leebob_501_9001_homework.ipynb").write_bytes(_notebook("bob"))
    (inbox / f"stoneeve_502_9002_{LAB}.ipynb").write_bytes(_notebook("eve"))
    roster = course_mod.read_roster(_canvas_roster(tmp_path / "roster.csv"))
    report = course_mod.collect(_bare_course(tmp_path / "c"), inbox, timestamps="none", roster=roster)
    assert dict(report.unmatched) == {
        "leebob_501_9001_homework.ipynb": "no lab name in the file name (pass --lab LAB)"
    }


def test_a_roster_row_without_ids_gives_the_id_collect_gives_without_a_roster(tmp_path):
    (tmp_path / "roster.csv").write_text(
        'Student,ID,SIS User ID,SIS Login ID\n"Smith, John",501,,\n"O\'Brien, Seán",503,,\n', encoding="utf-8"
    )
    roster = course_mod.read_roster(tmp_path / "roster.csv")
    files = {
        f"smithjohn_501_9001_{LAB}.ipynb": _notebook("j"),
        f"obrienseán_503_9003_{LAB}.ipynb": _notebook("s"),
    }
    archive = _zip(tmp_path / "canvas.zip", files)
    plain = course_mod.collect(_bare_course(tmp_path / "c1"), archive, timestamps="none")
    assert (
        sorted(roster.ids.values())
        == sorted(s for s, _, _ in plain.imported)
        == ["obrienseán_503", "smithjohn_501"]
    )


def test_ambiguous_files_are_counted_and_said_as_they_are(tmp_path):
    # A roster id shared by two participants: its files are AMBIGUOUS (counted), not UNMATCHED.
    roster = course_mod.read_roster(_moodle_worksheet(tmp_path / "worksheet.csv"))
    export = {
        MOODLE.format(name="Eve Stone", id=105, file=f"{LAB1}.ipynb"): _notebook("eve"),
        MOODLE.format(name="Ann Hill", id=106, file=f"{LAB1}.ipynb"): _notebook("ann"),
    }
    report = course_mod.collect(
        _bare_course(tmp_path / "c1"), _zip(tmp_path / "m.zip", export), timestamps="none", roster=roster
    )
    assert not report.unmatched and [a[:3] for a in report.ambiguous] == [("6401005", LAB1, sorted(export))]
    text = "\n".join(report.lines())
    assert "1 ambiguous" in text and "participants 105 and 106" in text, text
    # One Canvas user and one file matched by its (folder) name, one id: not "different LMS users".
    inbox = tmp_path / "canvas"
    inbox.mkdir()
    (inbox / f"smithjohn_501_9001_{LAB}.ipynb").write_bytes(_notebook("john"))
    (inbox / "smithjohn_501" / LAB).mkdir(parents=True)  # nbgrader's layout, its folder named by hand
    (inbox / "smithjohn_501" / LAB / f"{LAB}.ipynb").write_bytes(_notebook("who?"))
    report = course_mod.collect(_bare_course(tmp_path / "c2"), inbox, timestamps="none")
    line = next(x for x in report.lines() if x.startswith("  AMBIGUOUS"))
    assert "different LMS users" not in line and "Canvas user 501" in line and "by its name" in line, line


def test_a_worksheet_row_without_ids_says_its_id_is_per_assignment(tmp_path):
    (tmp_path / "ws.csv").write_text(
        "Identifier,Full name,ID number,Email address\nParticipant 101,John Smith,,\nParticipant 102,Eve Stone,7,\n"
    )
    roster = course_mod.read_roster(tmp_path / "ws.csv")
    export = {
        MOODLE.format(name="John Smith", id=101, file=f"{LAB1}.ipynb"): _notebook("john"),
        MOODLE.format(name="Eve Stone", id=102, file=f"{LAB1}.ipynb"): _notebook("eve"),
    }
    report = course_mod.collect(
        _bare_course(tmp_path / "c"), _zip(tmp_path / "m.zip", export), timestamps="none", roster=roster
    )
    assert sorted(s for s, _, _ in report.imported) == ["7", "John_Smith_101"]
    notes = [n for n in report.notes if "John_Smith_101" in n]
    assert notes and "per assignment" in notes[0], report.notes


def test_the_summary_counts_the_workers_of_the_students_jobs():
    # The reference solution runs alone (one worker); the students' jobs run in the whole pool.
    ref = {
        "memory_note": "memory: ...; processes: RLIMIT_NPROC only, 90 for your whole uid (what it ran + 1 worker(s) x 72)"
    }
    students = [{"student": "ann", "memory_note": "memory: ...; processes: ... + 4 worker(s) x 72)"}]
    assert "4 worker(s)" in course_mod.summary_memory_note(ref, students)
    assert "1 worker(s)" in course_mod.summary_memory_note(ref, [])
    assert course_mod.summary_memory_note(None, []) == ""


@pytest.mark.parametrize(
    "name, valid",
    [
        ("Seán_OBrien_103", True),
        ("สมชาย_ใจดี_104", True),
        ("6401001", True),
        ("j.smith@uni.example", True),
        ("_reference_solution", False),
        ("a*b", False),  # nbgrader's student_id is a glob
        ("a,b", False),  # and student_id_exclude a comma-separated list
        ("a b", False),
        ("..", False),
        (unicodedata.normalize("NFD", "Seán"), False),
        ("x" * 129, False),  # nbgrader's Student.id is a String(128)
    ],
)
def test_valid_student_ids_follow_nbgrader(name, valid):
    assert course_mod.valid_student_id(name) is valid


def test_grade_defaults_are_the_sandbox_limits():
    args = course_mod._parser().parse_args(["grade", LAB])
    limits = sandbox.Limits()
    assert (args.memory_mb, args.max_procs, args.output_mb) == (
        limits.memory_mb,
        limits.max_procs,
        limits.output_mb,
    )
    # The time limits are resolved per lab (lab_time_limits): the defaults, or what the lab declares if more.
    assert args.cell_timeout is None and args.notebook_timeout is None


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


def _course_with_source(
    tmp_path: Path, lab: str, metadata: dict, cell_timeout: int = 120
) -> course_mod.Course:
    source = tmp_path / "solutions" / lab
    source.mkdir(parents=True)
    (source / f"{lab}.ipynb").write_text(json.dumps({"cells": [], "metadata": metadata, "nbformat": 4}))
    folders = {name: tmp_path / name for name in ("release", "submitted", "autograded", "feedback")}
    return course_mod.Course(
        tmp_path, tmp_path / "nbgrader_config.py", tmp_path / "solutions", **folders,
        db_path=tmp_path / "grading" / "gradebook.db", cell_timeout=cell_timeout,
    )  # fmt: skip


def test_a_lab_that_trains_is_graded_with_the_time_its_source_declares(tmp_path):
    declared = {"seglabs": {"grading": {"cell_timeout_s": 900, "notebook_timeout_s": 1800}}}
    course = _course_with_source(tmp_path, "04_fcn", declared)
    assert course_mod.lab_time_limits(course, "04_fcn") == (900, 1800)
    plain = _course_with_source(tmp_path / "plain", "00_getting_started", {})
    assert course_mod.lab_time_limits(plain, "00_getting_started") == (120, sandbox.Limits().notebook_timeout)
    # A course that already allows more keeps its own limit: the lab's is a floor, not a cap.
    generous = _course_with_source(tmp_path / "generous", "04_fcn", declared, cell_timeout=1200)
    assert course_mod.lab_time_limits(generous, "04_fcn") == (1200, 1800)
    report = course_mod.GradeReport(
        "04_fcn", [], 1.0, time_note=course_mod.time_note(sandbox.Limits(900, 1800))
    )
    assert "time limits: 900 s per cell, 1800 s per submission" in course_mod.grade_summary(report)


def test_a_bad_declared_time_limit_names_the_file_and_the_key(tmp_path):
    course = _course_with_source(tmp_path, "04_fcn", {"seglabs": {"grading": {"cell_timeout_s": "lots"}}})
    with pytest.raises(
        course_mod.CourseError, match=r"04_fcn\.ipynb: metadata\.seglabs\.grading\.cell_timeout_s"
    ):
        course_mod.lab_time_limits(course, "04_fcn")


@pytest.mark.parametrize("lab", ["04_fcn", "05_classifier_to_fcn"])
def test_the_labs_that_train_declare_more_time_than_the_defaults(lab):
    if lab not in lab_names():
        pytest.skip(f"{lab} is not present")
    declared = read(solution_path(lab)).metadata["seglabs"]["grading"]
    defaults = sandbox.Limits()
    assert declared["cell_timeout_s"] > defaults.cell_timeout, declared
    assert declared["notebook_timeout_s"] >= defaults.notebook_timeout, declared
