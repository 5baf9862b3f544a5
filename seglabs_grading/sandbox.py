"""Grade one submission at a time with nbgrader's own autograde, each kernel confined by bubblewrap.

``course grade`` (see :mod:`seglabs_grading.course`) drives this module; nothing here is needed by students.

How one submission is graded
----------------------------
1. The parent process builds a private **job folder** (0700) for the submission: a copy of the course's
   ``nbgrader_config.py``, the lab's non-notebook source files, a copy of the gradebook and a copy of *this*
   student's submission only. Only the trusted worker reads it; no kernel ever sees it.
2. A long-lived **worker process** (one per parallel slot) runs nbgrader's ``Autograde`` converter on that copy,
   unchanged except for the execute step (:func:`_execute_class`), which starts each kernel through the kernel
   manager of :func:`_kernel_manager_class`:

   - inside **bubblewrap** (:mod:`seglabs_grading.bwrap`): new user, PID, IPC, network and mount namespaces; the
     Python environment and the course's two packages read-only, a minimal ``/etc``, a private ``/tmp``, and as
     the only writable folder a scratch folder holding copies of the submission's non-notebook files (never a
     notebook: after nbgrader's sanitising step it holds the hidden tests). No network, no gradebook, no other
     submission, no ``solutions/``, no grades: they do not exist in the sandbox;
   - as an **unprivileged host uid** (one per slot, :class:`SlotLease`) when the grader is root, never root;
   - in a **cgroup** (:mod:`seglabs_grading.cgroup`) capping the memory of the whole submission (shared
     memory included) and its processes, where the machine allows one; and under ``setrlimit`` limits
     (:class:`Limits`) in any case;
   - with a **whitelisted environment** (no credentials, ``PYTHONHASHSEED=0`` and fixed thread counts for
     determinism) and an **output cap** over every kind of output (:func:`_output_cap_class`).
3. The worker reads the scores nbgrader wrote into the *copy* of the gradebook and reports them as JSON on a
   private pipe. The parent merges them into the real gradebook: one writer, no concurrent SQLite writers.
4. A per-notebook **wall-clock limit** is enforced by the parent: past it, the worker and its sandbox are killed
   (``--die-with-parent``; the PID namespace takes every process of the submission with it), the submission is
   recorded as ``ungraded: timed out`` and a fresh worker takes the next one. One bad notebook never stops the
   batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from helpers.config import META_FILE, SETTINGS
from seglabs_grading import bwrap, cgroup
from seglabs_grading import status as st

MAX_NOTEBOOK_BYTES = 64 << 20  # a submitted notebook larger than this is not opened
SOURCE_DIR = "source"  # name of the source folder inside a job's course copy
UID_BASE = 2_100_000_000  # host uids of the sandbox slots (no account needed): UID_BASE + slot index
MAX_SLOTS = 64
PIDS_HEADROOM = 8  # bubblewrap's own processes, counted by the pids cgroup besides the kernel's
WORKER_TASKS = 32  # a grading worker's own threads for RLIMIT_NPROC (at most 8 seen in the hostile batch)

# What a kernel may inherit from the grader's environment; everything else (tokens, keys, paths to the
# course) is dropped.
_ENV_KEEP = {"LANG", "LANGUAGE", "TZ", "SEGLAB_BUDGET", "CUDA_VISIBLE_DEVICES", "TERM"}
_ENV_KEEP_PREFIXES = ("LC_", "NVIDIA_")


# =====================================================================================================
# Limits and identities
# =====================================================================================================
@dataclass(frozen=True)
class Limits:
    """Resource limits of one graded notebook.

    ``memory_mb`` caps the whole submission through its cgroup (every page, shared memory and ``/tmp`` files
    included; past it the kernel is stopped) and each of its processes through ``RLIMIT_DATA`` (a large private
    allocation raises ``MemoryError`` instead). Not ``RLIMIT_AS``: ``import torch`` alone reserves about 3.7 GB
    of address space it never touches. Without a cgroup only the per-process limits hold (see
    :func:`seglabs_grading.cgroup.describe`).
    """

    # seconds per cell (nbgrader interrupts the cell, the rest still runs); the default is the settings table's
    cell_timeout: int = int(SETTINGS["SEGLAB_CELL_TIMEOUT"].default)
    notebook_timeout: int = 900  # seconds for the whole submission, enforced by killing it
    memory_mb: int = 4096  # cgroup total and RLIMIT_DATA per process; 0 = no limit
    max_procs: int = 64  # processes and threads: pids cgroup and/or RLIMIT_NPROC (see nproc_limit)
    cpu_s: int = 0  # RLIMIT_CPU per process; 0 = 2 x notebook_timeout
    file_mb: int = 512  # RLIMIT_FSIZE (largest file) and the size of the private /tmp
    output_mb: float = 4.0  # outputs kept per notebook (every kind); errors are kept, shortened
    threads: int = 1  # OMP/MKL threads of the kernel (fixed, so results do not depend on the machine's load)

    def cpu_limit(self) -> int:
        return self.cpu_s or 2 * self.notebook_timeout


@dataclass(frozen=True)
class Identity:
    """The unprivileged host uid (and gid) a kernel runs as when the grader is root; no account is needed."""

    name: str
    uid: int
    gid: int


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class SlotLease:
    """Exclusive use of ``n`` sandbox uids, machine-wide, for as long as the lease is open.

    As root, one unprivileged uid per parallel slot (``None``, the grader's own uid inside a user namespace,
    otherwise): ``RLIMIT_NPROC`` then counts one slot's processes only. The lease (an ``flock`` on a root-only
    file per uid) keeps several graders on one machine (two courses, two test runs) on different uids.
    """

    def __init__(self, n: int, lock_dir: Path | None = None):
        import fcntl
        import tempfile

        self.identities: list[Identity | None] = []
        self._handles: list[Any] = []
        if not is_root():
            self.identities = [None] * n
            return
        lock_dir = lock_dir or Path(tempfile.gettempdir()) / "seglabs-sandbox-locks"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        if lock_dir.is_symlink() or lock_dir.stat().st_uid != 0:
            raise RuntimeError(f"{lock_dir} must be a folder owned by root")
        os.chmod(lock_dir, 0o700)
        for index in range(MAX_SLOTS):
            if len(self.identities) == n:
                break
            handle = open(lock_dir / f"{index}.lock", "w")  # noqa: SIM115 - held for the lease
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            uid = UID_BASE + index
            self.identities.append(Identity(f"uid {uid}", uid, uid))
            self._handles.append(handle)
        if len(self.identities) < n:
            self.close()
            raise RuntimeError(f"no free sandbox uid: {MAX_SLOTS} are in use by other graders")

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles = []

    def __enter__(self) -> SlotLease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _proc_status(pid_dir: Path) -> str | None:
    try:
        return (pid_dir / "status").read_text()
    except OSError:
        return None


def user_tasks(uid: int) -> int:
    """Number of tasks (processes and threads) whose real uid is ``uid``: what ``RLIMIT_NPROC`` counts."""
    total = 0
    for pid_dir in Path("/proc").glob("[0-9]*"):
        text = _proc_status(pid_dir)
        uid_line = re.search(r"^Uid:\s+(\d+)", text or "", re.M)
        threads = re.search(r"^Threads:\s+(\d+)", text or "", re.M)
        if uid_line and int(uid_line.group(1)) == uid:
            total += int(threads.group(1)) if threads else 1
    return total


def user_pids(uid: int) -> list[int]:
    """Processes whose real uid is ``uid`` (after grading: none may be left of a slot's uid)."""
    pids = []
    for pid_dir in Path("/proc").glob("[0-9]*"):
        match = re.search(r"^Uid:\s+(\d+)", _proc_status(pid_dir) or "", re.M)
        if match and int(match.group(1)) == uid:
            pids.append(int(pid_dir.name))
    return pids


def kill_process_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def check_sandbox() -> None:
    """Raise :class:`seglabs_grading.bwrap.SandboxUnavailable` unless a kernel can be sandboxed here.

    Runs a trivial command through the same bubblewrap layers a kernel gets, so a missing ``bwrap``, blocked
    user namespaces (Docker's default seccomp profile, Ubuntu's AppArmor restriction) or a missing ``setpriv``
    is reported before grading starts, with what to do.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="seglabs-check-") as tmp:
        mounts = _probe_mounts(Path(tmp))
        uid = UID_BASE + MAX_SLOTS if is_root() else None
        cmd = bwrap.command(["/bin/true"], mounts, {"PATH": "/usr/bin:/bin"}, uid)
        try:
            run = subprocess.run(
                cmd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
            )
        except OSError as err:
            raise bwrap.SandboxUnavailable(f"cannot run bwrap ({err}). {bwrap.INSTALL_HINT}") from err
        if run.returncode != 0:
            raise bwrap.SandboxUnavailable(
                f"bubblewrap cannot create its sandbox here: {run.stderr.strip()[-300:]}\n"
                "It needs user namespaces: in Docker run the grader with `--security-opt seccomp=unconfined` "
                "(or a profile allowing clone/unshare), on Ubuntu >= 23.10 allow bwrap in AppArmor "
                "(README: 'What grading needs')."
            )


def _probe_mounts(tmp: Path) -> bwrap.Mounts:
    scratch, kernel = tmp / "scratch", tmp / "kernel"
    for folder in (scratch, kernel):
        folder.mkdir(mode=0o700)
        if is_root():
            os.chown(folder, UID_BASE + MAX_SLOTS, UID_BASE + MAX_SLOTS)
    os.chmod(tmp, 0o711)
    return bwrap.Mounts(scratch, kernel, bwrap.write_etc(tmp / "etc"))


def _limit_setter(
    limits: Limits, nproc: int | None, group: cgroup.Cgroup | None = None
) -> Callable[[], None]:
    """The ``preexec_fn`` of a kernel's sandbox: join its cgroup, then ``setrlimit`` (plain syscalls only).

    Runs between ``fork`` and ``exec`` of bubblewrap, so every process of the submission starts inside the
    cgroup and under the limits (soft = hard: the kernel cannot raise them).
    """
    import resource

    data = limits.memory_mb << 20 if limits.memory_mb else resource.RLIM_INFINITY
    cpu = limits.cpu_limit()
    fsize = limits.file_mb << 20 if limits.file_mb else resource.RLIM_INFINITY

    def apply() -> None:
        if group is not None:
            group.join()
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return apply


# =====================================================================================================
# Inside a worker: the kernel's sandbox, its kernel manager and the execute step nbgrader uses
# =====================================================================================================
_JOB: dict[str, Any] = {}  # the job a worker is grading now (a worker grades one at a time)


def _copy_regular_files(src: Path, dest: Path, skip_suffixes: tuple[str, ...] = ()) -> None:
    """Copy regular files only (no symlinks, devices or fifos) from ``src`` into ``dest``."""
    for path in sorted(src.rglob("*")) if src.is_dir() else []:
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        rel = path.relative_to(src)
        if any(part.startswith(".ipynb_checkpoints") for part in rel.parts):
            continue
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not path.name.endswith(skip_suffixes):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for path in root.rglob("*"):
        os.lchown(path, uid, gid)


def kernel_env(data_dir: str | None, threads: int) -> dict[str, str]:
    """The kernel's whole environment (paths as the sandbox sees them): a whitelist of the grader's, plus homes
    and caches in the scratch folder and the private ``/tmp``."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith(_ENV_KEEP_PREFIXES)}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        HOME=bwrap.HOME,
        TMPDIR="/tmp",
        IPYTHONDIR="/tmp/ipython",
        MPLCONFIGDIR="/tmp/matplotlib",
        XDG_CACHE_HOME="/tmp/cache",
        JUPYTER_RUNTIME_DIR="/tmp/jupyter-runtime",
        PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )
    if data_dir:
        env["SEGLAB_DATA"] = data_dir
    return env


