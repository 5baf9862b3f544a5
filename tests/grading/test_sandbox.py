"""Hostile submissions against ``course grade``: nothing escapes the sandbox, every case is explained.

One batch of lab 00 (the fastest lab) is graded in a throw-away course inside a 0700 folder (so the same run
shows that grading works from a private checkout; the course's Python already lives under 0700 ``/root``
here). It holds:

- ``alice``: an honest solution graded, exported and given feedback *before* the batch; her gradebook rows,
  graded notebook and feedback page must not change;
- one submission per attack in ``submissions.ATTACKS`` (delete files, overwrite the gradebook, read other
  submissions, ``sys.exit``, kill the kernel, fork past the process cap, allocate past the memory cap,
  print 100 MB, an infinite loop, a loop that ignores the interrupt);
- the sandbox attacks below: read the grades CSVs, alice's graded notebook and feedback, the gradebook, the
  harness secret, the solutions of the real checkout and ``/etc/shadow``; connect to the network and to a port
  the test listens on; leave SysV shared memory, files in ``/tmp``, ``/dev/shm``, ``/run/lock`` and a
  ``setsid`` daemon behind; write the shared dataset cache; flood every kind of output past the cap; map
  shared memory past the memory cap; put ``<script>`` in an output and in a markdown answer. ``make test``
  grades them combined in one submission (``escape_all``); ``make test-full`` (``SEGLAB_TEST_ALL_STUBS=1``)
  also one submission per attack;
- one per tampering in ``submissions.TAMPERING`` and a corrupt file.

Every attack is bounded (at most 6 GB against a 2 GB cap, 200 forks against 64, 100 MB of output against a
2 MB cap, every loop stopped by a time limit, a daemon that sleeps 10 minutes at most), so a sandbox failure
cannot take the machine down. The test ends with the figure "N hostile submissions, 0 read what they should
not, 0 outlived their submission, 0 gradebook rows lost, innocent students' grades and feedback unchanged".

Attacks on files need the grader to run as root for the original attacks' targets to exist as root-owned
files; as a normal user those four are skipped (the sandbox holds either way).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import nbformat
import pytest

from seglabs_grading import bwrap, cgroup, sandbox
from seglabs_grading import course as course_mod
from tests import submissions as subs
from tests.labtools import ROOT, lab_names

LAB = "00_getting_started"
FILE_ATTACKS = {"delete_files", "overwrite_gradebook", "read_others", "fork_past_cap"}
ALL = os.environ.get("SEGLAB_TEST_ALL_STUBS") == "1"
LIMITS = sandbox.Limits(
    cell_timeout=20,
    notebook_timeout=180,
    memory_mb=2048,
    max_procs=64,
    output_mb=2,
    threads=1,
)
MARKER = "seglabs-escape-marker"
IPC_KEY = 0x5E61AB
BROWSER_ESCAPE = "seglabsEscaped"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("course-grading"),
    pytest.mark.skipif(LAB not in lab_names(), reason=f"{LAB} is not present"),
]

# Attacks on the sandbox itself, each printing ESCAPED when it got something it must not. Placeholders are filled
# by _escape_code: {reads} (paths of course files and other secrets), {port} (a TCP port the test listens on,
# on the host's loopback), {marker} (a name the test looks for on the host afterwards), {data} (the shared cache).
SANDBOX_ATTACKS = {
    "read_course_files": """
import glob, os
_paths = {reads!r}
_paths += glob.glob("/tmp/seglabs-grade-*/**", recursive=True)[:200]
for _path in _paths:
    try:
        with open(_path, "rb") as _fh:
            _fh.read(64); print("ESCAPED: read", _path)
    except OSError as _err:
        print("blocked:", type(_err).__name__)
for _key, _value in os.environ.items():
    if "SECRET" in _key or "TOKEN" in _key:
        print("ESCAPED: environment", _key)
""",
    "network": """
