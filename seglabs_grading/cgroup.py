"""A memory and process cap for one graded kernel that counts everything it uses: a cgroup (v2 or v1).

``RLIMIT_DATA`` is per process and does not count shared mappings (a 4.6 GB shared anonymous ``mmap`` passed a
4 GB data limit); a memory cgroup charges every page the kernel and its children touch, shared memory and
``tmpfs`` files included, and its OOM killer stops the submission when the total passes the cap. A ``pids``
cgroup caps processes and threads of the submission alone, whatever uid they run as.

The grader creates one child group per kernel under its own cgroup and puts the sandbox's first process in it
before that process starts (:meth:`Cgroup.join` runs between ``fork`` and ``exec``), so every process of the
submission is inside from the start. Where this is impossible (no cgroup file system, cgroup v2 without
delegation, cgroup v1 as a normal user), :func:`create` returns ``None`` with the reason, grading goes on with
the per-process limits alone, and ``course grade`` says so in its summary.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


@dataclass
class Cgroup:
    """The groups one kernel runs in: one folder (v2) or one per controller (v1: memory, pids)."""

    version: int
    folders: list[Path]

    def join(self) -> None:
        """Move the calling process into the groups. Safe between ``fork`` and ``exec`` (plain syscalls)."""
        for folder in self.folders:
            fd = os.open(str(folder / "cgroup.procs"), os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for folder in self.folders:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
        return sorted(found)

    def oom_kills(self) -> int:
        """How many processes the memory cap's OOM killer stopped in this group."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (self.folders[0] / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def kill_all(self, attempts: int = 50) -> int:
        """SIGKILL everything still in the group; return how many processes remain (0 expected)."""
        if self.version == 2 and (self.folders[0] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.folders[0] / "cgroup.kill").write_text("1")
        for _ in range(attempts):
            pids = self.pids()
            if not pids:
                return 0
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        return len(self.pids())

    def remove(self) -> None:
        """Kill what is left and delete the groups."""
        self.kill_all()
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _own_paths() -> dict[str, str]:
    """``{controller: path}`` of this process (v2 under the key ``""``), from ``/proc/self/cgroup``."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                out[name] = path
    return out


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _create_v1(name: str, memory_bytes: int, pids: int) -> Cgroup:
    own = _own_paths()
    memory = ROOT / "memory" / own.get("memory", "/").lstrip("/") / name
    memory.mkdir()
    folders = [memory]
    try:
        _write(memory / "memory.limit_in_bytes", str(memory_bytes))
        with contextlib.suppress(OSError):  # only where swap accounting exists: swap counts too
            _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
        pid_root = ROOT / "pids" / own.get("pids", "/").lstrip("/")
        if pids and (pid_root / "cgroup.procs").exists():
            (pid_root / name).mkdir()
            folders.append(pid_root / name)
            _write(pid_root / name / "pids.max", str(pids))
    except BaseException:
        Cgroup(1, folders).remove()
        raise
    return Cgroup(1, folders)


def _enable_v2_controllers(base: Path) -> None:
    """Enable memory and pids for children of ``base``; a v2 group with processes cannot have both, so move
    this process into a leaf of its own first when needed (the delegated-scope recipe in the README)."""
    wanted = "+memory +pids"
    try:
        _write(base / "cgroup.subtree_control", wanted)
    except OSError as err:
        if err.errno != errno.EBUSY:
            raise
        leaf = base / "seglabs-grader"
        leaf.mkdir(exist_ok=True)
        _write(leaf / "cgroup.procs", "0")
        _write(base / "cgroup.subtree_control", wanted)


def _create_v2(name: str, memory_bytes: int, pids: int) -> Cgroup:
    base = ROOT / _own_paths().get("", "/").lstrip("/")
    if "memory" not in (base / "cgroup.controllers").read_text().split():
        raise OSError(f"the memory controller is not delegated to {base}")
    if "memory" not in (base / "cgroup.subtree_control").read_text().split():
        _enable_v2_controllers(base)
    folder = base / name
    folder.mkdir()
    group = Cgroup(2, [folder])
    try:
        _write(folder / "memory.max", str(memory_bytes))
        with contextlib.suppress(OSError):
            _write(folder / "memory.swap.max", "0")
        if pids:
            with contextlib.suppress(FileNotFoundError):
                _write(folder / "pids.max", str(pids))
    except BaseException:
        group.remove()
        raise
    return group


def create(memory_mb: int, pids: int) -> tuple[Cgroup | None, str]:
    """A fresh group capping memory (MB, all kinds) and process count; ``(None, reason)`` where impossible."""
    name = f"seglabs-{os.getpid()}-{next(_counter)}"
    try:
        if (ROOT / "cgroup.controllers").exists():
            return _create_v2(name, memory_mb << 20, pids), ""
        if (ROOT / "memory" / "cgroup.procs").exists():
            return _create_v1(name, memory_mb << 20, pids), ""
        return None, f"no cgroup file system at {ROOT}"
    except OSError as err:
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        return None, f"cannot create a cgroup ({err.strerror or err}{where})"


def describe(group: Cgroup | None, reason: str, memory_mb: int) -> str:
    """One line for the grading summary: how memory was capped."""
    if not memory_mb:
        return "memory cap: none (--memory-mb 0)"
    if group is not None:
        return f"memory cap: cgroup v{group.version}, {memory_mb} MB per submission (shared memory included)"
    return (
        f"memory cap: RLIMIT_DATA only, {memory_mb} MB per process; shared memory is NOT capped ({reason}; "
        "README: 'What grading needs')"
    )
