"""A memory and process cap for one graded kernel that counts everything it uses: a cgroup (v2 or v1).

``RLIMIT_DATA`` is per process and does not count shared mappings (a 4.6 GB shared anonymous ``mmap`` passed a
4 GB data limit); a memory cgroup charges every page the kernel and its children touch, shared memory and
``tmpfs`` files included, and its OOM killer stops the submission when the total passes the cap. A ``pids``
cgroup caps processes and threads of the submission alone, whatever uid they run as.

Two steps. Once per batch, before any worker starts, the grader calls :func:`prepare`: it finds the **base**
group every kernel's group is made in (the grader's own cgroup) and, on cgroup v2, makes it able to have
children with controllers: a v2 group with processes cannot also hand controllers to children (the "no internal
processes" rule), so the grader moves itself into a leaf ``base/seglabs-grader`` and enables only the wanted
controllers that ``base/cgroup.controllers`` offers in ``base/cgroup.subtree_control``. The result,
:class:`Parent`, is plain data the workers receive with each job. Per kernel, a worker calls :func:`create`:
``base/seglabs-<pid>-<n>``, a sibling of the grader's leaf (never under the worker's own group), joined by the
sandbox's first process before it starts (:meth:`Cgroup.join` runs between ``fork`` and ``exec``), so every
process of the submission is inside from the start.

On v2 the limits (``memory.max``, ``pids.max``) are written on ``base/seglabs-<pid>-<n>`` but the kernel joins
its child ``base/seglabs-<pid>-<n>/kernel``: bubblewrap's cgroup namespace is rooted there, so the files with
the limits lie above anything the kernel could mount, even as a normal user whose uid owns them (the kernel runs
as that uid). The whole subtree is killed (``cgroup.kill`` of the upper group), counted (its ``memory.events``
is hierarchical) and removed (children first). On v1 (root only: the files are root's, the kernel is not) the
kernel joins the limited groups themselves.

Where this is impossible (no cgroup file system, a v2 base without the controllers delegated, or shared with
other processes such as the shell that started ``course``; cgroup v1 as a normal user), :func:`prepare` or
:func:`create` returns ``None`` with the reason, grading goes on with the per-process limits alone, and
``course grade`` says so in its summary (:func:`describe`).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path("/sys/fs/cgroup")
WANTED = ("memory", "pids")  # the first is required (the memory cap); the others are used where offered
LEAF = "seglabs-grader"  # the grader's own group under the base, on cgroup v2
KERNEL = "kernel"  # on v2, the child of a kernel's group that its processes join (below the limits)
MOUNTINFO = Path("/proc/self/mountinfo")
_NAME = re.compile(r"seglabs-\d+-\d+")  # a kernel's group: what create makes, the only kind holds accepts
DELEGATE_HINT = (
    "run grading in a cgroup of its own with the controllers delegated: "
    "`systemd-run --user --scope -p Delegate=yes .venv/bin/course grade ...` "
    "(as root: `systemd-run --scope -p Delegate=yes ...`)"
)
_counter = itertools.count()


@dataclass(frozen=True)
class Parent:
    """Where the kernels' groups of a batch are made, found once by the grader (:func:`prepare`): plain data.

    ``folders``: v2: ``{"": base}``; v1: ``{"memory": folder}`` and ``{"pids": folder}`` where there is one.
    ``controllers``: what each kernel's group gets (v2: enabled in the base's ``cgroup.subtree_control``).
    ``note``: a caveat for the summary (v2: cgroup2 mounted without ``nsdelegate``, where it matters).
    """

    version: int
    folders: dict[str, str]
    controllers: tuple[str, ...]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Parent:
        return cls(
            int(data["version"]), dict(data["folders"]), tuple(data["controllers"]), str(data.get("note", ""))
        )

    def holds(self, folder: Path) -> bool:
        """Whether ``folder`` is a kernel's group of this parent (the only kind the grader may kill and remove):
        a direct child of a base named like :func:`create` names it, never the grader's leaf nor a foreign
        group beside it (with the base at the cgroup root: ``system.slice``)."""
        folder = Path(folder)
        named = _NAME.fullmatch(folder.name) is not None
        return named and any(folder.parent == Path(base) for base in self.folders.values())


@dataclass
class Cgroup:
    """The groups one kernel runs in: one folder (v2) or one per controller (v1: memory, pids)."""

    version: int
    folders: list[Path]
    controllers: tuple[str, ...] = field(default=())
    leaf: str = ""  # the child group of each folder the processes join ("": the folder itself; v2: KERNEL)
    note: str = ""  # the parent's caveat, for the summary

    def join(self) -> None:
        """Move the calling process into the groups. Safe between ``fork`` and ``exec`` (plain syscalls)."""
        for folder in self.folders:
            fd = os.open(str(folder / self.leaf / "cgroup.procs"), os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def pids(self) -> list[int]:
        """Every process in the groups and in any group below them."""
        found: set[int] = set()
        for folder in self.folders:
            for procs in _subtree(folder, "cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    found.update(int(p) for p in procs.read_text().split())
        return sorted(found)

    def oom_kills(self) -> int:
        """How many processes the memory cap's OOM killer stopped in this group (v2: below it too)."""
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
        """SIGKILL everything still in the group (v2: ``cgroup.kill`` of the upper group takes the groups below it
        too); return how many processes remain (0 expected)."""
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
        """Kill what is left and delete the groups, each group below them first."""
        self.kill_all()
        for folder in self.folders:
            for group in reversed(_subtree(folder)):
                _rmdir(group)