import socket
for _host, _port in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
    try:
        socket.create_connection((_host, _port), timeout=3).close(); print("ESCAPED: connected to", _host, _port)
    except OSError as _err:
        print("blocked:", type(_err).__name__)
""",
    "outlive": """
import ctypes, os, subprocess, sys
_libc = ctypes.CDLL(None, use_errno=True)
_shm = _libc.shmget({ipc_key}, 1 << 20, 0o1666)  # IPC_CREAT | 0666: a SysV segment that would outlive the kernel
print("made SysV shm" if _shm >= 0 else "blocked: shmget")
for _folder in ["/tmp", "/dev/shm", "/run/lock", "/var/tmp", os.path.expanduser("~")]:
    try:
        with open(os.path.join(_folder, {marker!r}), "w") as _fh:
            _fh.write("left behind")
        print("wrote in", _folder)
    except OSError as _err:
        print("blocked:", type(_err).__name__, _folder)
# A daemon that leaves the kernel's session; bounded: it sleeps 10 minutes at most.
subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(600)", {marker!r}],
                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
""",
    "write_data_cache": """
import glob, os
_home = os.environ.get("SEGLAB_DATA", "")
for _path in [{data!r} + "/escaped", "/opt/seglabs-data/escaped"] + glob.glob(_home + "/*/seglab.json"):
    try:
        with open(_path, "a") as _fh:
            _fh.write("x"); print("ESCAPED: wrote", _path)
    except OSError as _err:
        print("blocked:", type(_err).__name__)
""",
}

# Outputs past the cap, of every kind (bounded: 3 x 40 MB of display updates, 40 MB of widget state, a 40 MB
# error). Placed after the answer in its cell: the answer is defined, so the submission keeps its points.
OUTPUT_FLOOD = """
from IPython.display import display, update_display
_big = "y" * (40 << 20)
_handle = display({"text/plain": "first"}, raw=True, display_id=True)
for _ in range(3):
    update_display({"text/plain": _big}, raw=True, display_id=_handle.display_id)
try:
    import ipywidgets
    _w = ipywidgets.Textarea(value=_big); display(_w)
except ImportError:
    pass
