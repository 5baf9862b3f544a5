"""``course``: the instructor's commands for a whole term, wrapping nbgrader's own.

Run from the course folder (the one with ``nbgrader_config.py``), as ``course ...`` or ``python -m seglabs_grading.course``::

    course release                       # nbgrader generate_assignment for every lab (guards grade_ids mid-term)
    course collect export.zip --lab 01_per_pixel_labels   # LMS zip or folder -> grading/submitted/<student>/<lab>/
    course grade 01_per_pixel_labels --workers 2          # sandboxed parallel autograde, one writer
    course feedback 01_per_pixel_labels                   # nbgrader generate_feedback (hidden tests removed)
    course export                                         # grading/grades.csv + grading/grades-by-exercise.csv
    course due 01_per_pixel_labels "2025-03-01 23:59 +0700"; course extend 01_per_pixel_labels alice --days 2

Grades say what happened. Every grading attempt's outcome is kept in ``grading/status.json`` (written by the single
writer, next to the gradebook), and the export reports, per student and lab, ``graded`` or why not:
``ungraded: corrupt notebook``, ``ungraded: timed out``, ``ungraded: kernel died``, ``ungraded: grading failed``,
``tampered: test cell removed``, ``tampered: test cell metadata changed``, ``tampered: duplicate grade_id``, ...
Anything but ``graded`` scores 0 in the ``score`` column (nbgrader's own number, when it produced one, is kept in
``nbgrader_score`` for review), and a failed re-grade clears the old autograder scores instead of keeping them.
See :mod:`seglabs_grading.sandbox` for how a submission is isolated while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import glob
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.config import data_dir as shared_data_dir
from seglabs_grading import bwrap, cells, sandbox
from seglabs_grading import status as st
from seglabs_grading.harness import seed as harness_seed

REFERENCE_STUDENT = "_reference_solution"
MAX_COLLECT_BYTES = 64 << 20


class CourseError(RuntimeError):
    """A problem the instructor must fix; printed without a traceback."""


# =====================================================================================================
# The course folder, as nbgrader sees it
# =====================================================================================================
@dataclass(frozen=True)
class Course:
    root: Path
    config_file: Path
    source: Path
    release: Path
    submitted: Path
    autograded: Path
    feedback: Path
    db_path: Path
    cell_timeout: int

    @property
    def grading(self) -> Path:
        return self.db_path.parent

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def status_path(self) -> Path:
        return self.grading / "status.json"

    def labs(self) -> list[str]:
        """Labs with a source notebook ``<source>/<lab>/<lab>.ipynb``."""
        if not self.source.is_dir():
            return []
        return sorted(p.name for p in self.source.iterdir() if (p / f"{p.name}.ipynb").is_file())

    def gradebook_labs(self) -> list[str]:
        if not self.db_path.exists():
            return []
        from nbgrader.api import Gradebook

        with Gradebook(self.db_url) as gb:
            return sorted(a.name for a in gb.assignments)

    def submission_dir(self, student: str, lab: str) -> Path:
        return self.submitted / student / lab


def find_course_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file():
            return folder
    raise CourseError(
        f"no nbgrader_config.py in {here} or above: run `course` from the course folder or pass --course"
    )


def load_course(root: Path | None = None) -> Course:
    """Read the course's ``nbgrader_config.py`` with nbgrader's own CourseDirectory."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import PyFileConfigLoader

    root = find_course_root(root)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    cd = CourseDirectory(config=config)
    course_root = Path(cd.root).resolve()

    def folder(name: str) -> Path:
        return (course_root / name).resolve()

    if not cd.db_url.startswith("sqlite:///"):
        raise CourseError(f"`course` needs an SQLite gradebook; nbgrader_config.py sets db_url={cd.db_url!r}")
    db_path = Path(cd.db_url[len("sqlite:///") :])
    db_path = db_path if db_path.is_absolute() else course_root / db_path
    timeout = sandbox.Limits().cell_timeout
    for section in ("Execute", "ExecutePreprocessor"):
        value = config.get(section, {}).get("timeout")
        if isinstance(value, int):
            timeout = value
    return Course(
        root=course_root,
        config_file=root / "nbgrader_config.py",
        source=folder(cd.source_directory),
        release=folder(cd.release_directory),
        submitted=folder(cd.submitted_directory),
        autograded=folder(cd.autograded_directory),
        feedback=folder(cd.feedback_directory),
        db_path=db_path.resolve(),
        cell_timeout=timeout,
    )