def _subtree(folder: Path, name: str = "") -> list[Path]:
    """``folder`` and every group below it, parents first (``/name`` appended to each when given). Iterative:
    a kernel must not be able to stop the cleanup by nesting groups deeply (``cgroup.max.depth`` also caps it)."""
    groups, todo = [], [folder]
    while todo:
        group = todo.pop()
        groups.append(group)
        with contextlib.suppress(OSError):
            todo += sorted((p for p in group.iterdir() if p.is_dir() and not p.is_symlink()), reverse=True)
    return [g / name if name else g for g in groups]


def _rmdir(folder: Path) -> None:
    """Remove an empty group (one just emptied may refuse for a moment: retry)."""
    for _ in range(50):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
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


def _words(path: Path) -> list[str]:
    return path.read_text().split()


# -----------------------------------------------------------------------------------------------------
# Once per batch, in the grader: prepare
# -----------------------------------------------------------------------------------------------------
def _v2_base(root: Path, own: str | None) -> Path:
    """The grader's own v2 group, or the group above it when it is already the grader's leaf (an earlier batch
    of this process moved it there)."""
    base = root / (own if own is not None else _own_paths().get("", "/")).lstrip("/")
    return base.parent if base.name == LEAF and base != root else base


def _move_into_leaf(base: Path) -> Path:
    """Make ``base/seglabs-grader`` (if missing) and move the grader into it; a leaf it made is removed again
    when the move fails (e.g. EACCES: ``base`` is not delegated to the grader)."""
    leaf = base / LEAF
    made = not leaf.exists()
    leaf.mkdir(exist_ok=True)
    try:
        _write(leaf / "cgroup.procs", str(os.getpid()))
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                leaf.rmdir()
        raise
    return leaf


def _leave_leaf(base: Path, leaf: Path) -> None:
    """Undo :func:`_move_into_leaf` after a failure: back into the base, and no leaf left behind."""
    with contextlib.suppress(OSError):
        _write(base / "cgroup.procs", str(os.getpid()))
    with contextlib.suppress(OSError):
        leaf.rmdir()