del _big
raise ValueError("z" * (40 << 20))
"""

# A shared anonymous mapping, which RLIMIT_DATA does not count: only the memory cgroup stops it.
SHARED_MMAP = """
import mmap
_m = mmap.mmap(-1, {gb} << 30, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
for _i in range(0, len(_m), 4096):
    _m[_i] = 1
print("ESCAPED: touched {gb} GB of shared memory")
"""

# A student output and a markdown answer that try to run JavaScript in the formgrader (tests/ui checks it in a
# real browser; here, that the HTML nbconvert makes with the course's configuration carries no script).
SCRIPT_OUTPUT = """
from IPython.display import HTML, display
display(HTML("<script>window.seglabsEscaped = 1</script><img src=x onerror='window.seglabsEscaped = 2'>"))
"""
SCRIPT_MARKDOWN = (
    "<script>window.seglabsEscaped = 3</script>\n\nMy answer <img src=x onerror='window.seglabsEscaped = 4'>"
)


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
    "monkeypatch_checks": ("graded", None),  # its zeros pass one hidden case of ex1 ("all pixels ignored")
    "corrupt": ("ungraded: corrupt notebook", 0.0),
    "escape_all": ("graded", 10.0),
    "output_flood": ("graded", 10.0),
    "shared_mmap": ("ungraded: kernel died", 0.0),  # stopped by the memory cgroup (where there is one)
    **{f"escape_{name}": ("graded", 10.0) for name in SANDBOX_ATTACKS},
}
ESCAPES = [f"escape_{name}" for name in SANDBOX_ATTACKS] if ALL else []


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


def _first_answer(nb):
    grade_id = subs.answer_code_cells(nb)[0]
    return next(c for c in nb.cells if subs.nbgrader_meta(c).get("grade_id") == grade_id)


def _with_code(release: Path, code: str, after: bool = False):
    """Lab 00's solution with ``code`` before (or after) its first answer."""
    nb = subs.correct(LAB, release)
    cell = _first_answer(nb)
    cell.source = cell.source + "\n" + code if after else code.lstrip() + "\n" + cell.source
    return nb


def _monkeypatching(release: Path):
    """Lab 00 with a wrong ex1 answer that patches torch's comparisons to hide it."""
    nb = subs.correct(LAB, release)
    _first_answer(nb).source = PATCH_AND_WRONG_ANSWER
    return nb


class _Listener:
    """A TCP port on the host's loopback that counts connections (a sandboxed kernel must make none)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def _escape_code(name: str, values: dict) -> str:
    return SANDBOX_ATTACKS[name].format(**values)


def _submit_sandbox_attacks(course, release: Path, values: dict) -> list[str]:
    """The sandbox attacks: combined in ``escape_all`` always, one submission each with SEGLAB_TEST_ALL_STUBS."""
    combined = SCRIPT_OUTPUT + "".join(_escape_code(name, values) for name in SANDBOX_ATTACKS)
    nb = _with_code(release, combined)
    nb.cells.append(nbformat.v4.new_markdown_cell(SCRIPT_MARKDOWN))
    subs.submit(nb, course.submitted, "escape_all", LAB)
    subs.submit(_with_code(release, OUTPUT_FLOOD, after=True), course.submitted, "output_flood", LAB)
    names = ["escape_all", "output_flood"]
    if _cgroup_available():
        subs.submit(_with_code(release, SHARED_MMAP.format(gb=3)), course.submitted, "shared_mmap", LAB)
        names.append("shared_mmap")
    for student in ESCAPES:
        attack = student.removeprefix("escape_")
        subs.submit(_with_code(release, _escape_code(attack, values)), course.submitted, student, LAB)
    return names + ESCAPES


def _cgroup_available() -> bool:
    parent, why = cgroup.prepare()
    group, _ = cgroup.create(parent, 64, 16, why)
    if group is None:
        return False
    group.remove()
    return True


def _host_leftovers() -> list[str]:
    """What the sandbox attacks tried to leave on the host: marker files, the daemon, the SysV segment."""
    found = [
        p for folder in ("/tmp", "/dev/shm", "/run/lock", "/var/tmp") for p in glob.glob(f"{folder}/{MARKER}")
    ]
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if MARKER.encode() in Path(cmdline).read_bytes():
                found.append(f"process {cmdline.split('/')[2]}")
        except OSError:
            continue
    try:
        keys = [line.split()[0] for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]]
    except OSError:
        keys = []
    found += [f"SysV shm key {k}" for k in keys if k == str(IPC_KEY)]
    return found


def _reads(course, release: Path) -> list[str]:
    """Files a kernel must never read: this course's grades and secrets, and the real checkout's solutions."""
    grading = course.grading
    return [
        str(grading / "grades.csv"),
        str(grading / "grades-by-exercise.csv"),
        str(grading / "gradebook.db"),
        str(grading / "status.json"),
        str(grading / "harness-secret"),
        str(course.autograded / "alice" / LAB / f"{LAB}.ipynb"),
        *glob.glob(str(course.feedback / "alice" / LAB / "*.html")),
        str(course.root / "solutions" / LAB / f"{LAB}.ipynb"),
        str(
            ROOT / "solutions" / LAB / f"{LAB}.ipynb"
        ),  # the world-readable checkout the editable install uses
        str(ROOT / ".git" / "config"),
        "/etc/shadow",
    ]


def _innocent_state(course) -> dict[str, str]:
    """alice's graded notebook and feedback page (gradebook rows are compared separately)."""
    paths = [
        course.autograded / "alice" / LAB / f"{LAB}.ipynb",
        *sorted((course.feedback / "alice").rglob("*.html")),
    ]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _grade_alice(course, release: Path) -> None:
    subs.submit(subs.correct(LAB, release), course.submitted, "alice", LAB)
    first = course_mod.grade(course, LAB, students=["alice"], limits=LIMITS, progress=False)
    assert [r["status"] for r in first.results] == ["graded"], first.results
    # The solution itself was graded first in the same sandbox, with full marks, before any student.
    assert first.reference and first.reference["status"] == "graded", first.reference
    course_mod.export(course)  # the grades CSVs exist: the attacks try to read them
    assert course_mod.feedback(course, LAB), "no feedback page for alice"


def _submit_everything(course, release: Path, listener: _Listener, canary: Path) -> list[str]:
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
    values = dict(reads=_reads(course, release), port=listener.port, marker=MARKER, ipc_key=IPC_KEY)
    values["data"] = str(course_mod.shared_data_dir())
    escapes = _submit_sandbox_attacks(course, release, values)
    return hostile + list(subs.TAMPERING) + ["corrupt", "monkeypatch_checks"] + escapes


@pytest.fixture(scope="module")
def batch():
    canary_dir = Path(tempfile.mkdtemp(prefix="seglabs-canary-", dir="/tmp"))
    os.chmod(canary_dir, 0o755)
    canary = canary_dir / "canary.txt"
    canary.write_text("must survive grading\n")
    os.chmod(canary, 0o644)
    listener = _Listener()
    mp = pytest.MonkeyPatch()
    try:
        # private=True: the course lives in a 0700 folder, like an instructor's checkout other users cannot enter.
        with subs.throwaway_course(LAB, "seglabs-hostile-", private=True) as path:
            root = path.parent
            mp.setenv("AWS_SECRET_ACCESS_KEY", "must-not-reach-a-kernel")
            course = course_mod.load_course(path)
            release = course.release / LAB / f"{LAB}.ipynb"
            _grade_alice(course, release)
            students = _submit_everything(course, release, listener, canary)
            rows_before = _gradebook_rows(course.db_path)
            tree_before = _digest_tree(course.root, _grading_output)
            canary_before = _digest_tree(canary_dir, lambda rel: False)
            innocent_before = _innocent_state(course)
            report = course_mod.grade(
                course, LAB, students=students, workers=2, limits=LIMITS, reference=False, progress=False
            )
            print("\n" + course_mod.grade_summary(report))
            grades_csv, by_exercise = course_mod.export(course)
            yield {
                "root": root,
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
                "innocent_before": innocent_before,
                "innocent_after": _innocent_state(course),
                "leftovers": _host_leftovers(),
                "connections": listener.accepted,
                "csv": {(r["student"], r["lab"]): r for r in csv.DictReader(open(grades_csv))},
                "by_exercise": list(csv.DictReader(open(by_exercise))),
            }
    finally:
        listener.close()
        mp.undo()
        shutil.rmtree(canary_dir, ignore_errors=True)


def _autograded(batch, student: str) -> Path:
    return batch["course"].autograded / student / LAB / f"{LAB}.ipynb"


@pytest.mark.parametrize("student", list(EXPECTED))
def test_each_hostile_submission_ends_as_expected(batch, student):
    if student not in batch["results"]:
        pytest.skip(f"{student} is graded in make test-full, or needs root or a memory cgroup")
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


def _escaped_lines(batch) -> list[str]:
    lines = []
    for student in batch["results"]:
        path = _autograded(batch, student)
        if path.exists():
            lines += [f"{student}: {ln}" for ln in _outputs_text(path).splitlines() if "ESCAPED" in ln]
    return lines


def test_attacks_achieved_nothing(batch):
    assert not _escaped_lines(batch)
    assert batch["connections"] == 0, "a kernel connected to a port on the host's loopback"


def test_the_sandbox_attacks_ran(batch):
    # Each attack reached its end and was refused: no silent crash passes for a sandbox that holds.
    text = _outputs_text(_autograded(batch, "escape_all"))
    assert text.count("blocked: FileNotFoundError") >= len(_reads(batch["course"], Path())), text[-2000:]
    assert "blocked: OSError" in text or "blocked: ConnectionRefusedError" in text  # no network at all
    assert "blocked:" in text and "wrote in /tmp" in text  # its private /tmp, gone with it


def test_grades_from_a_course_inside_a_0700_folder(batch):
    assert batch["root"].stat().st_mode & 0o777 == 0o700
    assert (
        batch["csv"][("alice", LAB)]["status"] == "graded"
        and float(batch["csv"][("alice", LAB)]["score"]) == 10
    )


def test_limits_stopped_forks_memory_and_output(batch):
    if "fork_past_cap" in batch["results"]:
        text = _outputs_text(_autograded(batch, "fork_past_cap"))
        assert "blocked after" in text and "BlockingIOError" in text, text[-500:]
        forks = int(text.split("blocked after ")[1].split()[0])
        assert forks < LIMITS.max_procs
    assert "blocked: MemoryError" in _outputs_text(_autograded(batch, "allocate_past_cap"))
    for student in ("print_100mb", "output_flood"):
        size = _autograded(batch, student).stat().st_size
        assert size < 8 * (1 << 20), f"{student}: {size} bytes reached the autograded notebook"
        assert any("output truncated" in n for n in batch["results"][student]["notes"]), student
    assert "ValueError" in _outputs_text(_autograded(batch, "output_flood"))  # the error is kept, shortened
    assert any("timed out" in n for n in batch["results"]["infinite_loop"]["notes"])


def test_shared_memory_counts_towards_the_memory_cap(batch):
    if "shared_mmap" not in batch["results"]:
        pytest.skip("no memory cgroup here: shared memory is capped by nothing (the summary says so)")
    assert any("memory cap" in n for n in batch["results"]["shared_mmap"]["notes"])
    assert "cgroup" in batch["report"].memory_note


def formgrader_html(course_root: Path, nb) -> str:
    """The page nbgrader's formgrader serves for ``nb``: its exporter, from the course's config, its template."""
    from nbconvert import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config, PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_root)).load_config()
    extra = Config()
    extra.HTMLExporter.template_name = "formgrade"  # as nbgrader's FormgradeExtension.build_extra_config
    extra.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    config.merge(extra)
    keys = ("assignment_id", "notebook_id", "submission_id", "student", "last_name", "first_name", "base_url")
    resources = {**dict.fromkeys(keys, ""), "index": 0, "total": 1, "notebook_path": "/x"}
    body, _ = HTMLExporter(config=config).from_notebook_node(nb, resources=resources)
    return body