DATA_LINKS = ".data"  # in the scratch folder: the kernel's dataset folder (SEGLAB_DATA)


def _link_datasets(scratch: Path, shared: str | None) -> str:
    """The kernel's ``SEGLAB_DATA``: a folder of its own with a link to each dataset of the shared cache.

    The shared cache is bound read-only at :data:`seglabs_grading.bwrap.DATA_DIR`: existing datasets load
    instantly and nothing a submission writes reaches another one; a missing dataset is generated in the
    kernel's own folder. The reference run's new datasets are published to the cache by the trusted grader
    (:func:`publish_datasets`), never written there by a kernel.
    """
    own = scratch / DATA_LINKS
    own.mkdir(parents=True, exist_ok=True)
    shared_path = Path(shared) if shared else None
    if shared_path is not None and shared_path.is_dir():
        for entry in sorted(shared_path.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                (own / entry.name).symlink_to(f"{bwrap.DATA_DIR}/{entry.name}")
    return f"{bwrap.HOME}/{DATA_LINKS}"


def publish_datasets(job_dir: Path, shared: Path) -> list[str]:
    """After the reference run: copy the datasets its kernel generated into the shared cache, readable by all.

    The reference notebook is the instructor's own; its kernel still ran sandboxed and wrote only its scratch
    folder. The trusted grader copies each complete new dataset (one with its ``seglab.json``) into ``shared``
    under its own uid with world-readable modes, so every later kernel can read it through the read-only bind.
    """
    made = job_dir / "scratch" / DATA_LINKS
    published = []
    for entry in sorted(made.iterdir()) if made.is_dir() else []:
        if entry.is_symlink() or not entry.is_dir() or entry.name.startswith("."):
            continue
        if (shared / entry.name).exists() or not (entry / META_FILE).is_file():
            continue
        shared.mkdir(parents=True, exist_ok=True)
        tmp = shared / f".{entry.name}.publish-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(entry, tmp, symlinks=False)
        _make_readable(tmp)
        with contextlib.suppress(OSError):  # another grader published it meanwhile: keep theirs
            os.rename(tmp, shared / entry.name)
            published.append(entry.name)
        shutil.rmtree(tmp, ignore_errors=True)
    return published


def share_datasets(shared: Path) -> None:
    """Make the shared cache readable by every kernel: a dataset left private (e.g. made by a kernel of an older
    grader under umask 077) would otherwise be generated again by every submission."""
    if not shared.is_dir() or shared.stat().st_uid != os.getuid():
        return
    os.chmod(shared, shared.stat().st_mode | 0o755)
    for entry in shared.iterdir():
        with contextlib.suppress(OSError):
            info = entry.stat(follow_symlinks=False)
            if (
                entry.is_dir()
                and not entry.is_symlink()
                and info.st_uid == os.getuid()
                and info.st_mode & 0o005 != 0o005
            ):
                _make_readable(entry)


def _make_readable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _prepare_scratch(job_dir: Path, submission_dir: Path, identity: Identity | None) -> tuple[Path, Path]:
    """A fresh scratch folder (the submission's non-notebook files) and socket folder, owned by the slot's uid."""
    scratch, sockets = job_dir / "scratch", job_dir / "kernel"
    for folder in (scratch, sockets):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(mode=0o700)
    # The student's other files, never a notebook (the sanitised one holds the hidden tests).
    _copy_regular_files(submission_dir, scratch, skip_suffixes=(".ipynb",))
    return scratch, sockets


def _sandbox_connection_file(host_file: str, sockets: Path) -> str:
    """A copy of the connection file for the kernel: the same key and ports, sockets at the sandbox's path."""
    info = json.loads(Path(host_file).read_text())
    info["ip"] = f"{bwrap.KERNEL_DIR}/{Path(info['ip']).name}"
    inside = sockets / "connection.json"
    inside.write_text(json.dumps(info))
    os.chmod(inside, 0o600)
    return f"{bwrap.KERNEL_DIR}/connection.json"


def _kernel_command(kernel_cmd: list[str], host_file: str, inside_file: str) -> list[str]:
    """The kernelspec's command with this Python, the sandbox's connection file and the checks imported first."""
    cmd = [sys.executable, *kernel_cmd[1:]] if kernel_cmd else [sys.executable]
    cmd = [inside_file if part == host_file else part for part in cmd]
    if any("ipykernel" in part for part in cmd):
        # Import the checks before the first cell: the built-ins they capture are then the originals,
        # whatever the student's code patches later (no name is bound in the notebook's namespace).
        cmd.append("--IPKernelApp.exec_lines=__import__('helpers.checks')")
    return cmd


def _sandboxed_kernel_pid(outer: int) -> int | None:
    """The kernel's host pid: the shallowest descendant of bubblewrap that is this Python running ``ipykernel``
    (bubblewrap's and ``setpriv``'s own command lines hold the kernel's command too, after theirs)."""
    python = os.fsencode(sys.executable)
    children: dict[int, list[int]] = {}
    for pid_dir in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int((pid_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(pid_dir.name))
    level = [outer]
    for _ in range(8):
        level = [c for pid in level for c in children.get(pid, [])]
        for pid in level:
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if argv[0] == python and any(b"ipykernel" in arg for arg in argv[1:3]):
                    return pid
    return None


def _kernel_cgroup(job: dict[str, Any], limits: Limits, job_dir: Path) -> cgroup.Cgroup | None:
    """The kernel's group, made under the batch's :class:`seglabs_grading.cgroup.Parent` (found once by the
    grader, in the job message), recorded for the parent; the summary's memory line in ``job``."""
    if limits.memory_mb:
        parent = cgroup.Parent.from_dict(job["cgroup"]) if job.get("cgroup") else None
        group, why = cgroup.create(
            parent, limits.memory_mb, limits.max_procs + PIDS_HEADROOM, job.get("cgroup_reason", "")
        )
    else:
        group, why = None, "--memory-mb 0"
    job.setdefault("cgroups", []).append(group)
    job["memory_note"] = cgroup.describe(group, why, limits.memory_mb)
    if group is not None:
        with open(job_dir / "cgroups.txt", "a") as fh:  # for the parent, should this worker be killed
            fh.write("".join(f"{f}\n" for f in group.folders))
    return group


def nproc_limit(
    limits: Limits, identity: Identity | None, group: cgroup.Cgroup | None, workers: int, uid_tasks: int = 0
) -> tuple[int | None, str]:
    """The kernel's ``RLIMIT_NPROC`` (``None``: not set) and the summary's line on what caps its processes.

    ``RLIMIT_NPROC`` counts every task of the uid, not of the process. As root each slot has a uid of its own,
    so it caps one submission. As a normal user every worker's kernels and the grader share one uid: where a
    ``pids`` cgroup caps each submission, it is not set; where none does, it caps the uid's total at
    ``uid_tasks`` (what the uid ran before the batch's workers started, measured once by the grader: never
    again at a launch, where it would count the sibling kernels too) plus ``workers`` × (the per-submission cap
    and the worker's own tasks), and one submission can take its siblings' share.
    """
    if not limits.max_procs:
        return None, "processes: no cap (--max-procs 0)"
    per = limits.max_procs + PIDS_HEADROOM
    pids_cgroup = group is not None and "pids" in group.controllers
    if identity is not None:
        how = f"pids cgroup ({per}) and" if pids_cgroup else "only"
        return limits.max_procs, f"processes: {how} RLIMIT_NPROC of the slot's own uid ({limits.max_procs})"
    if pids_cgroup:
        return (
            None,
            f"processes: pids cgroup, {per} per submission (no RLIMIT_NPROC: all workers share your uid)",
        )
    total = uid_tasks + workers * (per + WORKER_TASKS)
    return total, (
        f"processes: RLIMIT_NPROC only, {total} for your whole uid (what it ran before the batch + {workers} "
        f"worker(s) x ({per} + {WORKER_TASKS} of the worker's own)); "
        "no per-submission cap: one submission can starve the others (README: 'What grading needs')"
    )


def _sandbox_launch(manager: Any, kernel_cmd: list[str], kw: dict[str, Any]) -> list[str]:
    """Everything a kernel's launch needs but the launch itself: folders, cgroup, limits, the bwrap command."""
    job = _JOB
    limits = Limits(**job["limits"])
    identity = Identity(**job["identity"]) if job.get("identity") else None
    job_dir = Path(job["job_dir"])
    scratch, sockets = _prepare_scratch(job_dir, Path(kw.get("cwd") or job_dir), identity)
    data_dir = _link_datasets(scratch, job.get("data_dir"))
    inside_file = _sandbox_connection_file(manager.connection_file, sockets)
    cmd = _kernel_command(kernel_cmd, manager.connection_file, inside_file)
    if identity is not None:
        for folder in (scratch, sockets):
            _chown_tree(folder, identity.uid, identity.gid)
    group = _kernel_cgroup(job, limits, job_dir)
    nproc, procs_note = nproc_limit(limits, identity, group, int(job.get("workers") or 1), job["uid_tasks"])
    job["memory_note"] += f"; {procs_note}"
    mounts = bwrap.Mounts(
        scratch, sockets, bwrap.write_etc(job_dir / "etc"),
        data=Path(job["data_dir"]) if job.get("data_dir") and Path(job["data_dir"]).is_dir() else None,
        readonly=bwrap.python_paths(), devices=tuple(job.get("devices") or ()),
    )  # fmt: skip
    env = kernel_env(data_dir, limits.threads)
    kw.update(
        cwd="/", env={"PATH": "/usr/bin:/bin"}, umask=0o077, preexec_fn=_limit_setter(limits, nproc, group)
    )
    return bwrap.command(
        cmd, mounts, env, identity.uid if identity else None, tmp_bytes=(limits.file_mb or 512) << 20
    )


def _kernel_manager_class():
    from jupyter_client.manager import AsyncKernelManager

    class SandboxKernelManager(AsyncKernelManager):
        """Starts the kernel in bubblewrap (see :func:`_sandbox_launch`), over ZMQ on Unix sockets in the job.

        Interrupts go to the kernel process inside the sandbox (bubblewrap does not forward signals); a kill
        kills bubblewrap, and the PID namespace takes every process of the submission with it.
        """

        sandboxed = True  # what the grading harness checks before it grades (harness.preprocessors)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            sockets = Path(_JOB["job_dir"]) / "kernel"
            self.transport = "ipc"
            self.ip = str(sockets / "k")
            self.connection_file = str(Path(_JOB["job_dir"]) / "runtime" / "kernel.json")
            self._inner_pid: int | None = None

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            full = _sandbox_launch(self, kernel_cmd, kw)
            job_dir = Path(_JOB["job_dir"])
            log = open(job_dir / "kernel.log", "ab")  # noqa: SIM115 - the kernel writes through this fd
            kw["stdout"] = kw["stderr"] = log
            try:
                await super()._async_launch_kernel(full, **kw)
            finally:
                log.close()
            pid = getattr(self.provisioner, "pid", None)
            if pid:
                (job_dir / "kernel.pid").write_text(str(pid))

        async def interrupt_kernel(self) -> None:
            outer = getattr(self.provisioner, "pid", None)
            if self._inner_pid is None and outer:
                self._inner_pid = _sandboxed_kernel_pid(outer)
            if self._inner_pid is not None:
                try:
                    os.killpg(self._inner_pid, signal.SIGINT)  # the kernel leads its own session
                except OSError:
                    with contextlib.suppress(OSError):
                        os.kill(self._inner_pid, signal.SIGINT)

    return SandboxKernelManager


# Messages whose content ends up in the notebook or in the worker's memory: all of them count towards the cap.
_CAPPED = {
    "stream",
    "display_data",
    "update_display_data",
    "execute_result",
    "error",
    "comm_open",
    "comm_msg",
}
_ERROR_KEEP = 2000  # characters of an error's value and of each of its last traceback lines kept past the cap


def _size(value: Any) -> int:
    """Characters (or bytes) in a message's content, counted through dicts and lists."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, dict):
        return sum(_size(k) + _size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_size(v) for v in value)
    return 8


def _shortened_error(msg: dict[str, Any]) -> dict[str, Any]:
    """The same error, its value and traceback cut to a few KB: it still fails the cell, with its name."""
    content = dict(msg["content"])
    content["evalue"] = str(content.get("evalue", ""))[:_ERROR_KEEP]
    content["traceback"] = [str(line)[:_ERROR_KEEP] for line in content.get("traceback", [])[-5:]]
    return {**msg, "content": content}


def _output_cap_class(base: type) -> type:
    """``base`` (an nbclient executor class) with a cap on everything the kernel sends.

    Streams, display data and its updates, execute results, errors and widget messages all count. Past the cap
    a cell keeps one note per stream (a dropped ``stderr`` still leaves a ``stderr`` output, which nbgrader
    scores as a failed test, so truncation never turns a failure into a pass) and its errors, shortened.
    Widget state is never stored in the notebook (``store_widget_state`` off; see also :func:`_execute_class`).
    """

    class OutputCap(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.store_widget_state = False
            self._output_bytes = 0
            self._truncated: set[tuple[int, str]] = set()

        def process_message(self, msg, cell, cell_index):
            kind = msg.get("msg_type")
            if kind not in _CAPPED:
                return super().process_message(msg, cell, cell_index)
            self._output_bytes += _size(msg.get("content")) + _size(msg.get("buffers") or [])
            cap = float(_JOB.get("limits", {}).get("output_mb", 4.0)) * (1 << 20)
            if self._output_bytes <= cap:
                return super().process_message(msg, cell, cell_index)
            _JOB.setdefault("events", []).append("output truncated")
            if kind == "error":
                return super().process_message(_shortened_error(msg), cell, cell_index)
            name = msg["content"].get("name", "stdout") if kind == "stream" else "stdout"
            if (cell_index, name) not in self._truncated:
                from nbformat.v4 import new_output

                self._truncated.add((cell_index, name))
                note = f"\n[output truncated by the grader: this notebook sent more than {cap / (1 << 20):g} MB]\n"
                cell.outputs.append(new_output("stream", name=name, text=note))
            return None

    return OutputCap


def _execute_class(base: type | None = None):
    """``base`` (nbgrader's Execute, or the Execute subclass the course configures, e.g. the grading harness's)
    with the sandboxed kernel manager, the output cap and a record of what happened."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbgrader.preprocessors import Execute

    class SandboxExecute(_output_cap_class(base or Execute)):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["kernel_manager_class"] = _kernel_manager_class()
            super().__init__(*args, **kwargs)

        def preprocess(self, nb, resources=None, km=None):
            start = time.monotonic()
            try:
                return super().preprocess(nb, resources, km)
            except DeadKernelError:
                _JOB.setdefault("events", []).append("kernel died")
                raise
            except CellTimeoutError:
                _JOB.setdefault("events", []).append("kernel unresponsive after a cell timeout")
                raise
            finally:
                _JOB["exec_seconds"] = time.monotonic() - start
                # The formgrader's classic template loads the widget-embedding script when this key exists.
                nb.metadata.pop("widgets", None)

    SandboxExecute.__name__ = f"Sandboxed{(base or Execute).__name__}"
    return SandboxExecute


def _sandboxed_steps(steps: list[Any]) -> list[Any]:
    """The autograde pipeline with its execute step (nbgrader's Execute or any subclass) sandboxed."""
    from nbgrader.preprocessors import Execute
    from traitlets.utils.importstring import import_item

    out = []
    for step in steps:
        cls = import_item(step) if isinstance(step, str) else step
        out.append(_execute_class(cls) if isinstance(cls, type) and issubclass(cls, Execute) else step)
    if out == list(steps):
        raise RuntimeError("the autograde pipeline has no Execute step to sandbox")
    return out


def _autograde_config(job: dict[str, Any]):
    """The course's own nbgrader configuration, pointed at the job's copy, with the sandboxed execute step."""
    from nbgrader.converters import Autograde
    from traitlets.config import Config, PyFileConfigLoader

    job_dir = Path(job["job_dir"])
    course, grading = job_dir / "course", job_dir / "grading"
    os.environ["SEGLAB_GRADING_DIR"] = str(grading)  # the project's config file reads it
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    over = Config()
    over.CourseDirectory.root = str(course)
    over.CourseDirectory.source_directory = SOURCE_DIR
    over.CourseDirectory.submitted_directory = str(grading / "submitted")
    over.CourseDirectory.autograded_directory = str(grading / "autograded")
    over.CourseDirectory.feedback_directory = str(grading / "feedback")
    over.CourseDirectory.db_url = f"sqlite:///{grading / 'gradebook.db'}"
    over.Exchange.root = str(grading / "exchange")
    if (job_dir.parent / "harness-secret").is_file():  # the batch's copy of the course secret (harness SEED)
        over.HarnessExecute.secret_file = str(job_dir.parent / "harness-secret")
    timeout = int(job["limits"]["cell_timeout"])
    over.Execute.timeout = timeout
    over.ExecutePreprocessor.timeout = timeout
    over.Execute.interrupt_on_timeout = True
    steps = (
        config.Autograde.get("autograde_preprocessors")
        or Autograde.class_traits()["autograde_preprocessors"].default()
    )
    over.Autograde.autograde_preprocessors = _sandboxed_steps(list(steps))
    config.merge(over)
    return config


def expected_cells(db_path: Path, lab: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{notebook: {grade_id: {grade, solution, locked, points, cell_type}}}`` as recorded in the gradebook."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            """
            SELECT nb.name, sc.name, sc.locked, sc.cell_type, gc.max_score, sol.id IS NOT NULL, gc.id IS NOT NULL
            FROM source_cell sc
            JOIN notebook nb ON sc.notebook_id = nb.id
            JOIN assignment a ON nb.assignment_id = a.id
            LEFT JOIN base_cell bg ON bg.notebook_id = nb.id AND bg.name = sc.name AND bg.type = 'GradeCell'
            LEFT JOIN grade_cells gc ON gc.id = bg.id
            LEFT JOIN base_cell bs ON bs.notebook_id = nb.id AND bs.name = sc.name AND bs.type = 'SolutionCell'
            LEFT JOIN solution_cells sol ON sol.id = bs.id
            WHERE a.name = ?
            """,
            (lab,),
        ).fetchall()
    finally:
        con.close()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for notebook, name, locked, cell_type, points, solution, grade in rows:
        out.setdefault(notebook, {})[name] = {
            "grade": bool(grade),
            "solution": bool(solution),
            "locked": bool(locked),
            "points": float(points) if points is not None else None,
            "cell_type": cell_type,
        }
    return out


def _read_notebook_cells(path: Path) -> tuple[list[Any] | None, str]:
    """The cells of a submitted notebook, or ``(None, why it is not a readable notebook)``."""
    import nbformat

    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return None, f"file is larger than {MAX_NOTEBOOK_BYTES >> 20} MB"
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        cells = nb["cells"]
        if not isinstance(cells, list):
            raise ValueError("'cells' is not a list")
    except Exception as err:  # noqa: BLE001 - anything that is not a readable notebook
        return None, f"{type(err).__name__}: {str(err)[:300]}"
    return cells, ""


def _changed_metadata(meta: dict[str, Any], want: dict[str, Any]) -> list[str]:
    changed = [
        k
        for k, v in (("grade", True), ("solution", want["solution"]), ("locked", want["locked"]))
        if bool(meta.get(k, False)) != v
    ]
    try:
        if want["points"] is not None and float(meta.get("points", -1)) != want["points"]:
            changed.append("points")
    except (TypeError, ValueError):
        changed.append("points")
    return changed


def _tampering(
    seen: dict[str, list[dict[str, Any]]], expected: dict[str, dict[str, Any]]
) -> dict[str, list[str]]:
    """``{tampering status: details}`` of a notebook whose graded cells' metadata are ``seen``."""
    found: dict[str, list[str]] = {}
    for grade_id, metas in seen.items():
        if len(metas) > 1:
            found.setdefault(st.DUPLICATE_GRADE_ID, []).append(f"{grade_id} appears {len(metas)} times")
    for grade_id, want in expected.items():
        if not want["grade"]:
            continue
        test_cell = not want["solution"]
        if grade_id not in seen:
            key = st.TEST_CELL_REMOVED if test_cell else st.ANSWER_CELL_REMOVED
            found.setdefault(key, []).append(
                f"{grade_id} is missing (deleted, or its nbgrader metadata removed)"
            )
            continue
        changed = _changed_metadata(seen[grade_id][0], want)
        if changed and test_cell:
            found.setdefault(st.TEST_CELL_CHANGED, []).append(f"{grade_id}: {', '.join(changed)}")
    return found


def inspect_submission(path: Path, expected: dict[str, dict[str, Any]]) -> tuple[str | None, list[str]]:
    """Check a submitted notebook before grading. Returns ``(status or None, details)``.

    ``status`` is :data:`~seglabs_grading.status.CORRUPT` when the file cannot be read as a notebook, or the
    first tampering found (in the order of :data:`seglabs_grading.status.TAMPERING`). nbgrader itself restores
    an emptied or edited test cell's *source* from the gradebook, but records nothing for a deleted cell or one
    whose metadata was stripped, fails on edited metadata, and keeps only the first of two cells sharing a
    grade_id.
    """
    cells, why = _read_notebook_cells(path)
    if cells is None:
        return st.CORRUPT, [why]
    seen: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader") if isinstance(cell, dict) else None
        if isinstance(meta, dict) and meta.get("grade_id"):
            seen.setdefault(str(meta["grade_id"]), []).append(meta)
    found = _tampering(seen, expected)
    for status in st.TAMPERING:
        if status in found:
            details = [f"{k.split(': ', 1)[1]}: {d}" for k in st.TAMPERING if k in found for d in found[k]]
            return status, details
    return None, []


def _read_scores(db_path: Path, lab: str, student: str) -> dict[str, Any]:
    """What nbgrader recorded for this submission in the job's gradebook copy."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db_path}") as gb:
        sub = gb.find_submission(lab, student)
        out: dict[str, Any] = {
            "timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
            "notebooks": {},
        }
        for snb in sub.notebooks:
            grades = {}
            for g in snb.grades:
                grades[g.name] = {
                    "auto_score": g.auto_score,
                    "max_score": float(g.max_score or 0),
                    "needs_manual_grade": bool(g.needs_manual_grade),
                    "cell_type": g.cell.cell_type if hasattr(g.cell, "cell_type") else None,
                }
            out["notebooks"][snb.name] = {
                "late_penalty": snb.late_submission_penalty,
                "grades": grades,
                "comments": {c.name: c.auto_comment for c in snb.comments},
            }
        return out


def _timed_out_cells(autograded: Path) -> list[str]:
    import nbformat

    names = []
    for path in sorted(autograded.glob("*.ipynb")):
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception:  # noqa: BLE001
            continue
        for i, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error" and out.get("ename") == "CellTimeoutError":
                    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                    names.append(grade_id or f"cell {i}")
    return names


def _classify_failure(events: list[str], log: str) -> str:
    if "kernel died" in events or re.search(r"DeadKernelError|Kernel died", log):
        return st.KERNEL_DIED
    if any("unresponsive" in e for e in events) or "Timeout waiting for IOPub" in log:
        return st.TIMED_OUT
    if re.search(r"NotJSONError|not valid JSON|does not appear to be JSON|NBFormatError", log):
        return st.CORRUPT
    if "Inconsistent checksums" in log:
        return st.TEST_CELL_CHANGED
    return st.FAILED


def _pre_checks(
    grading: Path, lab: str, student: str
) -> tuple[str | None, list[str], list[tuple[str, list[str]]]]:
    """Before running anything: ``(final status or None, its details, tampering found)``."""
    expected = expected_cells(grading / "gradebook.db", lab)
    if not expected:
        return st.FAILED, [f"lab {lab!r} is not in the gradebook"], []
    tamper: list[tuple[str, list[str]]] = []
    for notebook, cells in sorted(expected.items()):
        path = grading / "submitted" / student / lab / f"{notebook}.ipynb"
        if not path.is_file():
            continue  # nbgrader scores a missing notebook 0 itself
        status, details = inspect_submission(path, cells)
        if status == st.CORRUPT:
            return status, [f"{notebook}.ipynb: {d}" for d in details], []
        if status:
            tamper.append((status, [f"{notebook}.ipynb: {d}" for d in details]))
    return None, [], tamper


def _autograde(job: dict[str, Any]) -> dict[str, Any]:
    """nbgrader's Autograde on the job's copy; ``{"success", "log", "error"}`` as nbgrader's ``capture_log``."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    os.environ["JUPYTER_RUNTIME_DIR"] = str(Path(job["job_dir"]) / "runtime")
    config = _autograde_config(job)
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = job["lab"]
    coursedir.student_id = job["student"]
    app = Autograde(coursedir=coursedir, config=config)
    app.force = True
    app.create_student = True
    return capture_log(app)


def _memory_events() -> int:
    return sum(g.oom_kills() for g in _JOB.get("cgroups", []) if g is not None)


def _outcome(job: dict[str, Any], result: dict[str, Any], tamper: list[tuple[str, list[str]]]) -> None:
    """Fill ``result`` from what nbgrader did, what the tampering check found and what the kernel ran into."""
    outcome = _autograde(job)
    log = (outcome.get("log") or "") + (outcome.get("error") or "")
    result["log_tail"] = log[-4000:]
    events = _JOB.get("events", [])
    grading = Path(job["job_dir"]) / "grading"
    autograded = grading / "autograded" / job["student"] / job["lab"]
    limits = job["limits"]
    if outcome.get("success") and autograded.is_dir():
        result["scores"] = _read_scores(grading / "gradebook.db", job["lab"], job["student"])
        result["status"] = tamper[0][0] if tamper else st.GRADED
        result["details"] = tamper[0][1] if tamper else []
        timed_out = _timed_out_cells(autograded)
        if timed_out:
            result["notes"].append(f"cell timed out after {limits['cell_timeout']} s: {', '.join(timed_out)}")
    else:
        result["status"] = st.first(tamper[0][0] if tamper else None, _classify_failure(events, log))
        errors = [line for line in log.splitlines() if "ERROR" in line or "Error" in line]
        result["details"] = (tamper[0][1] if tamper else []) + errors[-3:]
    if "output truncated" in events:
        result["notes"].append(f"output truncated at {limits['output_mb']:g} MB")
    if _memory_events():
        result["notes"].append(
            f"stopped at the memory cap ({limits['memory_mb']} MB for the whole submission)"
        )


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Grade one prepared job folder with nbgrader's Autograde; return what happened (never raises)."""
    _JOB.clear()
    _JOB.update(job, events=[], cgroups=[])
    lab, student = job["lab"], job["student"]
    result: dict[str, Any] = {"lab": lab, "student": student, "status": None, "details": [], "notes": []}
    start = time.monotonic()
    try:
        final, details, tamper = _pre_checks(Path(job["job_dir"]) / "grading", lab, student)
        if final:
            result.update(status=final, details=details)
            return result
        _outcome(job, result, tamper)
    except Exception:  # noqa: BLE001 - report, never crash the worker
        result.update(status=st.FAILED, details=[traceback.format_exc()[-2000:]])
    finally:
        result["exec_seconds"] = _JOB.get("exec_seconds")
        result["worker_seconds"] = time.monotonic() - start
        result["memory_note"] = _JOB.get("memory_note")
        _cleanup_kernel(job)
    return result


def _cleanup_kernel(job: dict[str, Any]) -> None:
    """Leave nothing running: the sandbox (its PID namespace goes with it) and every cgroup of the job."""
    pid_file = Path(job["job_dir"]) / "kernel.pid"
    with contextlib.suppress(OSError, ValueError):
        kill_process_group(int(pid_file.read_text()))
    for group in _JOB.get("cgroups", []):
        if group is not None:
            group.remove()
    _JOB["cgroups"] = []


def worker_main() -> int:
    """A worker: read one job per line on stdin, grade it, write one JSON line to the result pipe."""
    fd = int(os.environ.pop("SEGLAB_RESULT_FD"))
    os.set_inheritable(fd, False)  # a kernel must never be able to write a result
    out = os.fdopen(fd, "w", buffering=1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a worker stops
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        result = run_job(job)
        out.write(json.dumps(result) + "\n")
    return 0


# =====================================================================================================
# In the parent: job folders and the pool of workers
# =====================================================================================================
@dataclass
class Job:
    """One submission to grade. ``submission`` is the student's ``submitted/<student>/<lab>`` folder."""

    lab: str
    student: str
    submission: Path
    job_dir: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchSetup:
    """What every job of a batch shares: copied once into each job folder."""

    config_file: Path  # the course's nbgrader_config.py
    source_lab_dir: Path  # solutions/<lab> (only non-notebook files are copied)
    gradebook_snapshot: Path  # a consistent copy of the real gradebook taken before the batch
    data_dir: str | None  # the shared dataset cache, bound read-only into every kernel
    limits: Limits
    devices: tuple[str, ...] = ()  # device nodes bound into the sandbox (GPU grading, see the README)


def snapshot_gradebook(db_path: Path, dest: Path) -> None:
    """Consistent copy of a SQLite gradebook (the backup API, safe even while it is open elsewhere)."""
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    dst = sqlite3.connect(str(dest))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    os.chmod(dest, 0o600)


def prepare_job(batch_dir: Path, setup: BatchSetup, job: Job) -> Path:
    """Build the job folder: course config, source files, gradebook copy, and this student's files only.

    The folder is private to the grader (0700): kernels never see it, they get only their scratch and socket
    folders, bound into their sandbox.
    """
    import tempfile

    job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=batch_dir))
    os.chmod(job_dir, 0o700)
    course, grading = job_dir / "course", job_dir / "grading"
    for d in (course, grading, job_dir / "runtime"):
        d.mkdir(mode=0o700)
    shutil.copyfile(setup.config_file, course / "nbgrader_config.py")
    _copy_regular_files(setup.source_lab_dir, course / SOURCE_DIR / job.lab, skip_suffixes=(".ipynb",))
    (course / SOURCE_DIR / job.lab).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(setup.gradebook_snapshot, grading / "gradebook.db")
    os.chmod(grading / "gradebook.db", 0o600)
    _copy_regular_files(job.submission, grading / "submitted" / job.student / job.lab)
    (grading / "submitted" / job.student / job.lab).mkdir(parents=True, exist_ok=True)
    job.job_dir = job_dir
    return job_dir


def _job_message(job: Job, setup: BatchSetup, identity: Identity | None, pool: WorkerPool) -> dict[str, Any]:
    return {
        "lab": job.lab,
        "student": job.student,
        "job_dir": str(job.job_dir),
        "identity": asdict(identity) if identity else None,
        "limits": asdict(setup.limits),
        "data_dir": setup.data_dir,
        "devices": list(setup.devices),
        "cgroup": pool.cgroup_parent.as_dict() if pool.cgroup_parent else None,
        "cgroup_reason": pool.cgroup_reason,
        "workers": len(pool.identities),
        "uid_tasks": pool.uid_tasks,
    }


class _Worker:
    """A worker process (``python -m seglabs_grading.sandbox worker``) and the pipe it answers on."""

    def __init__(self, slot: int, log_path: Path):
        self.slot = slot
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, SEGLAB_RESULT_FD=str(write_fd))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.log = open(log_path, "ab")  # noqa: SIM115 - kept open for the worker's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seglabs_grading.sandbox", "worker"],
            stdin=subprocess.PIPE,
            stdout=self.log,
            stderr=self.log,
            pass_fds=(write_fd,),
            env=env,
            start_new_session=True,  # its own process group: killable as a whole
            text=True,
        )
        os.close(write_fd)
        self.results = os.fdopen(read_fd, "r")
        self.buffer = ""

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def receive(self, deadline: float, stop: threading.Event | None = None) -> dict[str, Any] | None:
        """The next result, or ``None`` when the deadline passes, ``stop`` is set or the worker dies."""
        fd = self.results.fileno()
        while "\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return None
            ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None  # the worker exited
                self.buffer += chunk.decode("utf-8", errors="replace")
        line, self.buffer = self.buffer.split("\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        kill_process_group(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_process_group(self.proc.pid)
            self.proc.wait(timeout=30)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.results.close()
        with contextlib.suppress(OSError):
            self.log.close()


def _lost_result(job: Job, died: bool, timeout: int) -> dict[str, Any]:
    """The result of a job whose worker died or passed the notebook limit (and was killed)."""
    if died:
        status, why = st.FAILED, "the grading worker process died"
    else:
        status, why = st.TIMED_OUT, f"the notebook did not finish within {timeout} s"
    return {"lab": job.lab, "student": job.student, "status": status, "details": [why], "notes": []}


class WorkerPool:
    """Grade jobs on ``n`` worker slots; results come back to the calling thread, one at a time.

    Each slot has its own worker process and, as root, its own unprivileged uid. A job that passes the
    notebook limit, or whose worker dies, is reported with a status and the slot gets a fresh worker.
    """

    def __init__(self, setup: BatchSetup, batch_dir: Path, identities: list[Identity | None]):
        self.setup = setup
        self.batch_dir = batch_dir
        self.identities = identities
        self.cgroup_parent: cgroup.Parent | None = None
        self.cgroup_reason = "--memory-mb 0"
        self.uid_tasks = 0  # the grader's uid's tasks before any worker starts (see nproc_limit)

    def prepare_cgroup(self) -> None:
        """Once, before any worker starts: where every kernel's cgroup goes (on v2 the grader may move itself
        into a leaf group, see :func:`seglabs_grading.cgroup.prepare`); the workers get it with each job."""
        if self.setup.limits.memory_mb:
            self.cgroup_parent, self.cgroup_reason = cgroup.prepare()

    def prepare_batch(self) -> None:
        """Once, before any worker starts: the cgroup parent and, for ``RLIMIT_NPROC`` of kernels that run as
        the grader's uid, what that uid runs now (no worker, no kernel of this batch yet)."""
        self.prepare_cgroup()
        if self.setup.limits.max_procs and None in self.identities:
            self.uid_tasks = user_tasks(os.getuid())

    def _grade(
        self, slot: int, worker: _Worker | None, job: Job, stop: threading.Event
    ) -> tuple[_Worker | None, dict[str, Any]]:
        identity = self.identities[slot]
        prepare_job(self.batch_dir, self.setup, job)
        if worker is None or worker.proc.poll() is not None:
            worker = _Worker(slot, self.batch_dir / f"worker-{slot}.log")
        start = time.monotonic()
        worker.send(_job_message(job, self.setup, identity, self))
        result = worker.receive(start + self.setup.limits.notebook_timeout, stop)
        seconds = time.monotonic() - start
        if result is None:
            died = worker.proc.poll() is not None
            worker.kill()
            worker = None
            result = _lost_result(job, died, self.setup.limits.notebook_timeout)
            _cleanup_after_kill(job, self.cgroup_parent)
        result["seconds"] = seconds
        result["slot"] = slot
        return worker, result

    def _slot_loop(self, slot: int, todo, done, stop: threading.Event) -> None:
        worker: _Worker | None = None
        try:
            while not stop.is_set():
                job = todo.get()
                if job is None:
                    break
                try:
                    worker, result = self._grade(slot, worker, job, stop)
                except Exception as err:  # noqa: BLE001 - one job's setup failure must not stop the slot
                    result = {
                        "lab": job.lab,
                        "student": job.student,
                        "status": st.FAILED,
                        "details": [f"{type(err).__name__}: {err}"],
                        "notes": [],
                    }
                done.put((job, result))
        except BaseException as err:  # noqa: BLE001
            done.put(err)
        finally:
            if worker is not None:
                worker.kill() if stop.is_set() else worker.stop()

    def run(self, jobs: Iterable[Job], on_result: Callable[[Job, dict[str, Any]], None]) -> None:
        """Grade every job; call ``on_result`` in this thread as each finishes (the single writer)."""
        import queue

        todo: queue.Queue[Job | None] = queue.Queue()
        done: queue.Queue[tuple[Job, dict[str, Any]] | BaseException] = queue.Queue()
        self.prepare_batch()
        count = 0
        for job in jobs:
            todo.put(job)
            count += 1
        for _ in self.identities:
            todo.put(None)
        stop = threading.Event()
        threads = [
            threading.Thread(target=self._slot_loop, args=(i, todo, done, stop), daemon=True)
            for i in range(len(self.identities))
        ]
        for t in threads:
            t.start()
        try:
            for _ in range(count):
                item = done.get()
                if isinstance(item, BaseException):
                    raise item
                job, result = item
                job.result = result
                on_result(job, result)
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                while True:  # drop jobs not started yet so the slots finish
                    todo.get_nowait()
            for _ in threads:
                todo.put(None)
            for t in threads:
                t.join(timeout=self.setup.limits.notebook_timeout + 60)


def _cleanup_after_kill(job: Job, parent: cgroup.Parent | None) -> None:
    """After killing a worker: its sandbox (``--die-with-parent`` already took it) and its cgroups."""
    if job.job_dir is None:
        return
    with contextlib.suppress(OSError, ValueError):
        kill_process_group(int((job.job_dir / "kernel.pid").read_text()))
    with contextlib.suppress(OSError):
        for line in (job.job_dir / "cgroups.txt").read_text().split():
            folder = Path(line)
            if parent is not None and folder.is_dir() and parent.holds(folder):
                cgroup.Cgroup(parent.version, [folder]).remove()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["worker"]:
        return worker_main()
    print(
        "usage: python -m seglabs_grading.sandbox worker   (started by `course grade`; not meant to be run by hand)"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
