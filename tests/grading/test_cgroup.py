"""The kernels' cgroups (``seglabs_grading.cgroup``) and how the sandbox caps processes (``sandbox.nproc_limit``).

One real cgroup v2 test: on this machine (cgroup v1 plus a hybrid v2 mount at ``/sys/fs/cgroup/unified`` that
offers only ``hugetlb``), as root, a child process in a throwaway non-root v2 group runs :func:`cgroup.prepare`
(the "no internal processes" rule makes enabling a controller fail with EBUSY until it moves into its leaf) and
makes two kernel groups: the limits on each, its process in the child ``kernel`` below them. The rest runs on fake
cgroup trees (folders of plain files) and needs nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seglabs_grading import bwrap, cgroup, sandbox
from tests.labtools import ROOT

MB = 1 << 20


# -----------------------------------------------------------------------------------------------------
# A real cgroup v2 hierarchy, with the hugetlb controller standing in for memory and pids
# -----------------------------------------------------------------------------------------------------
def _v2_root() -> Path | None:
    """A cgroup v2 mount whose root offers ``hugetlb`` (pure v2 at /sys/fs/cgroup, or a hybrid's unified)."""
    for path in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        with contextlib.suppress(OSError):
            if "hugetlb" in (path / "cgroup.controllers").read_text().split():
                return path
    return None


# Runs in the throwaway group: prepare (the leaf dance), two kernel groups, a process joined into one.
CHILD = r"""
import json, subprocess, sys
from pathlib import Path
from seglabs_grading import cgroup

root = Path(sys.argv[1])
def own():
    return [l.split(":", 2)[2] for l in Path("/proc/self/cgroup").read_text().splitlines() if l.startswith("0::")][0]
before = own()
parent, why = cgroup.prepare(root, ("hugetlb",))
after = own()
again, _ = cgroup.prepare(root, ("hugetlb",))  # a second batch in the same process: the same base
groups = [cgroup.create(parent, 64, 16)[0] for _ in range(2)]
sleeper = subprocess.Popen(["sleep", "30"], preexec_fn=groups[0].join)
members = groups[0].pids()
in_group = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
first = groups[0].folders[0]
files = {str(f.relative_to(first)): sorted(p.name for p in f.iterdir() if p.name.startswith("hugetlb."))
         for f in (first, first / cgroup.KERNEL)}
left = groups[0].kill_all()
code = sleeper.wait()
folders = [str(g.folders[0]) for g in groups]
controllers = [list(g.controllers) for g in groups]
for g in groups:
    g.remove()
print(json.dumps(dict(before=before, after=after, parent=parent.as_dict(), why=why, again=again.as_dict(),
    folders=folders, controllers=controllers, members=members, sleeper=sleeper.pid, left=left, code=code,
    in_group=in_group, files=files, gone=[Path(f).exists() for f in folders],
    note=cgroup.describe(groups[0], "", 64))))
"""


@contextlib.contextmanager
def _hugetlb_for_children(root: Path):
    """``+hugetlb`` in the v2 root's ``subtree_control`` (the root may have processes), undone afterwards."""
    control = root / "cgroup.subtree_control"
    had = "hugetlb" in control.read_text().split()
    if not had:
        control.write_text("+hugetlb")
    try:
        yield
    finally:
        if not had:
            with contextlib.suppress(OSError):  # EBUSY: another test run still uses it; harmless either way
                control.write_text("-hugetlb")


def _remove_tree(folder: Path) -> None:
    """Remove a cgroup and its child groups, children first."""
    for group in reversed(cgroup._subtree(folder)):
        cgroup._rmdir(group)


def test_v2_prepare_moves_the_grader_into_a_leaf_and_makes_kernel_groups_beside_it():
    root = _v2_root()
    if not sandbox.is_root():
        pytest.skip("needs root: it makes a throwaway group at the root of the cgroup v2 hierarchy")
    if root is None:
        pytest.skip(
            "no cgroup v2 mount offering the hugetlb controller (/sys/fs/cgroup or /sys/fs/cgroup/unified)"
        )
    top = root / f"seglabs-test-{os.getpid()}"
    with _hugetlb_for_children(root):
        top.mkdir()
        try:
            run = subprocess.run(
                [sys.executable, "-c", CHILD, str(root)],
                preexec_fn=cgroup.Cgroup(2, [top]).join,  # the child is the group's process: EBUSY is real
                capture_output=True, text=True, timeout=20, cwd=ROOT,
            )  # fmt: skip
            assert run.returncode == 0, run.stderr
            out = json.loads(run.stdout)
            left_behind = sorted(p.name for p in top.iterdir() if p.is_dir())
        finally:
            _remove_tree(top)
    name = f"/{top.name}"
    assert [Path(f).parent for f in out["folders"]] == [top, top]  # siblings of the leaf, never nested
    assert out["why"] == "" and out["before"] == name
    assert out["after"] == f"{name}/{cgroup.LEAF}"  # the leaf dance happened
    assert out["parent"] == {"version": 2, "folders": {"": str(top)}, "controllers": ["hugetlb"], "note": ""}
    assert out["again"] == out["parent"]  # never a group under the leaf, however often it runs
    assert [Path(f).name.rsplit("-", 1)[1] for f in out["folders"]] == ["0", "1"]
    assert out["controllers"] == [["hugetlb"], ["hugetlb"]]
    # The kernel's process is in the child group, the limits are in the group above it (out of its reach).
    kernel_path = f"{name}/{Path(out['folders'][0]).name}/{cgroup.KERNEL}"
    assert f"0::{kernel_path}\n" in out["in_group"]
    assert out["files"]["."] and out["files"][cgroup.KERNEL] == []  # hugetlb.*.max above, nothing below
    assert out["members"] == [out["sleeper"]] and out["left"] == 0 and out["code"] == -9  # the subtree killed
    assert out["gone"] == [False, False]  # child then parent removed
    assert left_behind == [cgroup.LEAF]  # both kernel groups removed; the leaf goes with the grader
    assert not top.exists()
    assert "RLIMIT_DATA only" in out["note"]  # hugetlb is no memory cap: the summary does not claim one


# -----------------------------------------------------------------------------------------------------
# Fake cgroup trees: plain files where the kernel has its control files
# -----------------------------------------------------------------------------------------------------
OWN = "/user.slice/user-1000.slice/session-1.scope"


def _fake_v2(tmp_path: Path, controllers: str = "cpu io memory pids", procs: str = "") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    base = root / OWN.lstrip("/")
    base.mkdir(parents=True)
    (root / "cgroup.controllers").write_text(controllers)
    (base / "cgroup.controllers").write_text(controllers)
    (base / "cgroup.subtree_control").write_text("")
    (base / "cgroup.procs").write_text(procs or f"{os.getpid()}\n")
    return root, base


def _busy_until_leaf(monkeypatch, base: Path, leaf_frees_it: bool) -> list[str]:
    """Writes to ``base/cgroup.subtree_control`` fail with EBUSY (as with processes in ``base``), until the
    grader moved into its leaf when ``leaf_frees_it``; returns the log of writes."""
    writes: list[str] = []

    def write(path: Path, value: str) -> None:
        writes.append(f"{path.relative_to(base)}={value}")
        if path.name == "cgroup.procs":
            return  # a move: nothing to keep in a fake tree (a real group's folder can be removed after it)
        if path == base / "cgroup.subtree_control":
            moved = f"{cgroup.LEAF}/cgroup.procs={os.getpid()}" in writes
            if not (leaf_frees_it and moved):
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        path.write_text(value)

    monkeypatch.setattr(cgroup, "_write", write)
    return writes


def test_v2_limits_are_written_in_a_group_beside_the_grader(tmp_path):
    root, base = _fake_v2(tmp_path)
    parent, why = cgroup.prepare(root, own=OWN)
    assert why == "" and parent == cgroup.Parent(2, {"": str(base)}, ("memory", "pids"))
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids"
    group, why = cgroup.create(cgroup.Parent.from_dict(json.loads(json.dumps(parent.as_dict()))), 64, 20)
    assert why == "" and group is not None and group.folders[0].parent == base
    assert (group.folders[0] / "memory.max").read_text() == str(64 * MB)
    assert (group.folders[0] / "memory.swap.max").read_text() == "0"
    assert (group.folders[0] / "pids.max").read_text() == "20"
    assert (group.folders[0] / "cgroup.max.depth").read_text() == "1"  # the kernel's child, nothing below it
    assert cgroup.describe(group, "", 64).startswith("memory cap: cgroup v2 (memory, pids), 64 MB")
    # The kernel joins the child group, which holds no limit: the files it might reach are not the limits.
    kernel = group.folders[0] / cgroup.KERNEL
    assert group.leaf == cgroup.KERNEL and sorted(p.name for p in kernel.iterdir()) == []
    (kernel / "cgroup.procs").write_text("")  # what the kernel makes in every group
    group.join()
    assert (kernel / "cgroup.procs").read_text() == "0"


def test_v2_kill_count_and_remove_act_on_the_kernel_group_and_its_child(tmp_path, monkeypatch):
    root, base = _fake_v2(tmp_path)
    group, _ = cgroup.create(cgroup.prepare(root, own=OWN)[0], 64, 20)
    assert group is not None
    upper, kernel = group.folders[0], group.folders[0] / cgroup.KERNEL
    (upper / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")  # hierarchical in v2
    (upper / "cgroup.kill").write_text("")
    (upper / "cgroup.procs").write_text("")
    (kernel / "cgroup.procs").write_text("4242\n")
    killed: list[int] = []
    monkeypatch.setattr(cgroup.os, "kill", lambda pid, sig: killed.append(pid))
    assert group.pids() == [4242] and group.oom_kills() == 1
    assert group.kill_all(attempts=1) == 1 and killed == [4242]  # the fake's 4242 never dies
    assert (upper / "cgroup.kill").read_text() == "1"  # the upper group's: it takes the child too
    removed: list[str] = []
    monkeypatch.setattr(cgroup, "_rmdir", lambda folder: removed.append(folder.name))
    monkeypatch.setattr(group, "kill_all", lambda: 0)
    group.remove()
    assert removed == [cgroup.KERNEL, upper.name]  # the child first, then the group with the limits


def test_groups_nested_deeply_below_the_kernel_do_not_stop_the_cleanup(tmp_path, monkeypatch):
    upper = tmp_path / "seglabs-1-0"
    deep = upper / cgroup.KERNEL
    deep.mkdir(parents=True)
    for _ in range(1100):  # deeper than Python's recursion limit
        deep = deep / "g"
        deep.mkdir()
    (deep / "cgroup.procs").write_text("4242\n")
    group = cgroup.Cgroup(2, [upper], ("memory",), leaf=cgroup.KERNEL)
    try:
        assert group.pids() == [4242]
        (deep / "cgroup.procs").unlink()
        monkeypatch.setattr(group, "kill_all", lambda: 0)
        group.remove()
        assert not upper.exists()
    finally:  # whatever happened: pytest's own recursive cleanup of tmp_path could not remove this tree
        (deep / "cgroup.procs").unlink(missing_ok=True)
        while deep != tmp_path:
            with contextlib.suppress(FileNotFoundError):
                deep.rmdir()
            deep = deep.parent


def test_v2_without_pids_delegated_caps_memory_only(tmp_path):
    root, base = _fake_v2(tmp_path, controllers="cpu memory")
    parent, _ = cgroup.prepare(root, own=OWN)
    assert parent is not None and parent.controllers == ("memory",)
    assert (base / "cgroup.subtree_control").read_text() == "+memory"
    group, _ = cgroup.create(parent, 64, 20)
    assert group is not None and not (group.folders[0] / "pids.max").exists()


def test_v2_memory_not_delegated_says_why(tmp_path):
    root, base = _fake_v2(tmp_path, controllers="cpu io pids")
    parent, why = cgroup.prepare(root, own=OWN)
    assert parent is None
    assert f"the memory controller is not delegated to {base} (it offers: cpu io pids)" in why
    assert "systemd-run --user --scope -p Delegate=yes" in why
    assert "shared memory is NOT capped" in cgroup.describe(*cgroup.create(parent, 64, 20, why), 64)


def test_v2_other_processes_in_the_grader_cgroup_point_to_systemd_run(tmp_path, monkeypatch):
    root, base = _fake_v2(tmp_path, procs=f"4242\n{os.getpid()}\n")  # e.g. the instructor's shell
    _busy_until_leaf(monkeypatch, base, leaf_frees_it=False)
    parent, why = cgroup.prepare(root, own=OWN)
    assert parent is None and "1 other process(es) share the grader's cgroup" in why
    assert "systemd-run --user --scope -p Delegate=yes" in why
    assert not (base / cgroup.LEAF).exists()  # the grader went back: nothing left behind


def test_v2_a_failed_move_into_the_leaf_leaves_no_leaf_behind(tmp_path, monkeypatch):
    root, base = _fake_v2(tmp_path)

    def write(path: Path, value: str) -> None:
        if path == base / "cgroup.subtree_control":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        if path == base / cgroup.LEAF / "cgroup.procs":
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))  # base not delegated to us
        path.write_text(value)

    monkeypatch.setattr(cgroup, "_write", write)
    parent, why = cgroup.prepare(root, own=OWN)
    assert parent is None and "Permission denied" in why and f"{cgroup.LEAF}/cgroup.procs" in why
    assert not (base / cgroup.LEAF).exists()  # the leaf it made is gone again
    (base / cgroup.LEAF).mkdir()  # a leaf that was there before (an earlier batch's) stays
    assert cgroup.prepare(root, own=OWN)[0] is None and (base / cgroup.LEAF).is_dir()