def test_formgrader_html_runs_no_student_script(batch):
    nb = nbformat.read(str(_autograded(batch, "escape_all")), as_version=4)
    assert "widgets" not in nb.metadata
    body = formgrader_html(batch["course"].root, nb)
    assert "seglabsEscaped = 1" in body  # the output's attack is in the page, as text...
    assert not re.search(r"<script>\s*window\.seglabsEscaped|<img[^>]*onerror", body)  # ...never as markup


def test_monkeypatched_comparisons_do_not_fool_the_checks(batch):
    # helpers.checks was imported before the student's first cell: it kept the original torch.equal.
    text = _outputs_text(_autograded(batch, "monkeypatch_checks"))
    assert "CAUGHT" in text and "FOOLED" not in text, text[-800:]
    grades = batch["results"]["monkeypatch_checks"]["grades"]
    assert grades[f"{LAB}/ex1_count_pixels_tests"] < 6, grades  # the wrong answer does not get full marks


def test_restored_test_cell_still_catches_a_wrong_answer(batch):
    # The test cell's source was replaced by `pass` and the answer left as the stub: nbgrader restores the
    # test from the gradebook, so the stubbed exercise scores 0 while the other one keeps its points.
    grades = batch["results"]["test_source_emptied"]["grades"]
    first, second = sorted(grades)
    assert grades[first] == 0 and grades[second] > 0, grades