def nbgrader_cmd(
    course: Course, args: list[str], timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run one of nbgrader's own commands in the course folder, with this Python's ``bin/`` first on PATH."""
    bindir = Path(sys.executable).parent
    exe = bindir / "nbgrader"
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"  # nbgrader runs `alembic` from here
    cmd = [str(exe) if exe.exists() else "nbgrader", *args]
    return subprocess.run(cmd, cwd=course.root, env=env, capture_output=True, text=True, timeout=timeout)


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def submission_fingerprint(folder: Path) -> str | None:
    """Hash of a submission folder's notebooks and timestamp (what grading depends on)."""
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if (
            path.is_file()
            and not path.is_symlink()
            and (path.suffix == ".ipynb" or path.name == "timestamp.txt")
        ):
            digest.update(path.name.encode() + b"\0" + (_sha256(path) or "").encode() + b"\0")
    return digest.hexdigest()


# =====================================================================================================
# Status sidecar: the outcome of every grading attempt (the single writer owns it)
# =====================================================================================================
class StatusStore:
    """``grading/status.json``: ``{"labs": {lab: {student: latest attempt}}}``, written atomically."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {"version": 1, "labs": {}}
        if path.exists():
            try:
                self.data = json.loads(path.read_text())
            except ValueError as err:
                raise CourseError(
                    f"{path} is not valid JSON ({err}); restore it from a backup or delete it"
                ) from err

    def get(self, lab: str, student: str) -> dict[str, Any] | None:
        return self.data["labs"].get(lab, {}).get(student)

    def put(self, lab: str, student: str, entry: dict[str, Any]) -> None:
        previous = self.get(lab, student)
        entry["attempt"] = (previous or {}).get("attempt", 0) + 1
        self.data["labs"].setdefault(lab, {})[student] = entry
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


# =====================================================================================================
# release
# =====================================================================================================
def release_guard(course: Course, lab: str) -> list[str]:
    """Problems that would orphan submitted grades if ``lab`` were regenerated now (empty list: safe)."""
    if not course.db_path.exists():
        return []
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(course.db_url) as gb:
        try:
            assignment = gb.find_assignment(lab)
        except MissingEntry:
            return []
        if not assignment.submissions:
            return []
        recorded = {}
        for notebook in assignment.notebooks:
            for cell in notebook.grade_cells:
                recorded[(notebook.name, cell.name)] = float(cell.max_score)
        count = len(assignment.submissions)
    problems = []
    for notebook in sorted({nb for nb, _ in recorded}):
        path = course.source / lab / f"{notebook}.ipynb"
        now = cells.grade_points(path) if path.exists() else {}
        for (nb, grade_id), points in sorted(recorded.items()):
            if nb != notebook:
                continue
            if grade_id not in now:
                problems.append(f"{notebook}: graded cell {grade_id!r} was removed or renamed")
            elif now[grade_id] != points:
                problems.append(
                    f"{notebook}: {grade_id!r} changed from {points:g} to {now[grade_id]:g} points"
                )
        for grade_id in sorted(set(now) - {g for (n, g) in recorded if n == notebook}):
            problems.append(f"{notebook}: new graded cell {grade_id!r}")
    return [f"{p} ({count} submissions exist)" for p in problems]


def release(course: Course, labs: Sequence[str] | None = None, exchange: bool = False) -> list[str]:
    labs = list(labs or course.labs())
    if not labs:
        raise CourseError(f"no labs in {course.source} (expected <lab>/<lab>.ipynb)")
    unknown = [lab for lab in labs if lab not in course.labs()]
    if unknown:
        raise CourseError(f"no source notebook for {unknown} in {course.source}")
    for lab in labs:
        problems = release_guard(course, lab)
        if problems:
            raise CourseError(
                f"refusing to regenerate {lab}: students have submitted it and the change would orphan their "
                "grades:\n  "
                + "\n  ".join(problems)
                + "\nKeep every grade_id and its points; fix text or code "
                "*inside* existing cells (README: 'Fixing a lab mid-term')."
            )
        run = nbgrader_cmd(course, ["generate_assignment", lab, "--force"], timeout=1800)
        if run.returncode != 0:
            raise CourseError(f"nbgrader generate_assignment {lab} failed:\n{run.stdout}{run.stderr}")
        print(f"released {lab} -> {course.release / lab}")
        if exchange:
            run = nbgrader_cmd(course, ["release_assignment", lab, "--force"], timeout=600)
            if run.returncode != 0:
                raise CourseError(f"nbgrader release_assignment {lab} failed:\n{run.stdout}{run.stderr}")
            print(f"  and to the exchange (students: Assignments tab -> Fetch {lab})")
    return labs


# =====================================================================================================
# collect
# =====================================================================================================
@dataclass
class Incoming:
    path: tuple[str, ...]  # path parts inside the folder or zip
    size: int
    mtime: dt.datetime
    read: Callable[[], bytes]

    @property
    def name(self) -> str:
        return "/".join(self.path)


@dataclass
class CollectReport:
    imported: list[tuple[str, str, str]] = field(default_factory=list)  # (student, lab, source name)
    unchanged: list[tuple[str, str, str]] = field(default_factory=list)
    kept: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # an existing different submission was kept
    replaced: list[tuple[str, str, str]] = field(default_factory=list)
    conflicts: list[tuple[str, str, list[str]]] = field(default_factory=list)
    # (student, lab, source names, why): LMS users (or a user and a file named by hand) with one id
    ambiguous: list[tuple[str, str, list[str], str]] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (source name, reason)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"  {s:<24} {lab:<24} <- {src}" for s, lab, src in self.imported]
        out += [
            f"  {s:<24} {lab:<24} <- {src} (replaced the previous submission, kept in replaced/)"
            for s, lab, src in self.replaced
        ]
        out.append(
            f"collected {len(self.imported) + len(self.replaced)} submissions; {len(self.unchanged)} unchanged, "
            f"{len(self.kept)} kept (already submitted, different: --replace to overwrite), "
            f"{len(self.conflicts)} conflicts, {len(self.ambiguous)} ambiguous, {len(self.unmatched)} unmatched, "
            f"{len(self.ignored)} other files ignored"
        )
        out += [f"  KEPT      {s}/{lab}: existing submission differs from {src}" for s, lab, src in self.kept]
        out += [
            f"  CONFLICT  {s}/{lab}: {', '.join(srcs)} (none imported: remove all but one)"
            for s, lab, srcs in self.conflicts
        ]
        out += [
            f"  AMBIGUOUS {s}/{lab}: {', '.join(srcs)}: {why} (none imported)"
            for s, lab, srcs, why in self.ambiguous
        ]
        out += [f"  UNMATCHED {src}: {reason}" for src, reason in self.unmatched]
        out += [f"  NOTE      {note}" for note in self.notes]
        return out


def _iter_folder(folder: Path) -> Iterator[Incoming]:
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        stat = path.stat()
        yield Incoming(
            path.relative_to(folder).parts,
            stat.st_size,
            dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc),
            path.read_bytes,
        )


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its writer meant it: a name without zip's UTF-8 flag (rubyzip, Canvas's zipper, writes
    UTF-8 without it) is read as cp437 by :mod:`zipfile`; when those bytes are valid UTF-8, they were UTF-8."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _iter_zip(zf: zipfile.ZipFile) -> Iterator[Incoming]:
    """The files of an open zip; each entry's ``read`` needs ``zf`` still open."""
    for info in zf.infolist():
        if info.is_dir():
            continue
        parts = tuple(p for p in _zip_name(info).replace("\\", "/").split("/") if p not in ("", ".", ".."))
        if not parts:
            continue
        mtime = dt.datetime(*info.date_time).astimezone(dt.timezone.utc)  # zip times are local wall-clock
        yield Incoming(parts, info.file_size, mtime, lambda info=info: zf.read(info))


def _skip(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p in ("__MACOSX", ".ipynb_checkpoints") for p in parts)


# Moodle names each student's folder <Full Name>_<participant>_assignsubmission_<plugin>_ (underscores of the
# name replaced by spaces) or, without "Download submissions in folders", each file
# <Full Name>_<participant>_assignsubmission_file_<the student's own file name>. The participant number is
# Moodle's per-assignment id of the student (the worksheet's "Participant 12345").
MOODLE_FOLDER = re.compile(r"(?P<name>.+?)_(?P<id>\d+)_assignsubmission_[a-z]+_?")
MOODLE_FILE = re.compile(r"(?P<name>.+?)_(?P<id>\d+)_assignsubmission_file_(?P<file>.+)")
# Canvas names each file <sortable name>[_late]_<user id>_<attachment id>_<the student's own file name>, the
# name lower-cased and stripped of every non-word character (O'Brien, Seán -> obrienseán; Thai kept).
CANVAS_FILE = re.compile(r"(?P<name>.+?)(?P<late>_late)?_(?P<uid>\d+)_(?P<att>\d+)_(?P<file>.+)", re.I)
STUDENT_ID_MAX = 128  # nbgrader's Student.id is a String(128)
_ID_PUNCTUATION = "_.@+-"  # never a glob character (nbgrader's student_id is a glob), a comma, a space or '/'
_APOSTROPHES = "'\u2019\u02bc`\u00b4"


def _wordlike(char: str) -> bool:
    """A letter, a combining mark (Thai vowels, accents) or a decimal digit, of any script."""
    category = unicodedata.category(char)
    return category[0] in "LM" or category == "Nd"


def valid_student_id(text: str) -> bool:
    """Whether ``text`` is safe as an nbgrader student id: a folder name, a glob that matches only itself, a
    gradebook key; NFC-normalised, so the same name typed on macOS and on Linux is one id."""
    return (
        0 < len(text) <= STUDENT_ID_MAX
        and len(text.encode()) <= 255
        and unicodedata.normalize("NFC", text) == text
        and _wordlike(text[0])
        and not unicodedata.category(text[0]).startswith("M")
        and all(_wordlike(c) or c in _ID_PUNCTUATION for c in text)
    )


def name_slug(name: str, limit: int = 64) -> str:
    """A display name as a readable id part: NFC, apostrophes dropped (O'Brien -> OBrien), letters, marks, digits
    and '-' kept in any script, everything else one '_'. ``Seán O'Brien`` -> ``Seán_OBrien``."""
    text = "".join(c for c in unicodedata.normalize("NFC", name) if c not in _APOSTROPHES)
    text = "".join(c if _wordlike(c) or c == "-" else "_" for c in text)
    text = re.sub(r"_+", "_", text).strip("_-")
    while text and unicodedata.category(text[0]).startswith("M"):  # a mark cut from its letter
        text = text[1:].lstrip("_-")
    return unicodedata.normalize("NFC", text[:limit]).rstrip("_-")


def lms_student_id(name: str, number: str, lms: str) -> str:
    """The id of an LMS user without a roster: the LMS's display name and its number, ``Seán_OBrien_12345``.
    The number keeps two John Smiths apart; the same export always gives the same ids."""
    return f"{name_slug(name) or lms.lower()}_{number}"


def canvas_name(sortable_name: str) -> str:
    """The name Canvas writes in its submissions' file names for a user's sortable name: lower-cased, every
    non-word character dropped (``Smith, John`` -> ``smithjohn``, ``O'Brien, Seán`` -> ``obrienseán``)."""
    return "".join(c for c in unicodedata.normalize("NFC", sortable_name).lower() if _wordlike(c) or c == "_")


def clean_student_id(raw: str) -> str | None:
    """A student id from a file name written outside any LMS structure (``alice_12345_<lab>.ipynb``):
    LMS-style ``_late`` and trailing ``_<digits>`` dropped, spaces as underscores; ``None`` if not valid."""
    name = unicodedata.normalize("NFC", raw).strip()
    name = re.sub(r"_late(?=_|$)", "", name, flags=re.I)
    name = re.sub(r"(?:_\d+)+$", "", name)  # LMS user/attachment ids
    name = re.sub(r"\s+", "_", name.strip(" _-"))
    return name if valid_student_id(name) else None


def _roster_value(raw: str) -> str | None:
    """An id as written (a roster's cell: ``6401234``, ``j.smith@uni.edu``; a folder of nbgrader's layout:
    ``John_Smith_101``), NFC, spaces as underscores; ``None`` if not valid."""
    name = re.sub(r"\s+", "_", unicodedata.normalize("NFC", raw).strip())
    return name if valid_student_id(name) else None


@dataclass
class Roster:
    """Who an LMS's numbers are: ``ids`` maps Moodle participant numbers or Canvas user ids to student ids;
    ``ambiguous`` holds the numbers that share their id with another (reported, never credited)."""

    lms: str  # "Moodle" or "Canvas"
    ids: dict[str, str]
    ambiguous: dict[str, str] = field(default_factory=dict)
    by_name: set[str] = field(default_factory=set)  # numbers whose row had no id: name and number instead


def _canvas_rows(rows: list[dict[str, str]]) -> Iterator[tuple[str, str | None, str, bool]]:
    """``(user id, student id, what it came from, whether the row had no id and the id is the user's name and
    number)`` of a Canvas gradebook export (Grades → Export)."""
    for row in rows:
        uid = (row.get("ID") or "").strip()
        if not uid.isdigit():  # Canvas's "Points Possible" line
            continue
        sis = next((row[k] for k in ("SIS Login ID", "SIS User ID") if (row.get(k) or "").strip()), "")
        if sis:
            yield uid, _roster_value(sis), sis, False
        else:
            name = (
                row.get("Student") or ""
            )  # as in Canvas's file names: the id collect gives without a roster
            yield uid, lms_student_id(canvas_name(name), uid, "Canvas"), name, True


def _moodle_rows(rows: list[dict[str, str]]) -> Iterator[tuple[str, str | None, str, bool]]:
    """``(participant, student id, what it came from, by name)`` of a Moodle grading worksheet (Identifier
    ``Participant 12345``; the id is ``ID number``, else the ``Email address`` before its '@', else the name)."""
    for row in rows:
        number = re.search(r"(\d+)\s*$", row.get("Identifier") or "")
        if number is None:
            continue
        idnumber = (row.get("ID number") or "").strip()
        local = (row.get("Email address") or "").strip().partition("@")[0]
        if idnumber or local:
            yield number.group(1), _roster_value(idnumber or local), idnumber or local, False
        else:
            name = row.get("Full name") or ""
            yield number.group(1), lms_student_id(name, number.group(1), "Moodle"), name, True


def read_roster(path: Path) -> Roster:
    """The roster the instructor exported from the LMS: Canvas's gradebook CSV (*Grades → Export*: columns
    ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``) or Moodle's grading worksheet CSV (*Download grading
    worksheet*: ``Identifier``, ``Full name``, ``Email address``, and ``ID number`` when the site shows it)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CourseError(f"cannot read the roster {path}: {err}") from err
    header = rows[0].keys() if rows else ()
    if "Identifier" in header:
        lms, noun, entries = "Moodle", "participant", _moodle_rows(rows)
    elif "ID" in header:
        lms, noun, entries = "Canvas", "user", _canvas_rows(rows)
    else:
        raise CourseError(
            f"{path}: not a Canvas gradebook export (no 'ID' column) nor a Moodle grading worksheet "
            "(no 'Identifier' column)"
        )
    roster, owners = Roster(lms, {}), {}
    for number, student, raw, by_name in entries:
        if student is None:
            raise CourseError(f"{path}: no valid student id for {lms} {noun} {number} ({raw!r})")
        if roster.ids.get(number, student) != student:
            raise CourseError(f"{path}: {lms} {noun} {number} appears twice with different ids")
        roster.ids[number] = student
        owners.setdefault(student, set()).add(number)
        if by_name:
            roster.by_name.add(number)
    for numbers in owners.values():
        for number in numbers if len(numbers) > 1 else ():
            roster.ambiguous[number] = (
                f"{lms} {noun}s {_and(sorted(numbers, key=int))} have one id in the roster"
            )
    return roster


def _and(items: Sequence[str]) -> str:
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def _lab_of(stem: str, labs: Sequence[str], lab_hint: str | None) -> tuple[str | None, str, str]:
    """``(lab, the rest of the name before it, "")`` from a file name's stem, or ``(None, "", reason)``."""
    for candidate in sorted(labs, key=len, reverse=True):
        m = re.fullmatch(rf"(?P<prefix>.*?){re.escape(candidate)}(?:-\d+| ?\(\d+\))?", stem)
        if m:
            if lab_hint is not None and candidate != lab_hint:
                return None, "", f"a submission of {candidate}, not of --lab {lab_hint}"
            return candidate, m.group("prefix").rstrip("_- "), ""
    if lab_hint is None:
        return None, "", "no lab name in the file name (pass --lab LAB)"
    return lab_hint, stem, ""


@dataclass(frozen=True)
class LmsOrigin:
    """Who an LMS says a file is from: ``number`` is Moodle's participant number or Canvas's user id."""

    lms: str  # "Moodle" or "Canvas"
    number: str
    name: str  # the display name the LMS wrote
    file: str  # the file name the student chose: it tells only the lab

    @property
    def noun(self) -> str:
        return "participant" if self.lms == "Moodle" else "user"


def _canvas_evidence(name: str, labs: Sequence[str]) -> bool:
    """Whether a file name shows a Canvas export: Canvas's shape and not Moodle's flat one, with a lab's name
    after Canvas's numbers or nowhere in the name. ``bob_12345_00_getting_started.ipynb``, named by hand, is no
    evidence: the lab's name spans what would be Canvas's numbers. ``--lab`` does not make a name evidence."""
    canvas = CANVAS_FILE.fullmatch(name)
    if canvas is None or MOODLE_FILE.fullmatch(name):
        return False
    stem = name.removesuffix(".ipynb")
    return _lab_of(canvas.group("file").removesuffix(".ipynb"), labs, None)[0] is not None or (
        _lab_of(stem, labs, None)[0] is None
    )


def export_lms(paths: Sequence[tuple[str, ...]], labs: Sequence[str], roster: Roster | None) -> str | None:
    """Which LMS made an export, decided once for all its files, so that no file's name decides it for the
    others: the roster's; else Moodle where a folder is a Moodle submission folder or every notebook has
    Moodle's flat name; else Canvas where a notebook shows Canvas (:func:`_canvas_evidence`); else Moodle where
    one has Moodle's flat name; else ``None`` (nbgrader's layout or files named by hand)."""
    if roster is not None:
        return roster.lms
    if any(MOODLE_FOLDER.fullmatch(part) for parts in paths for part in parts[:-1]):
        return "Moodle"
    notebooks = [parts[-1] for parts in paths if parts[-1].endswith(".ipynb")]
    flat = [name for name in notebooks if MOODLE_FILE.fullmatch(name)]
    if flat and len(flat) == len(notebooks):
        return "Moodle"
    if any(_canvas_evidence(name, labs) for name in notebooks):
        return "Canvas"
    return "Moodle" if flat else None


def lms_origin(parts: tuple[str, ...], lms: str | None) -> LmsOrigin | None:
    """Who the export of ``lms`` says a path is from: Moodle's outermost submission folder (whatever the student
    put inside; any export), Moodle's flat ``..._assignsubmission_file_<file>`` name (a Moodle export) or
    Canvas's file name (a Canvas export); ``None`` outside any."""
    for part in parts[:-1]:
        moodle = MOODLE_FOLDER.fullmatch(part)
        if moodle:
            return LmsOrigin("Moodle", moodle.group("id"), moodle.group("name"), parts[-1])
    pattern = {"Moodle": MOODLE_FILE, "Canvas": CANVAS_FILE}.get(lms or "")
    found = pattern.fullmatch(parts[-1]) if pattern else None
    if found is None:
        return None
    number = found.group("id" if lms == "Moodle" else "uid")
    return LmsOrigin(lms, number, found.group("name"), found.group("file"))


@dataclass
class Match:
    student: str | None
    lab: str | None
    reason: str = ""
    origin: LmsOrigin | None = None
    ambiguous: bool = False  # ``student`` is the roster's id of more than one LMS user


def _named(student: str | None, raw: str, lab: str, labs: Sequence[str], origin=None) -> Match:
    if student is None:
        return Match(None, None, f"invalid student id {raw!r}", origin)
    if student in labs:
        return Match(
            None, None, f"student id {student!r} is a lab's name (expected <student>/<lab>/<lab>.ipynb)"
        )
    return Match(student, lab, "", origin)


def _credit(origin: LmsOrigin, lab: str, labs: Sequence[str], roster: Roster | None) -> Match:
    """The student an LMS's number is: its display name and number, or the roster's id."""
    if roster is None:
        return _named(lms_student_id(origin.name, origin.number, origin.lms), origin.name, lab, labs, origin)
    if roster.lms != origin.lms:
        return Match(None, None, f"a {origin.lms} submission, but the roster is {roster.lms}'s", origin)
    if origin.number in roster.ambiguous:
        return Match(roster.ids[origin.number], lab, roster.ambiguous[origin.number], origin, ambiguous=True)
    if origin.number not in roster.ids:
        return Match(None, None, f"{origin.lms} {origin.noun} {origin.number} is not in the roster", origin)
    return _named(roster.ids[origin.number], origin.number, lab, labs, origin)


def _outside_lms(parts: tuple[str, ...], lms: str | None, roster: Roster | None) -> str:
    """Why a file outside the export's LMS structure is no one's ("" where it may be matched by its name)."""
    if roster is not None:
        other = lms_origin(parts, "Canvas" if roster.lms == "Moodle" else "Moodle")
        if other is not None:
            return f"a {other.lms} submission, but the roster is {roster.lms}'s"
    if lms == "Moodle":
        return "outside every Moodle submission folder"
    if roster is not None:
        return f"not a {roster.lms} submission name (the roster is for {roster.lms})"
    return ""


def _match(
    parts: tuple[str, ...], labs: Sequence[str], lab_hint: str | None, roster: Roster | None, lms: str | None
) -> Match:
    name = parts[-1]
    if not name.endswith(".ipynb"):
        return Match(None, None, "not a notebook")
    stem = name[: -len(".ipynb")]
    origin = lms_origin(parts, lms)
    if origin is not None:
        lab, _, reason = _lab_of(origin.file.removesuffix(".ipynb"), labs, lab_hint)
        return _credit(origin, lab, labs, roster) if lab else Match(None, None, reason, origin)
    reason = _outside_lms(parts, lms, roster)
    if reason:
        return Match(None, None, reason)
    if len(parts) >= 3 and parts[-2] == stem and stem in labs:  # nbgrader's <student>/<lab>/<lab>.ipynb
        return _named(_roster_value(parts[-3]), parts[-3], stem, labs)  # today's id, as written
    lab, prefix, reason = _lab_of(stem, labs, lab_hint)
    if lab is None:
        return Match(None, None, reason)
    if prefix:  # <student>_<lab>.ipynb, LMS-style numbers dropped
        return _named(clean_student_id(prefix), prefix, lab, labs)
    if len(parts) >= 2:  # <student>/<lab>.ipynb: the folder's name as written
        return _named(_roster_value(parts[-2]), parts[-2], lab, labs)
    return Match(None, None, "no student name in the file or folder name")


def match_submission(
    parts: tuple[str, ...], labs: Sequence[str], lab_hint: str | None, roster: Roster | None = None
) -> tuple[str | None, str | None, str]:
    """``(student, lab, "")`` for a submitted notebook's path alone (an export of one file), or
    ``(None, None, reason)``.

    The student comes from the export's structure (:func:`export_lms`): Moodle's participant number (its
    submission folder, or its flat file name), Canvas's user id (both through ``roster`` when given, else the
    LMS's display name with that number: :func:`lms_student_id`), nbgrader's ``<student>/<lab>/<lab>.ipynb``
    (the folder's name as written). Only files outside any LMS structure (``<student>_<lab>.ipynb`` named by
    whoever gathered them) are matched by their name. The file name a student chose only tells the lab.
    """
    found = _match(parts, labs, lab_hint, roster, export_lms([parts], labs, roster))
    if found.ambiguous:
        return None, None, found.reason
    return found.student, found.lab, found.reason


def _timestamp_text(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat()


def _student_folder(entries: list[Incoming], labs: Sequence[str]) -> bool:
    """Whether the shared top folder holds ``<lab>/<lab>.ipynb``: it is the student's (nbgrader's layout)."""
    return any(len(e.path) == 3 and e.path[1] in labs and e.path[2] == f"{e.path[1]}.ipynb" for e in entries)


@contextlib.contextmanager
def _entries(source: Path, lab: str | None, labs: Sequence[str]) -> Iterator[list[Incoming]]:
    """Every file of a folder or zip (kept open while in use), hidden and OS files skipped, a top folder shared
    by all dropped unless it is an LMS submission folder (an export of one Moodle student) or a student's
    folder of nbgrader's layout (``alice/<lab>/<lab>.ipynb``)."""
    if not source.exists():
        raise CourseError(f"{source} does not exist")
    with contextlib.ExitStack() as stack:
        if source.is_dir():
            entries = list(_iter_folder(source))
        elif zipfile.is_zipfile(source):
            entries = list(_iter_zip(stack.enter_context(zipfile.ZipFile(source))))
        else:
            raise CourseError(f"{source} is neither a folder nor a zip archive")
        entries = [e for e in entries if not _skip(e.path)]
        # An LMS zip usually wraps everything in one folder: drop a top folder shared by all entries.
        while entries and all(len(e.path) > 1 for e in entries) and len({e.path[0] for e in entries}) == 1:
            top = entries[0].path[0]
            if (
                (top in labs and lab is None)
                or MOODLE_FOLDER.fullmatch(top)
                or _student_folder(entries, labs)
            ):
                break
            for e in entries:
                e.path = e.path[1:]
        yield entries


def _owner(origin: LmsOrigin | None) -> str:
    return f"{origin.lms} {origin.noun} {origin.number}" if origin else "a file matched by its name"


def _group(
    entries: list[Incoming], labs, lab, roster, report: CollectReport
) -> dict[tuple[str, str], list[Incoming]]:
    """``{(student, lab): files}``; everything else goes to the report (ignored, unmatched, ambiguous)."""
    lms = export_lms([e.path for e in entries], labs, roster)  # once: no file decides for the others
    wanted: dict[tuple[str, str], list[Incoming]] = {}
    owners: dict[tuple[str, str], set[str]] = {}
    doubtful: dict[tuple[str, str], tuple[list[Incoming], set[str]]] = {}
    by_name: set[str] = set()  # ids a Moodle worksheet made of a name and a per-assignment number
    for entry in entries:
        found = _match(entry.path, labs, lab, roster, lms)
        if found.reason == "not a notebook":
            report.ignored.append(entry.name)
        elif found.ambiguous:
            files, why = doubtful.setdefault((found.student, found.lab), ([], set()))
            files.append(entry)
            why.add(found.reason)
        elif found.student is None or found.lab is None:
            report.unmatched.append((entry.name, found.reason))
        elif entry.size > MAX_COLLECT_BYTES:
            report.unmatched.append((entry.name, f"larger than {MAX_COLLECT_BYTES >> 20} MB"))
        else:
            key = (found.student, found.lab)
            wanted.setdefault(key, []).append(entry)
            owners.setdefault(key, set()).add(_owner(found.origin))
            if (
                roster is not None
                and roster.lms == "Moodle"
                and found.origin
                and found.origin.number in roster.by_name
            ):
                by_name.add(found.student)
    for key in [k for k, who in owners.items() if len(who) > 1]:  # two owners, one id: never merged
        files, why = doubtful.setdefault(key, ([], set()))
        files += wanted.pop(key)
        why.add(f"{_and(sorted(owners[key]))} have one id")
    for (student, matched_lab), (files, why) in sorted(doubtful.items()):
        report.ambiguous.append((student, matched_lab, sorted(e.name for e in files), "; ".join(sorted(why))))
    _moodle_notes(report, lms, roster, by_name)
    return wanted


def _moodle_notes(report: CollectReport, lms: str | None, roster: Roster | None, by_name: set[str]) -> None:
    if lms == "Moodle" and roster is None:
        report.notes.append(
            "Moodle's participant numbers are per assignment: without --roster (the grading worksheet of the "
            "same assignment) a student's id is not the same from one lab to the next"
        )
    if by_name:
        report.notes.append(
            f"the worksheet has no ID number or email address for {', '.join(sorted(by_name))}: their ids are "
            "name and participant number, and Moodle's participant numbers are per assignment (another lab "
            "gives them another id; fill in the worksheet's ID number column)"
        )


def _store(
    course: Course, record: tuple[str, str, str], data: bytes, when: dt.datetime | None, replaced: bool
):
    """Write one submission (the old one moved to ``grading/replaced/`` when ``replaced``)."""
    student, lab, _ = record
    dest_dir = course.submission_dir(student, lab)
    dest = dest_dir / f"{lab}.ipynb"
    if replaced:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        backup = course.grading / "replaced" / student / lab / stamp
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(dest_dir), str(backup))
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".{dest.name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    if when is not None:
        (dest_dir / "timestamp.txt").write_text(_timestamp_text(when))


def collect(
    course: Course,
    source: Path,
    lab: str | None = None,
    replace: bool = False,
    timestamps: str = "file",
    dry_run: bool = False,
    roster: Roster | None = None,
) -> CollectReport:
    """Import a folder or zip of submitted notebooks into ``submitted/<student>/<lab>/<lab>.ipynb``.

    Never overwrites an existing, different submission unless ``replace`` (the old one is moved to
    ``grading/replaced/``). Two different files for one student and lab are a conflict: neither is imported;
    files of two LMS users that resolve to one student id are ambiguous: none is imported.
    ``timestamps``: ``file`` (the file's or zip entry's modification time, written to ``timestamp.txt`` for
    nbgrader's late-submission logic), ``now``, or ``none``. ``roster``: :func:`read_roster` of an LMS export.
    """
    labs = sorted(set(course.labs()) | set(course.gradebook_labs()))
    if lab is not None and lab not in labs:
        raise CourseError(f"unknown lab {lab!r}; labs: {', '.join(labs) or 'none'}")
    report = CollectReport()
    with _entries(source, lab, labs) as entries:
        wanted = _group(entries, labs, lab, roster, report)
        now = dt.datetime.now(dt.timezone.utc)
        for (student, matched_lab), group in sorted(wanted.items()):
            contents = {e.name: e.read() for e in group}
            if len(set(contents.values())) > 1:
                report.conflicts.append((student, matched_lab, sorted(contents)))
                continue
            entry = group[0]
            data = contents[entry.name]
            dest = course.submission_dir(student, matched_lab) / f"{matched_lab}.ipynb"
            record = (student, matched_lab, entry.name)
            if dest.exists() and dest.read_bytes() == data:
                report.unchanged.append(record)
                continue
            if dest.exists() and not replace:
                report.kept.append(record)
                continue
            replaced = dest.exists()
            if not dry_run:
                _store(course, record, data, {"file": entry.mtime, "now": now}.get(timestamps), replaced)
            (report.replaced if replaced else report.imported).append(record)
    return report


# =====================================================================================================
# grade: sandboxed workers, one writer
# =====================================================================================================
@dataclass
class GradeReport:
    lab: str
    results: list[dict[str, Any]]
    seconds: float
    reference: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)
    leftover_processes: list[str] = field(default_factory=list)  # sandbox uids still running something
    memory_note: str = ""  # how memory was capped (a cgroup, or only per process: see seglabs_grading.cgroup)
    time_note: str = ""  # the time limits every submission ran under (see time_note)

    def counts(self) -> Counter:
        return Counter(r["status"] for r in self.results)