def _mountinfo(tmp_path: Path, root: Path, options: str) -> Path:
    info = tmp_path / "mountinfo"
    info.write_text(
        "24 1 0:22 / /proc rw,nosuid - proc proc rw\n"
        f"41 31 0:38 / {root} rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 {options}\n"
    )
    return info


@pytest.mark.parametrize(
    ("euid", "options", "disable_userns", "noted"),
    [
        (1000, "rw", False, True),  # a normal user, no nsdelegate, kernels may make user namespaces: say so
        (1000, "rw,nsdelegate,memory_recursiveprot", False, False),  # what systemd mounts
        (1000, "rw", True, False),  # bubblewrap's --disable-userns: no namespace to mount cgroup2 in
        (0, "rw", False, False),  # as root the kernel's uid owns none of the files
    ],
)
def test_v2_a_missing_nsdelegate_is_noted_where_it_matters(
    tmp_path, monkeypatch, euid, options, disable_userns, noted
):
    root, _ = _fake_v2(tmp_path)
    monkeypatch.setattr(cgroup, "MOUNTINFO", _mountinfo(tmp_path, root, options))
    monkeypatch.setattr(cgroup.os, "geteuid", lambda: euid)
    monkeypatch.setattr(cgroup, "_userns_disabled_in_sandbox", lambda: disable_userns)
    assert cgroup._mount_options(root) == set(options.split(",")) | {
        "nosuid", "nodev", "noexec", "relatime"
    }  # fmt: skip
    parent, why = cgroup.prepare(root, own=OWN)
    assert why == "" and parent is not None and bool(parent.note) == noted
    group, _ = cgroup.create(cgroup.Parent.from_dict(parent.as_dict()), 64, 20)
    line = cgroup.describe(group, "", 64)
    assert line.startswith(
        "memory cap: cgroup v2 (memory, pids), 64 MB per submission (shared memory included)"
    )
    assert ("mounted without nsdelegate" in line) == noted and (f"remount,nsdelegate {root}" in line) == noted