def test_figure_hostile_submissions_are_all_accounted_for(batch):
    students = batch["students"]
    before, after = batch["rows_before"], batch["rows_after"]
    lost = [key for key, value in before.items() if after.get(key) != value]
    graded_students = {student for student, _ in after}
    lost += [s for s in students if s not in graded_students]  # every hostile submission has gradebook rows
    changed = sorted(
        set(batch["tree_before"].items()) ^ set(batch["tree_after"].items())
        | set(batch["canary_before"].items()) ^ set(batch["canary_after"].items())
    )
    read_escapes = _escaped_lines(batch) + ["a loopback connection"] * batch["connections"]
    outlived = batch["leftovers"] + batch["report"].leftover_processes
    innocent = batch["innocent_before"] == batch["innocent_after"] and not changed
    figure = (
        f"{len(students)} hostile submissions, {len(read_escapes)} read what they should not, "
        f"{len(outlived)} outlived their submission, {len(lost)} gradebook rows lost, "
        f"innocent students' grades and feedback {'unchanged' if innocent else 'CHANGED'}"
    )
    print("\n" + figure)
    expected = (
        f"{len(students)} hostile submissions, 0 read what they should not, 0 outlived their submission, "
        "0 gradebook rows lost, innocent students' grades and feedback unchanged"
    )
    assert figure == expected, (figure, read_escapes, outlived, lost, sorted({p for p, _ in changed}))


