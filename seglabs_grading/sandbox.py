"""Grade one submission at a time with nbgrader's own autograde, in a sandbox that a hostile notebook cannot break.

``course grade`` (see :mod:`seglabs_grading.course`) drives this module; nothing here is needed by students.

How one submission is graded
----------------------------
1. The parent process builds a **job folder** for the submission: a copy of the course's ``nbgrader_config.py``,
   the lab's non-notebook source files, a copy of the gradebook and a copy of *this* student's submission only.
   The job folder is owned by the grading account with mode 0711/0700: the student's code cannot list or open it.
2. A long-lived **worker process** (one per parallel slot) runs nbgrader's ``Autograde`` converter on that copy,
   unchanged except for the execute step (:class:`SandboxExecute`), which starts the kernel through
   :class:`SandboxKernelManager`:

   - as an **unprivileged user** when the grader runs as root (one system user per slot, ``seglabs-grader-<slot>``,
     created with ``useradd`` if missing), so the kernel can read neither the gradebook, nor other students'
     submissions, nor the hidden tests on disk, and can write nowhere but its own scratch folder and ``/tmp``;
   - in a scratch **working directory** holding copies of the submission's non-notebook files (never the notebook:
     after nbgrader's sanitising step it contains the hidden tests);
   - under **resource limits** set with ``setrlimit`` in ``preexec_fn``: ``RLIMIT_DATA`` (memory; see
     :class:`Limits` for why not ``RLIMIT_AS``), ``RLIMIT_CPU``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``, no core files;
   - with a **whitelisted environment** (no credentials, ``PYTHONHASHSEED=0`` and fixed thread counts for
     determinism) and an **output cap** (a notebook printing 100 MB keeps its first few MB and its errors).
3. The worker reads the scores nbgrader wrote into the *copy* of the gradebook and reports them as JSON on a
   private pipe. The parent merges them into the real gradebook: one writer, no concurrent SQLite writers.
4. A per-notebook **wall-clock limit** is enforced by the parent: past it, the worker, the kernel and every process
   of the slot's user are killed, the submission is recorded as ``ungraded: timed out`` and a fresh worker takes
   the next one. One bad notebook never stops the batch.

Run as a normal user, the same pipeline applies every limit but cannot switch users: the kernel then has the
grader's own file permissions. Grade as root (or in a container) for the filesystem isolation.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
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

USER_PREFIX = "seglabs-grader"
MAX_NOTEBOOK_BYTES = 64 << 20  # a submitted notebook larger than this is not opened
SOURCE_DIR = "source"  # name of the source folder inside a job's course copy

# What a kernel may inherit from the grader's environment; everything else (tokens, keys, paths to the
# course) is dropped.
_ENV_KEEP = {"PATH", "LANG", "LANGUAGE", "TZ", "SEGLAB_BUDGET", "CUDA_VISIBLE_DEVICES", "TERM"}
_ENV_KEEP_PREFIXES = ("LC_", "NVIDIA_")


# =====================================================================================================
# Limits and identities
# =====================================================================================================
@dataclass(frozen=True)
class Limits:
    """Resource limits of one graded notebook.

    ``memory_mb`` sets ``RLIMIT_DATA`` (heap and private writable mappings) of the kernel and of every process it
    starts, not ``RLIMIT_AS``: ``import torch`` alone reserves about 3.7 GB of address space it never touches
    (CUDA reserves far more), so an address-space cap low enough to matter would break every notebook, while
    the data limit measures the memory a submission really allocates. The limits are per process: a
    submission's total is bounded by ``max_procs * memory_mb``; use a container or cgroup for a hard total.
    """

    cell_timeout: int = 120  # seconds per cell (nbgrader interrupts the cell, the rest still runs)
    notebook_timeout: int = 900  # seconds for the whole submission, enforced by killing it
    memory_mb: int = 4096  # RLIMIT_DATA per process; 0 = no limit
    max_procs: int = 64  # RLIMIT_NPROC: processes and threads of the grading user
    cpu_s: int = 0  # RLIMIT_CPU per process; 0 = 2 x notebook_timeout
    file_mb: int = 512  # RLIMIT_FSIZE: largest file the kernel may write
    output_mb: float = 4.0  # outputs kept per notebook; errors are always kept
    threads: int = 1  # OMP/MKL threads of the kernel (fixed, so results do not depend on the machine's load)

    def cpu_limit(self) -> int:
        return self.cpu_s or 2 * self.notebook_timeout


@dataclass(frozen=True)
class Identity:
    """The unprivileged account a kernel runs as."""

    name: str
    uid: int
    gid: int


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def ensure_user(name: str) -> Identity:
    """Return the system user ``name``, creating it (no home, no login shell) when it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent"]
        cmd += ["--shell", "/usr/sbin/nologin", "--user-group", name]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except OSError as err:
            raise RuntimeError(
                f"cannot create the grading user {name!r} ({err}); create it yourself "
                f"(e.g. `adduser --system --group {name}`) or pass --user-prefix with existing users"
            ) from err
        if run.returncode != 0 and "already exists" not in run.stderr:
            raise RuntimeError(f"`{' '.join(cmd)}` failed: {run.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise RuntimeError(f"grading user {name!r} has uid 0; it must be an unprivileged account")
    return Identity(name, entry.pw_uid, entry.pw_gid)


MAX_SLOTS = 64


class SlotLease:
    """Exclusive use of ``n`` sandbox users, machine-wide, for as long as the lease is open.

    One unprivileged user per parallel slot when running as root (``None``, no switch, otherwise). Separate
    users keep slots apart: a fork bomb in one slot exhausts only its own ``RLIMIT_NPROC``, one kernel cannot
    read another's scratch folder, and cleaning up a slot (kill every process of its user) cannot touch the
    others. The lease (an ``flock`` on a root-only file per user) extends this to several graders running at
    once on one machine, e.g. two courses, or two test runs: each takes users no one else holds.
    """

    def __init__(self, n: int, prefix: str = USER_PREFIX, lock_dir: Path | None = None):
        import fcntl
        import tempfile

        self.identities: list[Identity | None] = []
        self._handles: list[Any] = []
        if not is_root():
            self.identities = [None] * n
            return
        lock_dir = lock_dir or Path(tempfile.gettempdir()) / f"{prefix}-locks"
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
            try:
                self.identities.append(ensure_user(f"{prefix}-{index}"))
            except BaseException:
                handle.close()
                self.close()
                raise
            self._handles.append(handle)
        if len(self.identities) < n:
            self.close()
            raise RuntimeError(f"no free sandbox user: {MAX_SLOTS} are in use by other graders")

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles = []

    def __enter__(self) -> SlotLease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def user_tasks(uid: int) -> int:
    """Number of tasks (processes and threads) whose real uid is ``uid``: what ``RLIMIT_NPROC`` counts."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        uid_line = re.search(r"^Uid:\s+(\d+)", text, re.M)
        threads = re.search(r"^Threads:\s+(\d+)", text, re.M)
        if uid_line and int(uid_line.group(1)) == uid:
            total += int(threads.group(1)) if threads else 1
    return total


def user_pids(uid: int) -> list[int]:
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            match = re.search(r"^Uid:\s+(\d+)", status.read_text(), re.M)
        except OSError:
            continue
        if match and int(match.group(1)) == uid:
            pids.append(int(status.parent.name))
    return pids


def kill_user_processes(identity: Identity, attempts: int = 5) -> int:
    """Kill every process of ``identity``; return how many remain.

    ``kill -9 -1`` run *as* that user signals exactly the processes it owns (Linux never signals the caller),
    including any that left the kernel's process group with ``setsid``.
    """
    kill = shutil.which("kill") or "/bin/kill"
    for _ in range(attempts):
        if not user_pids(identity.uid):
            return 0
        subprocess.run(
            [kill, "-9", "-1"],
            user=identity.uid,
            group=identity.gid,
            extra_groups=[],
            env={},
            cwd="/",
            capture_output=True,
            timeout=30,
            check=False,
        )
        time.sleep(0.05)
    return len(user_pids(identity.uid))


def remove_user_files(
    identity: Identity, places: Iterable[str] = ("/tmp", "/var/tmp", "/dev/shm")
) -> list[str]:
    """Delete what ``identity`` left in the world-writable folders (its scratch folders go with the job)."""
    removed = []
    for place in places:
        try:
            entries = list(os.scandir(place))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != identity.uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(entry.path)
            except OSError:
                continue
    return removed


def kill_process_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


# =====================================================================================================
# A Python the sandbox user can run
# =====================================================================================================
def _link_tree(src: Path, dest: Path, skip: frozenset[str] = frozenset()) -> None:
    """Recreate ``src`` at ``dest`` with hard links (a copy across file systems); folders world-readable."""
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    for entry in os.scandir(src):
        if entry.name in skip:
            continue
        target = dest / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir():
            _link_tree(Path(entry.path), target)
        elif entry.is_file():
            try:
                os.link(entry.path, target)
            except OSError:
                shutil.copy2(entry.path, target)
                os.chmod(target, 0o755 if os.access(entry.path, os.X_OK) else 0o644)


def build_shadow_python(cache_root: Path) -> Path:
    """A copy of this interpreter, its standard library and its site-packages that other users can run.

    Needed when the grader's Python lives under a private folder (e.g. pyenv in ``/root``): the sandbox user
    could not start the kernel. Hard links make it instant and take no space on the same file system.
    Layout: ``base/`` (interpreter, ``libpython``, standard library) and ``venv/`` (a virtual environment on
    ``base`` whose site-packages is this environment's, linked or symlinked when readable by others).
    """
    import hashlib
    import sysconfig
    import tempfile

    exe = Path(sys.executable).resolve()
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    purelib = Path(sysconfig.get_paths()["purelib"])
    key = f"{sys.base_prefix}|{sys.prefix}|{exe}|{exe.stat().st_mtime}|{sys.version}|{purelib}"
    dest = cache_root / f"seglabs-python-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (dest / ".complete").exists():
        return dest
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=cache_root))
    try:
        os.chmod(tmp, 0o755)
        base = Path(sys.base_prefix)
        skip = frozenset({"site-packages", "test", "idlelib", "turtledemo", "tkinter", "ensurepip"})
        _link_tree(base / "lib" / ver, tmp / "base" / "lib" / ver, skip)
        for lib in (base / "lib").glob("libpython*"):
            target = tmp / "base" / "lib" / lib.name
            if lib.is_symlink():
                os.symlink(os.readlink(lib), target)
            else:
                os.link(lib, target)
        (tmp / "base" / "bin").mkdir(mode=0o755)
        os.link(exe, tmp / "base" / "bin" / exe.name)
        venv_bin = tmp / "venv" / "bin"
        venv_bin.mkdir(parents=True)
        os.symlink(f"../../base/bin/{exe.name}", venv_bin / "python")
        (tmp / "venv" / "pyvenv.cfg").write_text(
            f"home = {dest / 'base' / 'bin'}\ninclude-system-site-packages = false\n"
            f"version = {'.'.join(map(str, sys.version_info[:3]))}\n"
        )
        site = tmp / "venv" / "lib" / ver / "site-packages"
        site.parent.mkdir(parents=True)
        if readable_by_others(purelib):
            os.symlink(purelib, site)
        else:
            _link_tree(purelib, site)
        for folder in (tmp / "venv", venv_bin, site.parent, tmp / "base", tmp / "base" / "lib"):
            os.chmod(folder, 0o755)
        (tmp / ".complete").touch()
        try:
            os.rename(tmp, dest)
        except OSError:  # built by another grader meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def readable_by_others(path: Path) -> bool:
    """True when a user with no special rights can reach ``path`` and read it."""
    path = path.resolve()
    for folder in (path, *path.parents):
        try:
            mode = folder.stat().st_mode
        except OSError:
            return False
        if not mode & 0o001 or (folder == path and not mode & 0o004):
            return False
    return True


def _try_python(python: str, identity: Identity, extra_env: dict[str, str]) -> str | None:
    """``None`` when ``identity`` can start ``python`` and import what a kernel needs; else the error."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **extra_env}
    try:
        run = subprocess.run(
            [python, "-c", "import ipykernel, nbformat, helpers"],
            user=identity.uid,
            group=identity.gid,
            extra_groups=[],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=300,
        )
    except OSError as err:
        return f"{type(err).__name__}: {err}"
    return None if run.returncode == 0 else (run.stderr.strip().splitlines() or ["failed"])[-1]


_RUNTIMES: dict[tuple[int, str], tuple[str, dict[str, str]]] = {}


def kernel_runtime(identity: Identity | None, cache_root: Path) -> tuple[str, dict[str, str]]:
    """The interpreter a sandboxed kernel runs (and extra environment), checked by running it as ``identity``."""
    if identity is None:
        return sys.executable, {}
    key = (identity.uid, str(cache_root))
    if key not in _RUNTIMES:
        _RUNTIMES[key] = _find_runtime(identity, cache_root)
    return _RUNTIMES[key]


def _find_runtime(identity: Identity, cache_root: Path) -> tuple[str, dict[str, str]]:
    first = _try_python(sys.executable, identity, {})
    if first is None:
        return sys.executable, {}
    shadow = build_shadow_python(cache_root)
    python = str(shadow / "venv" / "bin" / "python")
    extra = {"LD_LIBRARY_PATH": str(shadow / "base" / "lib")}
    second = _try_python(python, identity, extra)
    if second is not None:
        raise RuntimeError(
            f"the sandbox user {identity.name!r} cannot run this Python ({sys.executable}: {first}), nor a copy "
            f"of it in {shadow} ({second}). Install the course's environment where other users can read it "
            "(e.g. a venv made from /usr/bin/python3 under /opt), or make sure the course package is readable."
        )
    return python, extra


def _limit_setter(limits: Limits, nproc: int | None) -> Callable[[], None]:
    """The ``preexec_fn`` of a kernel: only ``setrlimit`` calls (safe between fork and exec)."""
    import resource

    data = limits.memory_mb << 20 if limits.memory_mb else resource.RLIM_INFINITY
    cpu = limits.cpu_limit()
    fsize = limits.file_mb << 20 if limits.file_mb else resource.RLIM_INFINITY

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return apply


# =====================================================================================================
# Inside a worker: the kernel manager and execute step nbgrader uses
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


def kernel_env(scratch: Path, data_dir: str | None, threads: int) -> dict[str, str]:
    """The kernel's whole environment: a whitelist of the grader's, plus homes and caches inside the sandbox."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith(_ENV_KEEP_PREFIXES)}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.update(
        HOME=str(scratch / ".home"),
        TMPDIR=str(scratch / ".tmp"),
        IPYTHONDIR=str(scratch / ".home" / ".ipython"),
        MPLCONFIGDIR=str(scratch / ".home" / ".mpl"),
        XDG_CACHE_HOME=str(scratch / ".home" / ".cache"),
        JUPYTER_RUNTIME_DIR=str(scratch / ".home" / ".runtime"),
        PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )
    if data_dir:
        env["SEGLAB_DATA"] = data_dir
    return env


def _sandbox_data_dir(scratch: Path, shared: str | None, trusted: bool) -> str | None:
    """Where the kernel's ``helpers.data`` caches datasets.

    Trusted runs (the instructor's solution) use the shared cache and fill it. A student's kernel gets a folder
    of its own holding read-only links to every dataset already in the shared cache: existing datasets load
    instantly, nothing a submission writes reaches another submission.
    """
    if trusted or not shared:
        return shared
    own = scratch / ".data"
    own.mkdir(parents=True, exist_ok=True)
    shared_path = Path(shared)
    if shared_path.is_dir():
        for entry in sorted(shared_path.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                (own / entry.name).symlink_to(entry.resolve())
    return str(own)


def _kernel_manager_class():
    from jupyter_client.manager import AsyncKernelManager

    class SandboxKernelManager(AsyncKernelManager):
        """Starts the kernel in the job's scratch folder, as the slot's user, under the job's limits."""

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            job = _JOB
            limits = Limits(**job["limits"])
            identity = Identity(**job["identity"]) if job.get("identity") else None
            job_dir = Path(job["job_dir"])
            scratch = job_dir / "scratch"
            if scratch.exists():
                shutil.rmtree(scratch)
            scratch.mkdir(mode=0o700)
            # The student's other files, never a notebook (the sanitised one holds the hidden tests).
            _copy_regular_files(Path(kw.get("cwd") or job_dir), scratch, skip_suffixes=(".ipynb",))
            for sub in (".home", ".tmp"):
                (scratch / sub).mkdir(exist_ok=True)
            data_dir = _sandbox_data_dir(scratch, job.get("data_dir"), bool(job.get("trusted")))
            kw["env"] = {**kernel_env(scratch, data_dir, limits.threads), **job.get("python_env", {})}
            python = job.get("python")
            if python and kernel_cmd and Path(kernel_cmd[0]).resolve() == Path(sys.executable).resolve():
                kernel_cmd = [python, *kernel_cmd[1:]]
            if any("ipykernel" in part for part in kernel_cmd):
                # Import the checks before the first cell: the built-ins they capture are then the originals,
                # whatever the student's code patches later (no name is bound in the notebook's namespace).
                kernel_cmd = [*kernel_cmd, "--IPKernelApp.exec_lines=__import__('helpers.checks')"]
            kw["cwd"] = str(scratch)
            log = open(job_dir / "kernel.log", "ab")  # noqa: SIM115 - the kernel writes through this fd
            kw["stdout"] = kw["stderr"] = log
            nproc = None
            if identity is not None:
                _chown_tree(scratch, identity.uid, identity.gid)
                os.chown(self.connection_file, identity.uid, identity.gid)
                kw.update(user=identity.uid, group=identity.gid, extra_groups=[])
                nproc = limits.max_procs
            elif limits.max_procs:
                # Same user as the grader: the cap counts the grader's own processes too.
                nproc = user_tasks(os.getuid()) + limits.max_procs
            kw["preexec_fn"] = _limit_setter(limits, nproc)
            kw["umask"] = 0o077
            try:
                await super()._async_launch_kernel(kernel_cmd, **kw)
            finally:
                log.close()
            pid = getattr(self.provisioner, "pid", None)
            if pid:
                (job_dir / "kernel.pid").write_text(str(pid))

    return SandboxKernelManager


def _execute_class():
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbformat.v4 import new_output
    from nbgrader.preprocessors import Execute

    class SandboxExecute(Execute):
        """nbgrader's Execute, with the sandboxed kernel manager, an output cap and a record of what happened."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["kernel_manager_class"] = _kernel_manager_class()
            super().__init__(*args, **kwargs)
            self._output_bytes = 0
            self._truncated: set[tuple[int, str]] = set()

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

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            if msg.get("msg_type") == "error":
                return super().output(
                    outs, msg, display_id, cell_index
                )  # errors decide the grade: always kept
            size = len(content.get("text", "")) + sum(len(str(v)) for v in content.get("data", {}).values())
            self._output_bytes += size
            cap = float(_JOB.get("limits", {}).get("output_mb", 4.0)) * (1 << 20)
            if self._output_bytes <= cap:
                return super().output(outs, msg, display_id, cell_index)
            # Keep one marker per cell and stream: a dropped stderr message still leaves a stderr output,
            # which nbgrader scores as a failed test, so truncation never turns a failure into a pass.
            name = content.get("name", "stdout") if msg.get("msg_type") == "stream" else "stdout"
            if (cell_index, name) not in self._truncated:
                self._truncated.add((cell_index, name))
                _JOB.setdefault("events", []).append("output truncated")
                note = f"\n[output truncated by the grader: this notebook printed more than {cap / (1 << 20):g} MB]\n"
                outs.append(new_output("stream", name=name, text=note))
            return None

    return SandboxExecute


def _autograde_config(job: dict[str, Any]):
    """The course's own nbgrader configuration, pointed at the job's copy, with the sandboxed execute step."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute
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
    timeout = int(job["limits"]["cell_timeout"])
    over.Execute.timeout = timeout
    over.ExecutePreprocessor.timeout = timeout
    over.Execute.interrupt_on_timeout = True
    sandbox_execute = _execute_class()
    steps = (
        config.Autograde.get("autograde_preprocessors")
        or Autograde.class_traits()["autograde_preprocessors"].default()
    )

    def is_execute(step: Any) -> bool:
        return step is Execute or step in (
            "nbgrader.preprocessors.Execute",
            "nbgrader.preprocessors.execute.Execute",
        )

    over.Autograde.autograde_preprocessors = [sandbox_execute if is_execute(s) else s for s in steps]
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


def inspect_submission(path: Path, expected: dict[str, dict[str, Any]]) -> tuple[str | None, list[str]]:
    """Check a submitted notebook before grading. Returns ``(status or None, details)``.

    ``status`` is ``ungraded: corrupt notebook`` when the file cannot be read as a notebook, or the first
    tampering found (``tampered: test cell removed``, ``tampered: test cell metadata changed``,
    ``tampered: duplicate grade_id``, ``tampered: graded answer cell removed``). nbgrader itself restores an
    emptied or edited test cell's *source* from the gradebook, but records nothing for a deleted cell or one whose
    metadata was stripped, fails on edited metadata, and keeps only the first of two cells sharing a grade_id.
    """
    import nbformat

    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return "ungraded: corrupt notebook", [f"file is larger than {MAX_NOTEBOOK_BYTES >> 20} MB"]
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        cells = nb["cells"]
        if not isinstance(cells, list):
            raise ValueError("'cells' is not a list")
    except Exception as err:  # noqa: BLE001 - anything that is not a readable notebook
        return "ungraded: corrupt notebook", [f"{type(err).__name__}: {str(err)[:300]}"]
    seen: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader") if isinstance(cell, dict) else None
        if isinstance(meta, dict) and meta.get("grade_id"):
            seen.setdefault(str(meta["grade_id"]), []).append(meta)
    found: dict[str, list[str]] = {}
    for grade_id, metas in seen.items():
        if len(metas) > 1:
            found.setdefault("tampered: duplicate grade_id", []).append(
                f"{grade_id} appears {len(metas)} times"
            )
    for grade_id, want in expected.items():
        if not want["grade"]:
            continue
        test_cell = not want["solution"]
        if grade_id not in seen:
            key = "tampered: test cell removed" if test_cell else "tampered: graded answer cell removed"
            found.setdefault(key, []).append(
                f"{grade_id} is missing (deleted, or its nbgrader metadata removed)"
            )
            continue
        meta = seen[grade_id][0]
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
        if changed and test_cell:
            found.setdefault("tampered: test cell metadata changed", []).append(
                f"{grade_id}: {', '.join(changed)}"
            )
    order = [
        "tampered: test cell removed",
        "tampered: test cell metadata changed",
        "tampered: duplicate grade_id",
        "tampered: graded answer cell removed",
    ]
    for status in order:
        if status in found:
            details = [f"{k.split(': ', 1)[1]}: {d}" for k in order if k in found for d in found[k]]
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
        return "ungraded: kernel died"
    if any("unresponsive" in e for e in events) or "Timeout waiting for IOPub" in log:
        return "ungraded: timed out"
    if re.search(r"NotJSONError|not valid JSON|does not appear to be JSON|NBFormatError", log):
        return "ungraded: corrupt notebook"
    if "Inconsistent checksums" in log:
        return "tampered: test cell metadata changed"
    return "ungraded: grading failed"


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Grade one prepared job folder with nbgrader's Autograde; return what happened (never raises)."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    _JOB.clear()
    _JOB.update(job, events=[])
    lab, student = job["lab"], job["student"]
    job_dir = Path(job["job_dir"])
    grading = job_dir / "grading"
    db_path = grading / "gradebook.db"
    result: dict[str, Any] = {"lab": lab, "student": student, "status": None, "details": [], "notes": []}
    start = time.monotonic()
    try:
        expected = expected_cells(db_path, lab)
        if not expected:
            result.update(status="ungraded: grading failed", details=[f"lab {lab!r} is not in the gradebook"])
            return result
        tamper: list[tuple[str, list[str]]] = []
        for notebook, cells in sorted(expected.items()):
            path = grading / "submitted" / student / lab / f"{notebook}.ipynb"
            if not path.is_file():
                continue  # nbgrader scores a missing notebook 0 itself
            status, details = inspect_submission(path, cells)
            if status == "ungraded: corrupt notebook":
                result.update(status=status, details=[f"{notebook}.ipynb: {d}" for d in details])
                return result
            if status:
                tamper.append((status, [f"{notebook}.ipynb: {d}" for d in details]))
        os.environ["JUPYTER_RUNTIME_DIR"] = str(job_dir / "runtime")
        config = _autograde_config(job)
        coursedir = CourseDirectory(config=config)
        coursedir.assignment_id = lab
        coursedir.student_id = student
        app = Autograde(coursedir=coursedir, config=config)
        app.force = True
        app.create_student = True
        outcome = capture_log(app)
        log = (outcome.get("log") or "") + (outcome.get("error") or "")
        result["log_tail"] = log[-4000:]
        events = _JOB.get("events", [])
        autograded = grading / "autograded" / student / lab
        if outcome.get("success") and autograded.is_dir():
            result["scores"] = _read_scores(db_path, lab, student)
            result["status"] = tamper[0][0] if tamper else "graded"
            result["details"] = tamper[0][1] if tamper else []
            timed_out = _timed_out_cells(autograded)
            if timed_out:
                result["notes"].append(
                    f"cell timed out after {job['limits']['cell_timeout']} s: {', '.join(timed_out)}"
                )
        else:
            result["status"] = tamper[0][0] if tamper else _classify_failure(events, log)
            errors = [line for line in log.splitlines() if "ERROR" in line or "Error" in line]
            result["details"] = (tamper[0][1] if tamper else []) + errors[-3:]
        if "output truncated" in events:
            result["notes"].append(f"output truncated at {job['limits']['output_mb']} MB")
    except Exception:  # noqa: BLE001 - report, never crash the worker
        result.update(status="ungraded: grading failed", details=[traceback.format_exc()[-2000:]])
    finally:
        result["exec_seconds"] = _JOB.get("exec_seconds")
        result["worker_seconds"] = time.monotonic() - start
        _cleanup_kernel(job)
    return result


def _cleanup_kernel(job: dict[str, Any]) -> None:
    """Leave nothing running: every process of the slot's user, or the kernel's process group."""
    if job.get("identity") and not job.get("trusted"):
        kill_user_processes(Identity(**job["identity"]))
    pid_file = Path(job["job_dir"]) / "kernel.pid"
    with contextlib.suppress(OSError, ValueError):
        kill_process_group(int(pid_file.read_text()))


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
    trusted: bool = False  # the instructor's own notebook (the reference run): not sandboxed by user
    job_dir: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchSetup:
    """What every job of a batch shares: copied once into each job folder."""

    config_file: Path  # the course's nbgrader_config.py
    source_lab_dir: Path  # solutions/<lab> (only non-notebook files are copied)
    gradebook_snapshot: Path  # a consistent copy of the real gradebook taken before the batch
    data_dir: str | None  # the shared dataset cache (see _sandbox_data_dir)
    limits: Limits
    python: str | None = None  # interpreter of sandboxed kernels (see kernel_runtime)
    python_env: dict[str, str] = field(default_factory=dict)


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
    """Build the job folder: course config, source files, gradebook copy, and this student's files only."""
    import tempfile

    job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=batch_dir))
    os.chmod(job_dir, 0o711)  # the kernel may pass through to its scratch folder, never list or read here
    course, grading = job_dir / "course", job_dir / "grading"
    for d in (course, grading, job_dir / "runtime"):
        d.mkdir(mode=0o700)
    os.chmod(job_dir / "runtime", 0o711)
    shutil.copyfile(setup.config_file, course / "nbgrader_config.py")
    _copy_regular_files(setup.source_lab_dir, course / SOURCE_DIR / job.lab, skip_suffixes=(".ipynb",))
    (course / SOURCE_DIR / job.lab).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(setup.gradebook_snapshot, grading / "gradebook.db")
    os.chmod(grading / "gradebook.db", 0o600)
    _copy_regular_files(job.submission, grading / "submitted" / job.student / job.lab)
    (grading / "submitted" / job.student / job.lab).mkdir(parents=True, exist_ok=True)
    job.job_dir = job_dir
    return job_dir


def _job_message(job: Job, setup: BatchSetup, identity: Identity | None) -> dict[str, Any]:
    return {
        "lab": job.lab,
        "student": job.student,
        "job_dir": str(job.job_dir),
        "identity": asdict(identity) if identity and not job.trusted else None,
        "trusted": job.trusted,
        "limits": asdict(setup.limits),
        "data_dir": setup.data_dir,
        "python": setup.python if identity and not job.trusted else None,
        "python_env": setup.python_env if identity and not job.trusted else {},
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


class WorkerPool:
    """Grade jobs on ``n`` worker slots; results come back to the calling thread, one at a time.

    Each slot has its own worker process and, as root, its own unprivileged user. A job that passes the
    notebook limit, or whose worker dies, is reported with a status and the slot gets a fresh worker.
    """

    def __init__(self, setup: BatchSetup, batch_dir: Path, identities: list[Identity | None]):
        self.setup = setup
        self.batch_dir = batch_dir
        self.identities = identities

    def _grade(
        self, slot: int, worker: _Worker | None, job: Job, stop: threading.Event
    ) -> tuple[_Worker | None, dict[str, Any]]:
        identity = self.identities[slot]
        prepare_job(self.batch_dir, self.setup, job)
        if worker is None or worker.proc.poll() is not None:
            worker = _Worker(slot, self.batch_dir / f"worker-{slot}.log")
        start = time.monotonic()
        worker.send(_job_message(job, self.setup, identity))
        result = worker.receive(start + self.setup.limits.notebook_timeout, stop)
        seconds = time.monotonic() - start
        if result is None:
            died = worker.proc.poll() is not None
            worker.kill()
            worker = None
            if died:
                result = {
                    "status": "ungraded: grading failed",
                    "details": ["the grading worker process died"],
                }
            else:
                result = {
                    "status": "ungraded: timed out",
                    "details": [f"the notebook did not finish within {self.setup.limits.notebook_timeout} s"],
                }
            result.update(lab=job.lab, student=job.student, notes=[])
            _cleanup_after_kill(job, identity)
        result["seconds"] = seconds
        result["slot"] = slot
        return worker, result

    def run(self, jobs: Iterable[Job], on_result: Callable[[Job, dict[str, Any]], None]) -> None:
        """Grade every job; call ``on_result`` in this thread as each finishes (the single writer)."""
        import queue

        todo: queue.Queue[Job | None] = queue.Queue()
        done: queue.Queue[tuple[Job, dict[str, Any]] | BaseException] = queue.Queue()
        count = 0
        for job in jobs:
            todo.put(job)
            count += 1
        for _ in self.identities:
            todo.put(None)
        stop = threading.Event()

        def slot_loop(slot: int) -> None:
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
                            "status": "ungraded: grading failed",
                            "details": [f"{type(err).__name__}: {err}"],
                            "notes": [],
                        }
                    done.put((job, result))
            except BaseException as err:  # noqa: BLE001
                done.put(err)
            finally:
                if worker is not None:
                    if stop.is_set():
                        worker.kill()
                    else:
                        worker.stop()
                identity = self.identities[slot]
                if identity is not None:
                    kill_user_processes(identity)
                    remove_user_files(identity)

        threads = [
            threading.Thread(target=slot_loop, args=(i,), daemon=True) for i in range(len(self.identities))
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
            while True:  # drop jobs not started yet so the slots finish
                try:
                    todo.get_nowait()
                except queue.Empty:
                    break
            for _ in threads:
                todo.put(None)
            for t in threads:
                t.join(timeout=self.setup.limits.notebook_timeout + 60)


def _cleanup_after_kill(job: Job, identity: Identity | None) -> None:
    if identity is not None and not job.trusted:
        kill_user_processes(identity)
    if job.job_dir is not None:
        with contextlib.suppress(OSError, ValueError):
            kill_process_group(int((job.job_dir / "kernel.pid").read_text()))


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