def _writer_lock(course: Course):
    """One `course grade` per gradebook at a time: the single-writer rule holds across processes too."""
    import fcntl

    course.grading.mkdir(parents=True, exist_ok=True)
    handle = open(course.grading / ".course-grade.lock", "w")  # noqa: SIM115 - held until grading ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise CourseError(
            f"another `course grade` is writing to {course.db_path}; wait for it to finish"
        ) from None
    return handle


def _is_up_to_date(entry: dict[str, Any] | None, fingerprint: str | None) -> bool:
    return bool(entry) and entry.get("fingerprint") == fingerprint and not st.is_ungraded(entry["status"])


def _clear_auto_scores(gb, lab: str, student: str, timestamp: str | None) -> None:
    """After a failed attempt: no autograder score survives, every cell is flagged for a human."""
    from nbgrader.api import MissingEntry
    from nbgrader.utils import parse_utc

    gb.update_or_create_student(student)
    try:
        sub = gb.find_submission(lab, student)
    except MissingEntry:
        sub = gb.add_submission(lab, student)
    if timestamp:
        with contextlib.suppress(ValueError, OverflowError):
            sub.timestamp = parse_utc(timestamp)
    for snb in sub.notebooks:
        snb.late_submission_penalty = None
        for grade in snb.grades:
            grade.auto_score = None
            grade.needs_manual_grade = True
    gb.db.commit()