def test_this_machines_bwrap_disables_user_namespaces_in_the_innermost_layer(tmp_path):
    try:
        path = bwrap.find_bwrap()
    except bwrap.SandboxUnavailable:
        pytest.skip("no bubblewrap here")
    if not bwrap.supports_disable_userns(path):
        pytest.skip(f"{path} has no --disable-userns (bubblewrap < 0.8)")
    mounts = bwrap.Mounts(tmp_path / "scratch", tmp_path / "kernel", tmp_path / "etc")
    for host_uid in (None, sandbox.UID_BASE):
        cmd = bwrap.command(["python"], mounts, {}, host_uid)
        inner = len(cmd) - 1 - cmd[::-1].index(path)  # the innermost bwrap (the only one as a normal user)
        assert cmd.count("--disable-userns") == 1 and cmd.index("--disable-userns") > inner
        assert "--unshare-user" in cmd[inner:]  # --disable-userns needs it
    assert sandbox.check_sandbox() is None  # and a sandbox still starts with it
    probe = tmp_path / "probe"
    probe.mkdir()
    uid = sandbox.UID_BASE + sandbox.MAX_SLOTS if sandbox.is_root() else None
    nested = "unshare -U true && echo made || echo refused"  # a user namespace of the kernel's own
    cmd = bwrap.command(
        ["/bin/sh", "-c", nested], sandbox._probe_mounts(probe), {"PATH": "/usr/bin:/bin"}, uid
    )
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert run.stdout.strip() == "refused", run.stderr


