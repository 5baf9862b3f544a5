"""`--dist loadgroup` really keeps an ``xdist_group`` on one worker with the installed pytest and pytest-xdist.

The grading tests build one expensive batch per group (a graded course, a hostile batch, a lab's kernel) in a
session fixture; when the groups are ignored, each worker builds the same batch again and `make test` takes
minutes longer with every test still passing. pytest 9.2 with pytest-xdist 3.8 did exactly that, silently.
"""

import re
import subprocess
import sys

PROBE = """
import pytest

GROUPED = [pytest.param(i, marks=pytest.mark.xdist_group(f"lab{i}")) for i in range(2)]


@pytest.mark.parametrize("i", GROUPED)
def test_first(i):
    pass


@pytest.mark.parametrize("i", GROUPED)
def test_second(i):
    pass


@pytest.mark.xdist_group("module")
def test_third():
    pass


@pytest.mark.xdist_group("module")
def test_fourth():
    pass
"""


def test_each_xdist_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_probe.py").write_text(PROBE)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", "-v"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    workers = {
        nodeid: worker
        for worker, nodeid in re.findall(r"\[(gw\d)\] .*PASSED test_probe\.py::(\S+)", run.stdout)
    }
    assert len(workers) == 6, f"expected 6 passed probe tests\n{run.stdout}"
    groups = {"lab0": [], "lab1": [], "module": []}
    for nodeid, worker in workers.items():
        name, _, group = nodeid.partition("@")
        assert group in groups, (
            f"{name} ran without its xdist_group suffix: loadgroup ignored the group\n{run.stdout}"
        )
        groups[group].append(worker)
    split = {group: ws for group, ws in groups.items() if len(set(ws)) != 1}
    assert not split, f"these xdist groups ran on more than one worker: {split}\n{run.stdout}"