def merge_result(gb, lab: str, student: str, scores: dict[str, Any], flag: bool) -> None:
    """Write one submission's autograder results into the real gradebook (what nbgrader's autograde writes).

    The fields are exactly those nbgrader's Autograde sets: the submission's timestamp, each grade's
    ``auto_score`` and ``needs_manual_grade``, each comment's ``auto_comment`` and each notebook's late penalty.
    Manual scores and comments entered in the formgrader are left alone. ``flag`` marks every cell for review.
    """
    gb.update_or_create_student(student)
    kwargs = {"timestamp": scores["timestamp"]} if scores.get("timestamp") else {}
    gb.update_or_create_submission(lab, student, **kwargs)
    for nb_name, data in scores["notebooks"].items():
        snb = gb.find_submission_notebook(nb_name, lab, student)
        snb.late_submission_penalty = data.get("late_penalty")
        for grade_id, g in data["grades"].items():
            grade = gb.find_grade(grade_id, nb_name, lab, student)
            grade.auto_score = g["auto_score"]
            grade.needs_manual_grade = bool(g["needs_manual_grade"] or flag)
        for grade_id, text in data["comments"].items():
            gb.find_comment(grade_id, nb_name, lab, student).auto_comment = text
    gb.db.commit()


def _replace_tree(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.new"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, symlinks=True)
    old = dest.parent / f".{dest.name}.old"
    if dest.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def record_result(
    course: Course, store: StatusStore, gb, job: sandbox.Job, result: dict[str, Any]
) -> dict[str, Any]:
    """The single writer: gradebook, autograded copy and status sidecar for one finished job."""
    lab, student = job.lab, job.student
    status = result.get("status") or st.FAILED
    scores = result.get("scores")
    timestamp_file = job.submission / "timestamp.txt"
    timestamp = timestamp_file.read_text().strip() if timestamp_file.is_file() else None
    autograded_real = course.autograded / student / lab
    try:
        if scores:
            merge_result(gb, lab, student, scores, flag=status != st.GRADED)
            assert job.job_dir is not None
            _replace_tree(job.job_dir / "grading" / "autograded" / student / lab, autograded_real)
        else:
            _clear_auto_scores(gb, lab, student, timestamp)
            # No stale feedback either: nothing of an older attempt can be handed back.
            shutil.rmtree(autograded_real, ignore_errors=True)
            shutil.rmtree(course.feedback / student / lab, ignore_errors=True)
    except Exception as err:  # noqa: BLE001 - the attempt is recorded as failed, never as a stale success
        gb.db.rollback()
        status, scores = st.FAILED, None
        result.setdefault("details", []).append(f"could not record the grades: {type(err).__name__}: {err}")
    auto, max_auto = _auto_total(scores)
    entry = {
        "status": status,
        "details": result.get("details", [])[:10],
        "notes": result.get("notes", []),
        "auto_score": auto,
        "max_auto_score": max_auto,
        "grades": _flat_grades(scores),
        # Of the copy that was graded: a file replaced while grading ran shows as changed, never as graded.
        "fingerprint": submission_fingerprint(
            job.job_dir / "grading" / "submitted" / student / lab if job.job_dir else job.submission
        ),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(float(result.get("seconds") or 0), 2),
        "exec_seconds": round(float(result.get("exec_seconds") or 0), 2),
    }
    store.put(lab, student, entry)
    return entry


def _flat_grades(scores: dict[str, Any] | None) -> dict[str, Any]:
    if not scores:
        return {}
    return {
        f"{nb}/{gid}": g["auto_score"]
        for nb, data in sorted(scores["notebooks"].items())
        for gid, g in sorted(data["grades"].items())
    }


def _auto_total(scores: dict[str, Any] | None) -> tuple[float | None, float | None]:
    if not scores:
        return None, None
    total = maximum = 0.0
    for data in scores["notebooks"].values():
        for g in data["grades"].values():
            if g["auto_score"] is not None:
                total += g["auto_score"]
                maximum += g["max_score"]
    return total, maximum


def _reference_ok(result: dict[str, Any]) -> tuple[bool, str]:
    scores = result.get("scores")
    if result.get("status") != st.GRADED or not scores:
        detail = "; ".join(result.get("details", [])[-3:])
        return False, f"status {result.get('status')}: {detail}\n{result.get('log_tail', '')[-2000:]}"
    short = [
        f"{gid} {g['auto_score']}/{g['max_score']:g}"
        for data in scores["notebooks"].values()
        for gid, g in data["grades"].items()
        if g["auto_score"] is not None and g["auto_score"] < g["max_score"]
    ]
    if short:
        return False, "the solution lost points: " + ", ".join(short)
    return True, ""


TIME_LIMITS_KEY = ("seglabs", "grading")  # notebook metadata of a lab's source: the time its solution needs


def lab_time_limits(course: Course, lab: str) -> tuple[int, int]:
    """``(seconds per cell, seconds per submission)`` to grade ``lab`` with: the course's cell timeout and the
    sandbox's notebook timeout, raised to what the lab's own source notebook declares it needs at the full
    budget on one CPU core (``metadata.seglabs.grading``: ``cell_timeout_s``, ``notebook_timeout_s``), so a
    lab that trains is not cut short by the defaults. Read from the instructor's source, never a submission."""
    path = course.source / lab / f"{lab}.ipynb"
    try:
        meta = cells.read(path).metadata
    except (OSError, ValueError) as err:
        raise CourseError(f"cannot read {path}: {err}") from err
    declared = meta.get(TIME_LIMITS_KEY[0], {}).get(TIME_LIMITS_KEY[1], {})
    wanted = {"cell_timeout_s": course.cell_timeout, "notebook_timeout_s": sandbox.Limits().notebook_timeout}
    for key in wanted:
        value = declared.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CourseError(f"{path}: metadata.seglabs.grading.{key} must be whole seconds, not {value!r}")
        wanted[key] = max(wanted[key], value)
    return wanted["cell_timeout_s"], wanted["notebook_timeout_s"]


def time_note(limits: sandbox.Limits) -> str:
    """One line for the grading summary: the time limits every submission ran under."""
    return f"time limits: {limits.cell_timeout} s per cell, {limits.notebook_timeout} s per submission"


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def grade(
    course: Course,
    lab: str,
    *,
    students: Sequence[str] | None = None,
    workers: int = 1,
    limits: sandbox.Limits | None = None,
    force: bool = False,
    reference: bool = True,
    workdir: Path | None = None,
    keep_workdir: bool = False,
    progress: bool = True,
    devices: Sequence[str] = (),
) -> GradeReport:
    """Autograde every submission of ``lab`` (or ``students``) in sandboxes; merge results one by one.

    Up-to-date submissions (graded before, unchanged since) are skipped unless ``force``. With ``reference``,
    the lab's own solution is graded first in the same sandbox and must score full marks: a broken grading
    environment stops here instead of giving a whole class zeros. ``devices``: device nodes bound into every
    sandbox (``--gpu``: the NVIDIA ones, for lab 04).
    """
    if lab not in course.gradebook_labs():
        raise CourseError(f"{lab} is not in the gradebook {course.db_path}: run `course release {lab}` first")
    try:
        sandbox.check_sandbox()
    except bwrap.SandboxUnavailable as err:
        raise CourseError(f"cannot grade without the sandbox: {err}") from err
    if limits is None:
        cell, notebook = lab_time_limits(course, lab)
        limits = sandbox.Limits(cell_timeout=cell, notebook_timeout=notebook)
    lock = _writer_lock(course)
    try:
        options = _GradeOptions(
            students, workers, limits, force, reference, keep_workdir, progress, tuple(devices)
        )
        return _grade_locked(course, lab, options, workdir)
    finally:
        lock.close()


@dataclass(frozen=True)
class _GradeOptions:
    students: Sequence[str] | None
    workers: int
    limits: sandbox.Limits
    force: bool
    reference: bool
    keep_workdir: bool
    progress: bool
    devices: tuple[str, ...]


def _select_jobs(
    course: Course, lab: str, students: Sequence[str] | None, force: bool, store: StatusStore
) -> tuple[list[sandbox.Job], list[str]]:
    """The submissions to grade now, and those skipped (up to date, or not a valid student id)."""
    lab_dirs = (
        sorted(p for p in course.submitted.glob(f"*/{lab}") if p.is_dir())
        if course.submitted.is_dir()
        else []
    )
    available = {d.parent.name: course.submission_dir(d.parent.name, lab) for d in lab_dirs}
    wanted = list(students) if students else sorted(available)
    missing = [s for s in wanted if s not in available]
    if missing:
        raise CourseError(f"no submission of {lab} for: {', '.join(missing)} (looked in {course.submitted})")
    jobs, skipped = [], []
    for student in wanted:
        if not valid_student_id(student) or student == REFERENCE_STUDENT:
            skipped.append(f"{student} (not a valid student id)")
        elif not force and _is_up_to_date(
            store.get(lab, student), submission_fingerprint(available[student])
        ):
            skipped.append(student)
        else:
            jobs.append(sandbox.Job(lab, student, available[student]))
    return jobs, skipped


def _batch_setup(course: Course, lab: str, batch_dir: Path, options: _GradeOptions) -> sandbox.BatchSetup:
    snapshot = batch_dir / "gradebook-snapshot.db"
    sandbox.snapshot_gradebook(course.db_path, snapshot)
    harness_seed.copy_secret(course.grading, batch_dir)  # the jobs' hidden tests draw SEED from it
    data = shared_data_dir()
    with contextlib.suppress(OSError):
        data.mkdir(parents=True, exist_ok=True)
    sandbox.share_datasets(data)
    return sandbox.BatchSetup(
        course.config_file, course.source / lab, snapshot, str(data), options.limits, options.devices
    )


def _reference_run(lab: str, setup: sandbox.BatchSetup, batch_dir: Path, identities: list) -> dict[str, Any]:
    """Grade the lab's own solution in the same sandbox; it must score full marks. Publish its datasets."""
    ref_job = sandbox.Job(lab, REFERENCE_STUDENT, setup.source_lab_dir)
    sandbox.WorkerPool(setup, batch_dir, identities[:1]).run([ref_job], lambda job, result: None)
    ok, why = _reference_ok(ref_job.result)
    if not ok:
        raise CourseError(
            f"the solution of {lab} does not score full marks in the grading sandbox, so no submission "
            f"was graded (check helpers are installed, the limits, and SEGLAB_BUDGET):\n{why}"
        )
    if ref_job.job_dir is not None and setup.data_dir:
        sandbox.publish_datasets(ref_job.job_dir, Path(setup.data_dir))
    return ref_job.result


def _grade_all(course: Course, store: StatusStore, pool: sandbox.WorkerPool, jobs, options) -> list[dict]:
    """Run the pool; record each result as it arrives (the single writer); drop each finished job folder."""
    from nbgrader.api import Gradebook

    results: list[dict[str, Any]] = []
    bar = None
    if options.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"grading {jobs[0].lab}", unit="nb", file=sys.stderr)
    with _quiet_sqlalchemy(), Gradebook(course.db_url) as gb:

        def on_result(job: sandbox.Job, result: dict[str, Any]) -> None:
            entry = record_result(course, store, gb, job, result)
            results.append({"student": job.student, **entry, "slot": result.get("slot")})
            results[-1]["memory_note"] = result.get("memory_note")
            if job.job_dir is not None and not options.keep_workdir:
                shutil.rmtree(job.job_dir, ignore_errors=True)
            if bar is not None:
                bar.set_postfix_str(f"{job.student}: {entry['status']}", refresh=False)
                bar.update()

        pool.run(jobs, on_result)
    if bar is not None:
        bar.close()
    return results