def _enable_v2(base: Path, enable: list[str]) -> str:
    """Enable ``enable`` for the children of ``base``, moving the grader into its leaf when ``base`` holds
    processes; ``""`` or why it cannot."""
    line = " ".join(f"+{name}" for name in enable)
    try:
        _write(base / "cgroup.subtree_control", line)
        return ""
    except OSError as err:
        if err.errno != errno.EBUSY:
            raise
    leaf = _move_into_leaf(base)
    try:
        _write(base / "cgroup.subtree_control", line)
        return ""
    except OSError as err:
        if err.errno != errno.EBUSY:
            _leave_leaf(base, leaf)
            raise
    others = [p for p in _words(base / "cgroup.procs") if p != str(os.getpid())]
    _leave_leaf(base, leaf)
    what = (
        f"{len(others)} other process(es) share the grader's cgroup {base} (e.g. the shell that started it)"
        if others
        else f"the kernel refuses (EBUSY) to enable {line} in {base}/cgroup.subtree_control"
    )
    return (
        f"cgroup v2: {what}, so the grader cannot hand {', '.join(enable)} to child groups; {DELEGATE_HINT}"
    )


def _prepare_v2(root: Path, wanted: tuple[str, ...], own: str | None) -> tuple[Parent | None, str]:
    base = _v2_base(root, own)
    offered = _words(base / "cgroup.controllers")
    if not wanted or wanted[0] not in offered:
        need = wanted[0] if wanted else "any"
        return None, (
            f"cgroup v2: the {need} controller is not delegated to {base} (it offers: "
            f"{' '.join(offered) or 'none'}); {DELEGATE_HINT}"
        )
    enable = [name for name in wanted if name in offered]
    missing = [name for name in enable if name not in _words(base / "cgroup.subtree_control")]
    why = _enable_v2(base, missing) if missing else ""
    if why:
        return None, why
    return Parent(2, {"": str(base)}, tuple(enable), _nsdelegate_note(root)), ""


def _mount_options(root: Path, mountinfo: Path | None = None) -> set[str] | None:
    """The options (per mount and per super block) of the cgroup2 mount at ``root``, from
    ``/proc/self/mountinfo``; ``None`` where it is not listed there (e.g. a fake tree)."""
    try:
        lines = (mountinfo or MOUNTINFO).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        mount, sep, tail = line.partition(" - ")
        fields, rest = mount.split(), tail.split()
        if sep and len(fields) >= 6 and len(rest) >= 3 and rest[0] == "cgroup2" and Path(fields[4]) == root:
            return set(fields[5].split(",")) | set(rest[2].split(","))
    return None


def _userns_disabled_in_sandbox() -> bool:
    """Whether the installed bubblewrap keeps kernels from making user namespaces (``--disable-userns``)."""
    from seglabs_grading import bwrap

    try:
        return bwrap.supports_disable_userns(bwrap.find_bwrap())
    except bwrap.SandboxUnavailable:
        return False


def _nsdelegate_note(root: Path) -> str:
    """The summary's caveat where it matters: a normal user's kernels (the grader's uid, which owns the groups)
    may make user namespaces, and cgroup2 is mounted without ``nsdelegate``."""
    options = _mount_options(root)
    if os.geteuid() == 0 or options is None or "nsdelegate" in options or _userns_disabled_in_sandbox():
        return ""
    return (
        f"cgroup2 at {root} is mounted without nsdelegate and this bubblewrap has no --disable-userns: the "
        "limits stay above each kernel's cgroup namespace, but remounting with nsdelegate "
        f"(`sudo mount -o remount,nsdelegate {root}`) or bubblewrap >= 0.8 adds the kernel's own checks"
    )


def _prepare_v1(root: Path, own: dict[str, str]) -> tuple[Parent | None, str]:
    memory = root / "memory" / own.get("memory", "/").lstrip("/")
    if not os.access(memory, os.W_OK):
        return (
            None,
            f"cgroup v1: {memory} is not writable; cgroup v1 is not delegated to normal users: grade as root",
        )
    folders = {"memory": str(memory)}
    pids = root / "pids" / own.get("pids", "/").lstrip("/")
    if (pids / "cgroup.procs").exists() and os.access(pids, os.W_OK):
        folders["pids"] = str(pids)
    return Parent(1, folders, tuple(folders)), ""