def test_instructor_can_accept_a_reviewed_tampered_submission(batch, tmp_path):
    course = batch["course"]
    with pytest.raises(course_mod.CourseError, match="no scores"):
        course_mod.accept(course, LAB, "duplicate_grade_id")  # nbgrader could not grade it: nothing to accept
    entry = course_mod.accept(course, LAB, "test_unlocked")
    assert entry["status"] == "graded" and "accepted by the instructor" in entry["details"][0]
    grades_csv, _ = course_mod.export(course, tmp_path / "grades.csv")
    row = {(r["student"], r["lab"]): r for r in csv.DictReader(open(grades_csv))}[("test_unlocked", LAB)]
    assert row["status"] == "graded" and float(row["score"]) == 10


def test_two_graders_on_one_machine_never_share_a_sandbox_uid():
    if not sandbox.is_root():
        pytest.skip("the grader's own uid, in a user namespace, when not root")
    with sandbox.SlotLease(2) as first, sandbox.SlotLease(1) as second:
        uids = {i.uid for i in first.identities + second.identities}
        assert len(uids) == 3 and 0 not in uids
    with sandbox.SlotLease(1) as again:  # released: the first uid is free again
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


def test_gpu_device_nodes_are_bound_into_the_sandbox(tmp_path):
    # What `course grade --gpu` passes (the /dev/nvidia* nodes that exist); no GPU is needed to check the command.
    devices = (
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia-caps",
    )
    mounts = bwrap.Mounts(tmp_path / "scratch", tmp_path / "kernel", tmp_path / "etc", devices=devices)
    for host_uid in (None, sandbox.UID_BASE):  # one layer (a normal user) and two (root: the outer one binds)
        cmd = bwrap.command(["python"], mounts, {}, host_uid)
        binds = [i for i, arg in enumerate(cmd) if arg == "--dev-bind-try"]
        assert [(cmd[i + 1], cmd[i + 2]) for i in binds] == [(d, d) for d in devices]
        assert min(binds) > cmd.index("--dev")  # after the private /dev, which would hide them
    plain = bwrap.Mounts(tmp_path / "scratch", tmp_path / "kernel", tmp_path / "etc")
    assert "--dev-bind-try" not in bwrap.command(["python"], plain, {}, None)  # none without --gpu