def _grade_locked(course: Course, lab: str, options: _GradeOptions, workdir: Path | None) -> GradeReport:
    store = StatusStore(course.status_path)
    jobs, skipped = _select_jobs(course, lab, options.students, options.force, store)
    if not jobs:
        return GradeReport(lab, [], 0.0, None, skipped)
    base = Path(workdir or tempfile.gettempdir())
    batch_dir = Path(tempfile.mkdtemp(prefix=f"seglabs-grade-{lab}-", dir=base))  # 0700: the grader's only
    start = time.monotonic()
    lease, ref_result, results, leftover = None, None, [], []
    try:
        setup = _batch_setup(course, lab, batch_dir, options)
        try:
            lease = sandbox.SlotLease(max(1, min(options.workers, len(jobs))))
        except RuntimeError as err:
            raise CourseError(str(err)) from err
        if options.reference:
            ref_result = _reference_run(lab, setup, batch_dir, lease.identities)
        results = _grade_all(
            course, store, sandbox.WorkerPool(setup, batch_dir, lease.identities), jobs, options
        )
        # Nothing of a submission outlives it; check while the uids are still ours.
        leftover = [
            f"{i.name}: {len(sandbox.user_pids(i.uid))}"
            for i in lease.identities
            if i and sandbox.user_pids(i.uid)
        ]
    finally:
        if lease is not None:
            lease.close()
        if options.keep_workdir:
            print(f"job folders kept in {batch_dir}")
        else:
            shutil.rmtree(batch_dir, ignore_errors=True)
    results.sort(key=lambda r: r["student"])
    return GradeReport(
        lab,
        results,
        time.monotonic() - start,
        ref_result,
        skipped,
        leftover,
        summary_memory_note(ref_result, results),
        time_note(options.limits),
    )


