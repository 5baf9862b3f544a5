"""Grading at course scale: synthetic submissions through ``course grade``, with 1 and with 2 workers.

For each lab present (default: labs 00-03; lab 04's training would dominate), a throw-away course gets ``--n``
synthetic submissions in a fixed mixture (correct, partially wrong, blank, hostile, tampered, corrupt), is graded
once with 1 worker and once with 2, and the benchmark prints:

- wall time and submissions per minute for each worker count, and the speed-up of 2 workers over 1;
- grading overhead per submission: wall time per submission (1 worker) minus the time the notebook itself ran
  (kernel start and cells, measured inside the sandbox), also as a percentage of that run time;
- the sandbox's cost on the notebook itself: its run time in the sandbox against a plain ``nbclient`` run of the
  solution outside any sandbox;
- whether every submission came back with the status its kind must have (none lost), and whether the two runs
  gave identical grades::

    python -m benchmarks.bench_grading                           # a handful per lab (--n 4), CI budget
    python -m benchmarks.bench_grading --n 100 --labs 00_getting_started

On a machine shared with other work the timings move; the status checks do not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from seglabs_grading import course as course_mod
from seglabs_grading import sandbox
from tests import submissions as subs
from tests.labtools import lab_names, read, solution_path

ROOT = Path(__file__).resolve().parents[1]

# The mixture, in the order submissions are made (it repeats): the first few already cover every kind.
PATTERN = [
    "correct",
    "corrupt",
    "hostile:sys_exit",
    "partial",
    "blank",
    "tampered:duplicate_grade_id",
    "hostile:kill_kernel",
    "correct",
    "hostile:print_100mb",
    "partial",
    "tampered:test_cell_deleted",
    "correct",
    "hostile:allocate_past_cap",
    "partial",
    "correct",
    "blank",
    "correct",
    "partial",
    "correct",
    "correct",
]
EXPECTED_STATUS = {
    "correct": "graded",
    "partial": "graded",
    "blank": "graded",
    "corrupt": "ungraded: corrupt notebook",
    "hostile:sys_exit": "graded",
    "hostile:print_100mb": "graded",
    "hostile:allocate_past_cap": "graded",
    "hostile:kill_kernel": "ungraded: kernel died",
    "tampered:duplicate_grade_id": "tampered: duplicate grade_id",
    "tampered:test_cell_deleted": "tampered: test cell removed",
}
DEFAULT_LABS = ("00_", "01_", "02_", "03_")


def mixture(n: int) -> list[str]:
    return [PATTERN[i % len(PATTERN)] for i in range(n)]


def _targets(course: course_mod.Course, lab: str) -> subs.Targets:
    return subs.Targets(
        course.root, course.db_path, course.submitted / "x" / lab / f"{lab}.ipynb", Path("/nonexistent")
    )


def make_submissions(course: course_mod.Course, lab: str, n: int) -> dict[str, str]:
    """Write ``n`` synthetic submissions; return ``{student: kind}``."""
    release = course.release / lab / f"{lab}.ipynb"
    kinds = {}
    for i, kind in enumerate(mixture(n)):
        student = f"s{i:03d}-{kind.split(':')[-1].replace('_', '-')}"
        kinds[student] = kind
        if kind == "corrupt":
            subs.corrupt(course.submitted, student, lab)
            continue
        if kind.startswith("hostile:"):
            nb = subs.hostile(lab, release, kind.split(":", 1)[1], _targets(course, lab))
        elif kind.startswith("tampered:"):
            nb = subs.tampered(lab, release, kind.split(":", 1)[1])
        else:
            nb = getattr(subs, kind)(lab, release)
        subs.submit(nb, course.submitted, student, lab)
    return kinds


def plain_run_seconds(lab: str, timeout: int, threads: int) -> float:
    """The solution notebook run by nbclient alone: no nbgrader, no sandbox (kernel start and cells).

    Same thread count as the graded kernels, so the comparison measures the sandbox, not the threads.
    """
    from nbclient import NotebookClient

    nb = read(solution_path(lab))
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        with tempfile.TemporaryDirectory() as cwd:  # whatever the notebook writes stays out of the checkout
            start = time.monotonic()
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True)
            client.execute(cwd=cwd)
            return time.monotonic() - start
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check(kinds: dict[str, str], report: course_mod.GradeReport) -> list[str]:
    """Problems: submissions without a result, or with a status their kind must not have."""
    results = {r["student"]: r for r in report.results}
    problems = []
    for student, kind in kinds.items():
        r = results.get(student)
        if r is None:
            problems.append(f"{student}: lost (no result)")
            continue
        if r["status"] != EXPECTED_STATUS[kind]:
            problems.append(f"{student}: {r['status']} (expected {EXPECTED_STATUS[kind]}) {r['details'][:1]}")
        full = r["max_auto_score"]
        if kind in ("correct", "hostile:sys_exit", "hostile:print_100mb", "hostile:allocate_past_cap"):
            if r["auto_score"] != full:
                problems.append(f"{student}: {kind} scored {r['auto_score']}/{full}")
        elif kind == "blank" and r["auto_score"] != 0:
            problems.append(f"{student}: blank scored {r['auto_score']}")
        elif kind == "partial" and not (r["auto_score"] is not None and r["auto_score"] < full):
            problems.append(f"{student}: partially wrong scored {r['auto_score']}/{full}")
    return problems


def bench_lab(lab: str, n: int, workers: list[int], limits: sandbox.Limits, workdir: Path) -> dict:
    root = Path(
        tempfile.mkdtemp(prefix=f"seglabs-bench-{lab}-", dir=workdir)
    )  # 0700: the sandbox needs no more
    old = os.environ.get("SEGLAB_GRADING_DIR")
    os.environ["SEGLAB_GRADING_DIR"] = str(root / "course" / "grading")
    try:
        course = course_mod.load_course(subs.released_course(root, lab))
        kinds = make_submissions(course, lab, n)
        # A first, untimed run fills the dataset cache and the page cache, as a reference run would.
        plain_run_seconds(lab, limits.cell_timeout, limits.threads)
        runs = {}
        for w in workers:
            report = course_mod.grade(
                course, lab, workers=w, limits=limits, force=True, reference=False, progress=False
            )
            runs[w] = report
        plain = plain_run_seconds(lab, limits.cell_timeout, limits.threads)
        return {"lab": lab, "n": n, "kinds": kinds, "plain": plain, "runs": runs}
    finally:
        if old is None:
            os.environ.pop("SEGLAB_GRADING_DIR", None)
        else:
            os.environ["SEGLAB_GRADING_DIR"] = old
        shutil.rmtree(root, ignore_errors=True)


def summarise(result: dict) -> dict:
    runs = result["runs"]
    first = runs[min(runs)]
    # Everything the 1-worker run spent outside the notebooks' own execution (worker start, copies, nbgrader's
    # sanitising and saving, merging, cleaning up), per submission and relative to the execution time.
    own_total = sum(r.get("exec_seconds") or 0.0 for r in first.results)
    executed = [r for r in first.results if r.get("exec_seconds")]
    own = own_total / len(executed) if executed else 0.0
    overhead = (first.seconds - own_total) / max(1, result["n"])
    correct = [r["exec_seconds"] for r in first.results if result["kinds"][r["student"]] == "correct"]
    grades = {w: {r["student"]: (r["status"], r["grades"]) for r in rep.results} for w, rep in runs.items()}
    problems = [p for rep in runs.values() for p in check(result["kinds"], rep)]
    return {
        "lab": result["lab"],
        "n": result["n"],
        "wall": {w: rep.seconds for w, rep in runs.items()},
        "per_minute": {w: 60 * result["n"] / rep.seconds for w, rep in runs.items()},
        "speedup": (runs[min(runs)].seconds / runs[max(runs)].seconds) if len(runs) > 1 else None,
        "own_run_s": own,
        "overhead_s": overhead,
        "overhead_pct": 100 * (first.seconds - own_total) / own_total if own_total else float("nan"),
        "plain_s": result["plain"],
        "sandbox_exec_pct": 100 * (statistics.mean(correct) / result["plain"] - 1)
        if correct
        else float("nan"),
        "identical": all(g == grades[min(grades)] for g in grades.values()),
        "memory_note": first.memory_note,
        "problems": problems,
    }


def report_lines(s: dict) -> list[str]:
    walls = ", ".join(
        f"{w} worker{'s' if w > 1 else ''}: {t:.1f} s ({s['per_minute'][w]:.1f}/min)"
        for w, t in s["wall"].items()
    )
    lines = [
        f"{s['lab']}: {s['n']} submissions; {walls}",
        f"  speed-up with {max(s['wall'])} workers: {s['speedup']:.2f}x (goal >= 1.8x on 20+ submissions)"
        if s["speedup"]
        else "  (one worker count)",
        f"  notebook's own run time in the sandbox {s['own_run_s']:.1f} s; grading overhead per submission "
        f"{s['overhead_s']:.2f} s ({s['overhead_pct']:.0f}% of the notebook's own run; goal <= 20%)",
        f"  solution run without nbgrader or sandbox {s['plain_s']:.1f} s; in the sandbox {s['sandbox_exec_pct']:+.0f}%",
        f"  statuses as expected, none lost: {'yes' if not s['problems'] else 'NO'}; "
        f"identical grades across worker counts: {'yes' if s['identical'] else 'NO'}",
    ]
    lines += [f"  {s['memory_note']}"] if s.get("memory_note") else []
    lines += [f"  ! {p}" for p in s["problems"]]
    return lines


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4, help="submissions per lab (default: %(default)s)")
    p.add_argument(
        "--labs", nargs="*", default=None, help="labs (default: 00-03 present); 'all' for every lab"
    )
    p.add_argument("--workers", default="1,2", help="worker counts to compare (default: %(default)s)")
    p.add_argument("--budget", choices=("ci", "full"), default="ci", help="SEGLAB_BUDGET of the notebooks")
    p.add_argument("--cell-timeout", type=int, default=sandbox.Limits().cell_timeout)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = p.parse_args(argv)
    os.environ["SEGLAB_BUDGET"] = args.budget
    present = lab_names()
    if args.labs == ["all"]:
        labs = present
    elif args.labs:
        labs = [lab for lab in args.labs if lab in present]
    else:
        labs = [lab for lab in present if lab.startswith(DEFAULT_LABS)]
    workers = sorted({int(w) for w in args.workers.split(",")})
    limits = sandbox.Limits(
        cell_timeout=args.cell_timeout,
        notebook_timeout=max(600, 10 * args.cell_timeout),
        output_mb=2,
        threads=1,
    )
    print(
        f"grading benchmark: {args.n} submissions per lab, labs {', '.join(labs)}, workers {workers}, "
        f"{os.cpu_count()} CPUs, kernels in bubblewrap as {'unprivileged uids (grader is root)' if sandbox.is_root() else 'your uid in a user namespace'}"
    )
    summaries = []
    for lab in labs:
        s = summarise(bench_lab(lab, args.n, workers, limits, args.workdir))
        summaries.append(s)
        print("\n".join(report_lines(s)), flush=True)
    if len(summaries) > 1:
        n = sum(s["n"] for s in summaries)
        walls = {w: sum(s["wall"][w] for s in summaries) for w in workers}
        print(
            f"all labs: {n} submissions; "
            + ", ".join(f"{w}: {t:.1f} s ({60 * n / t:.1f}/min)" for w, t in walls.items())
            + (f"; speed-up {walls[min(walls)] / walls[max(walls)]:.2f}x" if len(walls) > 1 else "")
        )
    return summaries


if __name__ == "__main__":
    results = main()
    sys.exit(1 if any(s["problems"] or not s["identical"] for s in results) else 0)