def prepare(
    root: Path = ROOT, wanted: tuple[str, ...] = WANTED, own: str | None = None
) -> tuple[Parent | None, str]:
    """Once per batch, in the grader before any worker starts: where the kernels' groups go, or ``(None, why)``.

    ``root``: the cgroup file system (a v2 one where it has ``cgroup.controllers``, else v1 folders per
    controller); ``wanted``: the v2 controllers each kernel's group should get; ``own``: the grader's v2 path
    (default: from ``/proc/self/cgroup``). On v2 this may move the grader into ``base/seglabs-grader``.
    """
    root = Path(root)
    v2 = (root / "cgroup.controllers").exists()
    try:
        if v2:
            return _prepare_v2(root, tuple(wanted), own)
        if (root / "memory" / "cgroup.procs").exists():
            return _prepare_v1(root, _own_paths())
        return None, f"no cgroup file system at {root}"
    except OSError as err:
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        return None, f"cannot prepare a cgroup v{2 if v2 else 1} ({err.strerror or err}{where})" + (
            f"; {DELEGATE_HINT}" if v2 else ""
        )


# -----------------------------------------------------------------------------------------------------
# Per kernel, in a worker: create
# -----------------------------------------------------------------------------------------------------
def _create_v1(parent: Parent, name: str, memory_bytes: int, pids: int) -> Cgroup:
    memory = Path(parent.folders["memory"]) / name
    memory.mkdir()
    folders = [memory]
    try:
        _write(memory / "memory.limit_in_bytes", str(memory_bytes))
        with contextlib.suppress(OSError):  # only where swap accounting exists: swap counts too
            _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
        if pids and "pids" in parent.folders:
            folder = Path(parent.folders["pids"]) / name
            folder.mkdir()
            folders.append(folder)
            _write(folder / "pids.max", str(pids))
    except BaseException:
        Cgroup(1, folders).remove()
        raise
    return Cgroup(1, folders, ("memory", "pids") if len(folders) == 2 else ("memory",))


def _create_v2(parent: Parent, name: str, memory_bytes: int, pids: int) -> Cgroup:
    """``base/name`` with the limits, and its child ``base/name/kernel`` (no controllers) the kernel joins."""
    folder = Path(parent.folders[""]) / name
    folder.mkdir()
    controllers = tuple(c for c in parent.controllers if c != "pids" or pids)
    group = Cgroup(2, [folder], controllers, leaf=KERNEL, note=parent.note)
    try:
        if "memory" in controllers:
            _write(folder / "memory.max", str(memory_bytes))
            with contextlib.suppress(OSError):
                _write(folder / "memory.swap.max", "0")
        if "pids" in controllers:
            _write(folder / "pids.max", str(pids))
        with contextlib.suppress(OSError):  # KERNEL and nothing below it, whatever the kernel may mount
            _write(folder / "cgroup.max.depth", "1")
        (folder / KERNEL).mkdir()
    except BaseException:
        group.remove()
        raise
    return group


def create(parent: Parent | None, memory_mb: int, pids: int, reason: str = "") -> tuple[Cgroup | None, str]:
    """A fresh group under ``parent`` capping memory (MB, all kinds) and process count (0: no pids cap);
    ``(None, reason)`` where impossible (``reason``: why :func:`prepare` found no parent)."""
    if parent is None:
        return None, reason or "no cgroup prepared for this batch"
    name = f"seglabs-{os.getpid()}-{next(_counter)}"
    try:
        if parent.version == 2:
            return _create_v2(parent, name, memory_mb << 20, pids), ""
        return _create_v1(parent, name, memory_mb << 20, pids), ""
    except OSError as err:
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        return None, f"cannot create a cgroup ({err.strerror or err}{where})"


def describe(group: Cgroup | None, reason: str, memory_mb: int) -> str:
    """One line for the grading summary: how memory was capped."""
    if not memory_mb:
        return "memory cap: none (--memory-mb 0)"
    if group is not None and "memory" in group.controllers:
        return (
            f"memory cap: cgroup v{group.version} ({', '.join(group.controllers)}), {memory_mb} MB per "
            "submission (shared memory included)" + (f"; {group.note}" if group.note else "")
        )
    if group is not None:
        reason = f"its cgroup v{group.version} has no memory controller"
    return (
        f"memory cap: RLIMIT_DATA only, {memory_mb} MB per process; shared memory is NOT capped ({reason}; "
        "README: 'What grading needs')"
    )