def summary_memory_note(ref_result: dict[str, Any] | None, results: list[dict[str, Any]]) -> str:
    """The summary's line on how memory and processes were capped: a student job's (made in the whole pool, so
    it counts its workers), the reference run's (one worker) only when no student job said."""
    notes = [r.get("memory_note") for r in [*results, ref_result or {}] if r.get("memory_note")]
    return notes[0] if notes else ""


def format_table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def grade_summary(report: GradeReport) -> str:
    rows = []
    for r in report.results:
        score = "" if r["auto_score"] is None else f"{r['auto_score']:g}/{r['max_auto_score']:g}"
        reason = "; ".join((r.get("details") or [])[:1] + (r.get("notes") or []))
        rows.append([r["student"], r["status"], score, f"{r['seconds']:.1f}", reason[:90]])
    out = [format_table(rows, ["student", "status", "auto score", "seconds", "why / notes"])] if rows else []
    counts = report.counts()
    n = len(report.results)
    rate = 60 * n / report.seconds if report.seconds and n else 0.0
    out.append(
        f"{report.lab}: {n} graded in {report.seconds:.1f} s ({rate:.1f} submissions/minute); "
        + ", ".join(f"{c} {s}" for s, c in sorted(counts.items()))
        + (f"; {len(report.skipped)} up to date, skipped (--force to re-grade)" if report.skipped else "")
    )
    out += [note for note in (report.time_note, report.memory_note) if note]
    if report.leftover_processes:
        out.append(
            "WARNING: processes of sandbox uids outlived grading: " + ", ".join(report.leftover_processes)
        )
    return "\n".join(out)


# =====================================================================================================
# feedback
# =====================================================================================================
def hidden_test_lines(notebook: Path) -> list[str]:
    """Distinctive lines of the source notebook's hidden tests (they must never appear in feedback)."""
    return cells.hidden_test_lines(cells.read(notebook))