def test_a_bwrap_that_lists_disable_userns_but_refuses_it_is_not_given_it(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text('#!/bin/sh\necho "usage: bwrap [--disable-userns] ..."\nexit 1\n')
    fake.chmod(0o755)
    assert not bwrap.supports_disable_userns(str(fake))
    assert bwrap._no_userns(str(fake)) == ["--unshare-user"]


def test_v2_the_grader_alone_moves_into_its_leaf_once(tmp_path, monkeypatch):
    root, base = _fake_v2(tmp_path)
    writes = _busy_until_leaf(monkeypatch, base, leaf_frees_it=True)
    parent, why = cgroup.prepare(root, own=OWN)
    assert why == "" and parent is not None and parent.folders == {"": str(base)}
    assert writes == [
        "cgroup.subtree_control=+memory +pids",
        f"{cgroup.LEAF}/cgroup.procs={os.getpid()}",
        "cgroup.subtree_control=+memory +pids",
    ]
    (base / "cgroup.subtree_control").write_text("memory pids")  # as the kernel shows it
    writes.clear()
    again, _ = cgroup.prepare(root, own=f"{OWN}/{cgroup.LEAF}")  # the next batch, from inside the leaf
    assert again == parent and writes == []


def test_v1_groups_under_the_grader_memory_and_pids_groups(tmp_path, monkeypatch):
    root = tmp_path / "cgroup"
    for name in ("memory", "pids"):
        (root / name / "grader").mkdir(parents=True)
        (root / name / "cgroup.procs").write_text("1\n")
        (root / name / "grader" / "cgroup.procs").write_text("")
    monkeypatch.setattr(cgroup, "_own_paths", lambda: {"memory": "/grader", "pids": "/grader", "": "/"})
    parent, why = cgroup.prepare(root)
    assert why == "" and parent is not None and parent.version == 1
    group, _ = cgroup.create(parent, 64, 20)
    assert group is not None and [f.parent for f in group.folders] == [
        root / "memory/grader",
        root / "pids/grader",
    ]
    assert (group.folders[0] / "memory.limit_in_bytes").read_text() == str(64 * MB)
    assert (group.folders[1] / "pids.max").read_text() == "20"
    assert parent.holds(group.folders[0]) and not parent.holds(root / "memory" / "grader")


def test_only_a_kernel_group_of_the_parent_may_be_removed_after_a_killed_worker(tmp_path):
    # The base at the cgroup root: the system's own groups are its children too.
    parent = cgroup.Parent(2, {"": str(tmp_path)}, ("memory", "pids"))
    assert parent.holds(tmp_path / "seglabs-4242-0") and parent.holds(tmp_path / "seglabs-1-17")
    for foreign in ("system.slice", "user.slice", cgroup.LEAF, "seglabs-test-1", "seglabs-4242-0x"):
        assert not parent.holds(tmp_path / foreign), foreign
    assert not parent.holds(tmp_path / "system.slice" / "seglabs-4242-0")  # a direct child only
    assert not parent.holds(tmp_path / "seglabs-4242-0" / cgroup.KERNEL)


def test_no_cgroup_file_system_says_so(tmp_path):
    parent, why = cgroup.prepare(tmp_path)
    assert parent is None and why == f"no cgroup file system at {tmp_path}"


# -----------------------------------------------------------------------------------------------------
# RLIMIT_NPROC counts the whole uid: how the sandbox uses it
# -----------------------------------------------------------------------------------------------------
LIMITS = sandbox.Limits(max_procs=64)
PER = 64 + sandbox.PIDS_HEADROOM


def test_nproc_is_not_relied_on_where_a_pids_cgroup_caps_each_submission():
    group = cgroup.Cgroup(2, [Path("/nonexistent")], ("memory", "pids"))
    nproc, note = sandbox.nproc_limit(LIMITS, None, group, workers=4)
    assert nproc is None and f"pids cgroup, {PER} per submission" in note


def test_nproc_of_a_normal_user_counts_every_worker_and_what_the_uid_ran_before_the_batch(monkeypatch):
    memory_only = cgroup.Cgroup(2, [Path("/nonexistent")], ("memory",))
    for group in (None, memory_only):
        nproc, note = sandbox.nproc_limit(LIMITS, None, group, workers=3, uid_tasks=100)
        assert nproc == 100 + 3 * (PER + sandbox.WORKER_TASKS)
        assert "RLIMIT_NPROC only" in note and "no per-submission cap" in note


def test_nproc_baseline_is_measured_once_before_the_workers_not_at_each_launch(monkeypatch, tmp_path):
    running = [100]  # what the uid runs: grows as workers and sibling kernels start
    monkeypatch.setattr(sandbox, "user_tasks", lambda uid: running[0])
    setup = sandbox.BatchSetup(tmp_path, tmp_path, tmp_path, None, sandbox.Limits(max_procs=64, memory_mb=0))
    pool = sandbox.WorkerPool(setup, tmp_path, [None, None])
    pool.prepare_batch()
    job = sandbox.Job("00_getting_started", "bob", tmp_path, job_dir=tmp_path)
    running[0] += 2 * (sandbox.WORKER_TASKS + PER)  # both workers and a sibling kernel now run
    message = sandbox._job_message(job, setup, None, pool)
    assert message["uid_tasks"] == 100 and json.loads(json.dumps(message)) == message  # plain data
    nproc, _ = sandbox.nproc_limit(setup.limits, None, None, message["workers"], message["uid_tasks"])
    assert nproc == 100 + 2 * (PER + sandbox.WORKER_TASKS)  # not grown by what the batch started itself
    as_root = sandbox.WorkerPool(setup, tmp_path, [sandbox.Identity("slot 0", 2_100_000_000, 2_100_000_000)])
    as_root.prepare_batch()
    assert as_root.uid_tasks == 0  # each slot's uid is its own: nothing to measure


def test_nproc_as_root_is_the_slot_uid_own():
    identity = sandbox.Identity("uid 2100000000", 2_100_000_000, 2_100_000_000)
    assert sandbox.nproc_limit(LIMITS, identity, None, workers=8)[0] == 64
    assert sandbox.nproc_limit(sandbox.Limits(max_procs=0), None, None, workers=8)[0] is None