def test_kernel_environment_is_a_whitelist(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("SEGLAB_GRADING_DIR", "/somewhere/private")
    monkeypatch.setenv("SEGLAB_BUDGET", "ci")
    env = sandbox.kernel_env("/data", threads=3)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "SEGLAB_GRADING_DIR" not in env
    assert env["SEGLAB_BUDGET"] == "ci" and env["SEGLAB_DATA"] == "/data" and env["PYTHONHASHSEED"] == "0"
    assert env["OMP_NUM_THREADS"] == "3" and env["HOME"] == "/home/student" and env["TMPDIR"] == "/tmp"


def test_grading_refuses_without_bubblewrap_and_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH...
    monkeypatch.setattr(bwrap, "Path", lambda p: tmp_path / "missing" if p == "/usr/bin/bwrap" else Path(p))
    with pytest.raises(bwrap.SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox.check_sandbox()


def _dataset(folder: Path, name: str) -> Path:
    ds = folder / name
    (ds / "train").mkdir(parents=True)
    (ds / "train" / "0.png").write_bytes(b"png")
    (ds / "seglab.json").write_text("{}")
    for path in (ds / "train" / "0.png", ds / "seglab.json"):
        os.chmod(path, 0o600)
    for path in (ds / "train", ds):
        os.chmod(path, 0o700)  # as a kernel's umask 077 leaves it
    return ds


def test_datasets_of_the_reference_run_are_published_readable_by_every_kernel(tmp_path):
    job = tmp_path / "job"
    made = job / "scratch" / sandbox.DATA_LINKS
    _dataset(made, "scenes-64px-200-50-seed0")
    (made / "half-written").mkdir()  # no seglab.json: not a complete dataset, never published
    shared = tmp_path / "shared"
    assert sandbox.publish_datasets(job, shared) == ["scenes-64px-200-50-seed0"]
    published = shared / "scenes-64px-200-50-seed0"
    modes = {
        p.relative_to(published).as_posix(): p.stat().st_mode & 0o777
        for p in [published, *published.rglob("*")]
    }
    assert modes == {".": 0o755, "train": 0o755, "train/0.png": 0o644, "seglab.json": 0o644}
    assert not (shared / "half-written").exists()
    # A later kernel's data folder links it (the shared cache is bound read-only at bwrap.DATA_DIR).
    scratch = tmp_path / "scratch"
    assert sandbox._link_datasets(scratch, str(shared)) == f"{bwrap.HOME}/{sandbox.DATA_LINKS}"
    link = scratch / sandbox.DATA_LINKS / "scenes-64px-200-50-seed0"
    assert os.readlink(link) == f"{bwrap.DATA_DIR}/scenes-64px-200-50-seed0"


def test_a_private_dataset_in_the_shared_cache_is_made_readable(tmp_path):
    ds = _dataset(tmp_path / "cache", "scenes-64px-2000-500-seed0")
    sandbox.share_datasets(tmp_path / "cache")
    assert ds.stat().st_mode & 0o777 == 0o755 and (ds / "seglab.json").stat().st_mode & 0o777 == 0o644


def test_output_cap_counts_every_kind_of_output():
    sizes = {kind: sandbox._size({"data": {"text/plain": "x" * 1000}}) for kind in sandbox._CAPPED}
    assert all(size >= 1000 for size in sizes.values())
    assert {
        "stream",
        "display_data",
        "update_display_data",
        "execute_result",
        "error",
        "comm_msg",
    } <= sandbox._CAPPED
    error = {
        "content": {"ename": "ValueError", "evalue": "z" * (1 << 20), "traceback": ["t" * (1 << 20)] * 50}
    }
    short = sandbox._shortened_error(error)["content"]
    assert short["ename"] == "ValueError" and sandbox._size(short) < 20_000