@dataclass
class FeedbackReport:
    pages: list[Path]  # feedback pages kept (and released with --exchange)
    withheld: list[str]  # "page: why" for each page deleted because it showed hidden-test source


def feedback(course: Course, lab: str, exchange: bool = False) -> list[Path]:
    """nbgrader generate_feedback for every autograded submission; the pages kept (see :func:`feedback_report`)."""
    return feedback_report(course, lab, exchange).pages


def feedback_report(course: Course, lab: str, exchange: bool = False) -> FeedbackReport:
    """nbgrader generate_feedback, then a leak guard per page: a page showing hidden-test source is deleted and
    reported (withheld); every other student keeps theirs, and ``exchange`` releases those."""
    run = nbgrader_cmd(course, ["generate_feedback", lab, "--force"], timeout=3600)
    pages = sorted(course.feedback.glob(f"*/{lab}/*.html"))
    if run.returncode != 0 and not pages:
        raise CourseError(f"nbgrader generate_feedback {lab} failed:\n{run.stdout}{run.stderr}")
    hidden = []
    for source in sorted((course.source / lab).glob("*.ipynb")):
        hidden += hidden_test_lines(source)
    kept, withheld = [], []
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(errors="replace")))
        leaked = [line for line in hidden if line in text]
        if leaked:
            page.unlink()
            withheld.append(f"{page} (showed hidden-test source, e.g. {leaked[0][:60]!r})")
        else:
            kept.append(page)
    if exchange and kept:
        run = nbgrader_cmd(course, ["release_feedback", lab], timeout=600)
        if run.returncode != 0:
            raise CourseError(f"nbgrader release_feedback {lab} failed:\n{run.stdout}{run.stderr}")
    return FeedbackReport(kept, withheld)


# =====================================================================================================
# export, due dates, extensions
# =====================================================================================================
GRADE_COLUMNS = [
    "student", "lab", "status", "score", "max_score", "late", "seconds_late", "late_penalty", "final_score",
    "nbgrader_score", "needs_manual_grade", "submitted_at", "due", "extension_hours", "reason",
]  # fmt: skip
EXERCISE_COLUMNS = [
    "student", "lab", "exercise", "grade_id", "kind", "max_points", "auto_score", "manual_score", "score", "status",
]  # fmt: skip


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _row_status(
    course: Course, store: StatusStore, lab: str, student: str, has_sub_row: bool
) -> tuple[str, str]:
    entry = store.get(lab, student)
    folder = course.submission_dir(student, lab)
    has_file = folder.is_dir() and any(folder.glob("*.ipynb"))
    if entry is None:
        if has_file:
            return st.NOT_GRADED_YET, "run `course grade`"
        if has_sub_row:
            return st.UNVERIFIED, "not graded with `course grade`; no status recorded"
        return st.NO_SUBMISSION, ""
    reason = "; ".join(entry.get("details", []) + entry.get("notes", []))
    if has_file and entry.get("fingerprint") != submission_fingerprint(folder):
        return st.CHANGED, "re-run `course grade`"
    return entry["status"], reason


def _sub_grades(sub) -> tuple[list[tuple[str, Any]], float | None, float | None, bool]:
    """``(grades as (notebook, grade), nbgrader's score, late penalty, needs a manual grade)`` of a submission."""
    if sub is None:
        return [], None, None, False
    grades, penalty, needs_manual = [], 0.0, False
    for snb in sub.notebooks:
        penalty += snb.late_submission_penalty or 0.0
        for g in snb.grades:
            grades.append((snb.name, g))
            needs_manual |= bool(g.needs_manual_grade)
    return grades, sum(_grade_score(g) for _, g in grades), penalty, needs_manual


def _grade_row(student: str, assignment, sub, status: str, reason: str, has_scores: bool) -> dict[str, str]:
    """One row of ``grades.csv``: only a counted status scores (see :func:`seglabs_grading.status.counts`)."""
    grades, nb_score, penalty, needs_manual = _sub_grades(sub)
    counts = st.counts(status)
    score = nb_score if counts and nb_score is not None else 0.0
    seconds_late = sub.total_seconds_late if sub is not None and sub.timestamp else 0.0
    due = sub.duedate if sub is not None else assignment.duedate
    extension = sub.extension if sub is not None else None
    return {
        "student": student,
        "lab": assignment.name,
        "status": status,
        "score": _num(score),
        "max_score": _num(assignment.max_score),
        "late": "yes" if seconds_late > 0 else "no",
        "seconds_late": _num(round(seconds_late)),
        "late_penalty": _num(penalty),
        "final_score": _num(max(0.0, score - (penalty or 0.0)) if counts else 0.0),
        "nbgrader_score": _num(nb_score) if has_scores else "",
        "needs_manual_grade": "yes" if (has_scores and needs_manual) else "no",
        "submitted_at": sub.timestamp.isoformat() if sub is not None and sub.timestamp else "",
        "due": due.isoformat() if due else "",
        "extension_hours": _num(extension.total_seconds() / 3600) if extension else "",
        "reason": reason,
    }


def _exercise_rows(student: str, lab: str, sub, status: str, has_scores: bool) -> list[dict[str, str]]:
    """Rows of ``grades-by-exercise.csv`` for one submission."""
    grades, _, _, _ = _sub_grades(sub)
    written = {
        c.name for snb in (sub.notebooks if sub is not None else []) for c in snb.notebook.solution_cells
    }
    one_notebook = len({n for n, _ in grades}) == 1
    rows = []
    for nb_name, g in grades:
        exercise = re.match(r"(ex\d+)", g.name)
        rows.append(
            {
                "student": student,
                "lab": lab,
                "exercise": exercise.group(1) if exercise else g.name,
                "grade_id": g.name if one_notebook else f"{nb_name}/{g.name}",
                "kind": "manual" if g.name in written else "auto",  # written answers are graded by hand
                "max_points": _num(g.max_score),
                "auto_score": _num(g.auto_score) if has_scores else "",
                "manual_score": _num(g.manual_score),
                "score": _num(_grade_score(g) if st.counts(status) else 0.0),
                "status": status,
            }
        )
    return rows


def _export_students(course: Course, gb) -> list[str]:
    students = {s.id for s in gb.students}
    if course.submitted.is_dir():
        students |= {p.name for p in course.submitted.iterdir() if p.is_dir() and valid_student_id(p.name)}
    students.discard(REFERENCE_STUDENT)
    return sorted(students)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    """Write a grades file readable by the instructor only (it holds every student's scores)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    os.chmod(path, 0o600)


def export(course: Course, out: Path | None = None) -> tuple[Path, Path]:
    """Write grades per student and lab, and a per-exercise breakdown, each case marked with what happened."""
    from nbgrader.api import Gradebook, MissingEntry

    if not course.db_path.exists():
        raise CourseError(f"no gradebook at {course.db_path} yet: run `course release` first")
    out = out or course.grading / "grades.csv"
    by_exercise = out.with_name(out.stem + "-by-exercise" + out.suffix)
    store = StatusStore(course.status_path)
    rows, ex_rows = [], []
    with _quiet_sqlalchemy(), Gradebook(course.db_url) as gb:
        assignments = sorted(gb.assignments, key=lambda a: a.name)
        for student in _export_students(course, gb):
            for assignment in assignments:
                try:
                    sub = gb.find_submission(assignment.name, student)
                except MissingEntry:
                    sub = None
                status, reason = _row_status(course, store, assignment.name, student, sub is not None)
                entry = store.get(assignment.name, student) or {}
                has_scores = sub is not None and (
                    st.counts(status) or (entry.get("auto_score") is not None and status != st.CHANGED)
                )
                rows.append(_grade_row(student, assignment, sub, status, reason, has_scores))
                ex_rows += _exercise_rows(student, assignment.name, sub, status, has_scores)
    _write_csv(out, GRADE_COLUMNS, rows)
    _write_csv(by_exercise, EXERCISE_COLUMNS, ex_rows)
    return out, by_exercise


def _grade_score(g) -> float:
    base = g.manual_score if g.manual_score is not None else (g.auto_score or 0.0)
    return float(base) + float(g.extra_credit or 0.0)


def accept(course: Course, lab: str, student: str) -> dict[str, Any]:
    """After review, count nbgrader's scores of a ``tampered: ...`` attempt (e.g. an innocent copy-pasted cell)."""
    from nbgrader.api import Gradebook

    store = StatusStore(course.status_path)
    entry = store.get(lab, student)
    if entry is None:
        raise CourseError(f"{student} has no graded attempt of {lab}")
    if entry["status"] == st.GRADED:
        return entry
    if not st.is_tampered(entry["status"]) or entry.get("auto_score") is None:
        raise CourseError(
            f"{student}/{lab} is '{entry['status']}': nbgrader produced no scores to accept; fix the file and "
            "re-grade, or grade it by hand in the formgrader"
        )
    if entry.get("fingerprint") != submission_fingerprint(course.submission_dir(student, lab)):
        raise CourseError(f"{student}/{lab} changed since it was graded: re-grade it first")
    with _quiet_sqlalchemy(), Gradebook(course.db_url) as gb:
        for snb in gb.find_submission(lab, student).notebooks:
            for grade in snb.grades:
                if grade.auto_score is not None and grade.manual_score is None:
                    grade.needs_manual_grade = False
        gb.db.commit()
    entry["details"] = [f"accepted by the instructor after: {entry['status']}"] + entry.get("details", [])
    entry["status"] = st.GRADED
    entry["attempt"] = entry.get("attempt", 1) - 1  # put() counts attempts; accepting is not one
    store.put(lab, student, entry)
    return entry


@contextlib.contextmanager
def _quiet_sqlalchemy() -> Iterator[None]:
    """nbgrader's Gradebook triggers harmless SAWarnings on every new submission; keep the output readable."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not in session.*")
        yield


def set_due(course: Course, lab: str, when: str | None) -> None:
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc

    if lab not in course.gradebook_labs():
        raise CourseError(f"{lab} is not in the gradebook: run `course release {lab}` first")
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_assignment(lab, duedate=parse_utc(when) if when else None)


def extend(course: Course, lab: str, student: str, hours: float) -> None:
    """Give ``student`` ``hours`` more for ``lab`` (nbgrader's per-submission extension)."""
    from nbgrader.api import Gradebook

    if lab not in course.gradebook_labs():
        raise CourseError(f"{lab} is not in the gradebook: run `course release {lab}` first")
    if not valid_student_id(student):
        raise CourseError(f"invalid student id {student!r}")
    with _quiet_sqlalchemy(), Gradebook(course.db_url) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(lab, student, extension=dt.timedelta(hours=hours))


# =====================================================================================================
# command line
# =====================================================================================================
def _add_collect(sub) -> None:
    c = sub.add_parser("collect", help="import a folder or zip of submissions into submitted/")
    c.add_argument("source", type=Path, help="folder or .zip (LMS export, or <student>_<lab>.ipynb files)")
    c.add_argument("--lab", help="the lab these files belong to, when their names do not say")
    c.add_argument(
        "--replace",
        action="store_true",
        help="overwrite existing different submissions (old kept in replaced/)",
    )
    c.add_argument(
        "--timestamp", choices=("file", "now", "none"), default="file", help="submission time to record"
    )
    c.add_argument("--dry-run", action="store_true", help="report what would be imported; write nothing")
    c.add_argument(
        "--roster",
        type=Path,
        default=None,
        help="the LMS's roster CSV (Canvas: Grades > Export; Moodle: the assignment's grading worksheet): "
        "student ids from it instead of names",
    )


def _add_grade(sub) -> None:
    limits = sandbox.Limits()  # the one home of every limit's default
    g = sub.add_parser("grade", help="autograde submissions in sandboxes, in parallel")
    g.add_argument("lab")
    g.add_argument("--student", action="append", help="grade only this student (repeatable)")
    g.add_argument(
        "--workers", type=int, default=default_workers(), help="parallel notebooks (default: %(default)s)"
    )
    g.add_argument(
        "--cell-timeout",
        type=int,
        default=None,
        help="seconds per cell (default: nbgrader_config.py's, or what the lab declares it needs if more)",
    )
    g.add_argument(
        "--notebook-timeout",
        type=int,
        default=None,
        help=f"seconds per submission (default: {limits.notebook_timeout}, or what the lab declares if more)",
    )
    g.add_argument(
        "--memory-mb",
        type=int,
        default=limits.memory_mb,
        help="MB for the whole submission (cgroup) and per process (RLIMIT_DATA); 0 = none (default: %(default)s)",
    )
    g.add_argument(
        "--max-procs",
        type=int,
        default=limits.max_procs,
        help="processes+threads of one submission (default: %(default)s)",
    )
    g.add_argument(
        "--output-mb",
        type=float,
        default=limits.output_mb,
        help="outputs kept per notebook (default: %(default)s)",
    )
    g.add_argument(
        "--threads", type=int, default=None, help="torch/OMP threads per notebook (default: cores / workers)"
    )
    g.add_argument("--force", action="store_true", help="re-grade submissions already graded and unchanged")
    g.add_argument("--no-reference", action="store_true", help="skip grading the solution first")
    g.add_argument(
        "--workdir", type=Path, default=None, help="where job folders go (default: the system temp folder)"
    )
    g.add_argument("--keep-workdir", action="store_true", help="keep job folders for debugging")
    g.add_argument(
        "--gpu",
        action="store_true",
        help="bind the NVIDIA device nodes (/dev/nvidia*) into every sandbox (lab 04 on a GPU machine)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--course",
        type=Path,
        default=None,
        help="course folder (default: the one holding nbgrader_config.py)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("release", help="generate the student versions (nbgrader generate_assignment)")
    r.add_argument("labs", nargs="*", help="labs to release (default: all)")
    r.add_argument("--exchange", action="store_true", help="also nbgrader release_assignment (JupyterHub)")

    _add_collect(sub)
    _add_grade(sub)

    f = sub.add_parser("feedback", help="HTML feedback per student (nbgrader generate_feedback)")
    f.add_argument("lab")
    f.add_argument("--exchange", action="store_true", help="also nbgrader release_feedback (JupyterHub)")

    e = sub.add_parser("export", help="grades.csv and grades-by-exercise.csv")
    e.add_argument("--out", type=Path, default=None, help="CSV path (default: <grading>/grades.csv)")

    d = sub.add_parser("due", help="set (or clear) a lab's due date")
    d.add_argument("lab")
    d.add_argument("when", nargs="?", default=None, help='e.g. "2025-03-01 23:59:00 +0700" (omit to clear)')

    a = sub.add_parser("accept", help="count nbgrader's scores of a reviewed 'tampered: ...' submission")
    a.add_argument("lab")
    a.add_argument("student")

    x = sub.add_parser("extend", help="give one student more time for a lab")
    x.add_argument("lab")
    x.add_argument("student")
    x.add_argument("--hours", type=float, default=0.0)
    x.add_argument("--days", type=float, default=0.0)
    return p


def _cli_collect(course: Course, args: argparse.Namespace) -> None:
    roster = read_roster(args.roster) if args.roster else None
    report = collect(course, args.source, args.lab, args.replace, args.timestamp, args.dry_run, roster)
    print("\n".join(report.lines()))


def _cli_grade(course: Course, args: argparse.Namespace) -> GradeReport:
    workers = max(1, args.workers)
    cell, notebook = lab_time_limits(course, args.lab)
    limits = sandbox.Limits(
        cell_timeout=args.cell_timeout or cell,
        notebook_timeout=args.notebook_timeout or notebook,
        memory_mb=args.memory_mb,
        max_procs=args.max_procs,
        output_mb=args.output_mb,
        threads=args.threads or max(1, (os.cpu_count() or 1) // workers),
    )
    devices = sorted(glob.glob("/dev/nvidia*")) if args.gpu else []
    if args.gpu and not devices:
        raise CourseError("--gpu: no /dev/nvidia* device nodes on this machine")
    return grade(
        course,
        args.lab,
        students=args.student,
        workers=workers,
        limits=limits,
        force=args.force,
        reference=not args.no_reference,
        workdir=args.workdir,
        keep_workdir=args.keep_workdir,
        devices=devices,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        course = load_course(args.course)
        if args.command == "release":
            release(course, args.labs, exchange=args.exchange)
        elif args.command == "collect":
            _cli_collect(course, args)
        elif args.command == "grade":
            print(grade_summary(_cli_grade(course, args)))
        elif args.command == "feedback":
            report = feedback_report(course, args.lab, exchange=args.exchange)
            print(f"{len(report.pages)} feedback pages in {course.feedback} (hidden tests checked absent)")
            if report.withheld:
                print(
                    f"warning: {len(report.withheld)} feedback pages withheld (deleted, not released): they showed "
                    "hidden-test source; read those submissions:\n  " + "\n  ".join(report.withheld),
                    file=sys.stderr,
                )
        elif args.command == "export":
            grades, by_exercise = export(course, args.out)
            print(f"wrote {grades} and {by_exercise}")
        elif args.command == "due":
            set_due(course, args.lab, args.when)
            print(f"{args.lab}: due {args.when or 'never'}")
        elif args.command == "accept":
            entry = accept(course, args.lab, args.student)
            print(f"{args.student}/{args.lab}: {entry['status']} ({entry['details'][0]})")
        elif args.command == "extend":
            hours = args.hours + 24 * args.days
            if hours <= 0:
                raise CourseError("give --hours or --days (> 0)")
            extend(course, args.lab, args.student, hours)
            print(f"{args.student}: {hours:g} h extension on {args.lab} (re-grade them for the late penalty)")
    except CourseError as err:
        print(f"course: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
