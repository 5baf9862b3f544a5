"""The command line that starts one graded kernel inside bubblewrap (Debian's ``bubblewrap`` package).

What the kernel sees (everything else of the host does not exist for it):

- read-only: ``/usr`` (and the ``/bin``, ``/lib`` links or folders), this Python's prefix and virtual
  environment, the installed ``helpers`` and ``seglabs_grading`` package folders (never the checkout around them:
  no ``solutions/``, ``grading/``, ``.git``), the shared dataset cache at :data:`DATA_DIR`, and a minimal
  ``/etc`` (a ``passwd``/``group`` naming only the sandbox user, the dynamic loader's cache, fonts);
- read-write: its scratch folder at :data:`HOME` (the submission's non-notebook files, never a notebook: after
  nbgrader's sanitising step it would hold the hidden tests) and a private ``/tmp`` (a size-capped ``tmpfs``);
- its connection: the Jupyter sockets (ZMQ over Unix sockets, ``transport="ipc"``) in :data:`KERNEL_DIR`;
- new user, PID, IPC, network, UTS and mount namespaces: no network at all, no other process, SysV IPC and
  POSIX shared memory that die with it, ``--die-with-parent`` so that nothing survives the grader.

The kernel never runs as root. Run by root, bubblewrap would map the sandbox's user to root outside, so the
command has two layers: an outer bubblewrap, run by root, builds the mount namespace (root can reach a
Python under a private folder such as ``/root/.pyenv``, or a checkout in a 0700 folder, without changing any
permission), a PID namespace and ``/proc``; ``setpriv`` then drops to an unprivileged uid with no capabilities
and ``no_new_privs``; an inner bubblewrap, run by that uid, adds the user namespace and a PID namespace of its
own (its ``/proc`` stays the outer one: a user namespace may not mount a new one over a ``/proc`` that
bubblewrap has partly covered), so the kernel's parent is a PID 1 it cannot kill. Run by a normal user, one
bubblewrap does it all.

The innermost layer also passes ``--disable-userns`` where the installed bubblewrap has it (0.8 and later,
:func:`supports_disable_userns`): the kernel cannot make user namespaces of its own, so it can never hold the
capabilities to mount anything (a ``cgroup2`` file system, say) or to make namespaces of other kinds.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOME = "/home/student"  # the scratch folder, the kernel's working directory and $HOME
KERNEL_DIR = "/run/kernel"  # connection file and sockets
DATA_DIR = "/opt/seglabs-data"  # the shared dataset cache, read-only
SANDBOX_UID = 1000  # the kernel's uid and gid as it sees them (the host uid is unprivileged)
INSTALL_HINT = (
    "grading runs each kernel in bubblewrap: install it (Debian/Ubuntu: `sudo apt-get install bubblewrap`, "
    "Fedora: `sudo dnf install bubblewrap`; `make install-bwrap` does it as root). It needs Linux with user "
    "namespaces (README: 'What grading needs')."
)
_ETC_FROM_HOST = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "localtime")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces here; the message says what to do."""


def find_bwrap() -> str:
    path = shutil.which("bwrap") or ("/usr/bin/bwrap" if Path("/usr/bin/bwrap").exists() else None)
    if path is None:
        raise SandboxUnavailable(f"bwrap not found. {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=8)
def supports_disable_userns(path: str) -> bool:
    """Whether the bubblewrap at ``path`` can run a command with ``--disable-userns`` (0.8 and later): tried,
    since a bubblewrap may list the option and still refuse it (e.g. setuid, without user namespaces)."""
    probe = [path, "--unshare-user", "--disable-userns", "--ro-bind", "/", "/", "true"]
    try:
        run = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return run.returncode == 0


def _no_userns(path: str) -> list[str]:
    """``--unshare-user --disable-userns`` (the second needs the first) where supported, else ``--unshare-user``."""
    return ["--unshare-user", "--disable-userns"] if supports_disable_userns(path) else ["--unshare-user"]


def find_setpriv() -> str:
    path = shutil.which("setpriv") or ("/usr/bin/setpriv" if Path("/usr/bin/setpriv").exists() else None)
    if path is None:
        raise SandboxUnavailable(
            "setpriv (util-linux) not found: root needs it to start kernels unprivileged"
        )
    return path


@dataclass
class Mounts:
    """Host folders a kernel's sandbox is made of (see the module docstring)."""

    scratch: Path
    kernel: Path
    etc: Path  # a folder holding the sandbox's passwd and group
    data: Path | None = None
    readonly: list[Path] = field(default_factory=list)
    devices: Sequence[str] = ()  # device nodes to bind, e.g. /dev/nvidia0 for lab 04 on a GPU


def python_paths() -> list[Path]:
    """What the kernel's Python needs: its prefixes and the course's two packages (not the checkout)."""
    import helpers
    import seglabs_grading

    exe_prefix = Path(sys.executable).resolve().parent.parent
    found = [Path(sys.prefix), Path(sys.base_prefix), exe_prefix]
    for package in (helpers, seglabs_grading):
        found.append(Path(package.__file__).resolve().parent)
    return _outermost(p.resolve() for p in found)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Drop paths inside another path of the list (binding the outer one covers them)."""
    unique = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return kept


def write_etc(folder: Path) -> Path:
    """A minimal ``/etc``: the sandbox user and group only (no host accounts, no ``shadow``)."""
    folder.mkdir(mode=0o755, exist_ok=True)
    (folder / "passwd").write_text(
        f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        f"student:x:{SANDBOX_UID}:{SANDBOX_UID}:student:{HOME}:/usr/sbin/nologin\n"
    )
    (folder / "group").write_text(f"root:x:0:\nstudent:x:{SANDBOX_UID}:\n")
    (folder / "hostname").write_text("sandbox\n")
    for name in ("passwd", "group", "hostname"):
        (folder / name).chmod(0o644)
    return folder


def _parents(dest: str, made: set[str]) -> list[str]:
    """``--dir`` for each missing parent of ``dest``, world-traversable (bubblewrap as root makes them 0700)."""
    out: list[str] = []
    parts = Path(dest).parts[1:-1]
    for i in range(len(parts)):
        parent = "/" + "/".join(parts[: i + 1])
        if parent not in made:
            made.add(parent)
            out += ["--perms", "0755", "--dir", parent]
    return out


def _system_binds(made: set[str]) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    made.add("/usr")
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/" + name)
        if host.is_symlink():
            args += ["--symlink", str(host.readlink()), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    args += ["--perms", "0755", "--dir", "/etc"]
    made.add("/etc")
    for name in _ETC_FROM_HOST:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def binds(mounts: Mounts, tmp_bytes: int) -> list[str]:
    """Every mount of the sandbox but ``/tmp``, in order (parents first)."""
    made: set[str] = set()
    args = _system_binds(made)
    for name in ("passwd", "group", "hostname"):
        args += ["--ro-bind", str(mounts.etc / name), f"/etc/{name}"]
    for path in mounts.readonly:
        args += _parents(str(path), made) + ["--ro-bind", str(path), str(path)]
        made.add(str(path))
    if mounts.data is not None:
        args += _parents(DATA_DIR, made) + ["--ro-bind", str(mounts.data), DATA_DIR]
    args += _parents(HOME, made) + ["--bind", str(mounts.scratch), HOME]
    args += _parents(KERNEL_DIR, made) + ["--bind", str(mounts.kernel), KERNEL_DIR]
    # A private, size-capped /dev/shm (POSIX shared memory, torch's DataLoader workers), gone with the sandbox.
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(tmp_bytes),
        "--perms",
        "1777",
        "--tmpfs",
        "/dev/shm",
    ]
    for device in mounts.devices:
        args += ["--dev-bind-try", device, device]
    return args


def _environment(env: dict[str, str]) -> list[str]:
    out = ["--clearenv"]
    for key, value in sorted(env.items()):
        out += ["--setenv", key, value]
    return out


def command(
    kernel_cmd: Sequence[str],
    mounts: Mounts,
    env: dict[str, str],
    host_uid: int | None,
    tmp_bytes: int = 512 << 20,
) -> list[str]:
    """The full command line: ``kernel_cmd`` run in the sandbox.

    ``host_uid``: when the grader is root, the unprivileged host uid (and gid) the kernel runs as (two layers,
    see the module docstring); ``None`` when the grader is a normal user (one layer, the grader's own uid).
    """
    bwrap = find_bwrap()
    ids = ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    tmp = ["--size", str(tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
    inner_tail = [*ids, "--chdir", HOME, *_environment(env), "--", *kernel_cmd]
    if host_uid is None:
        return [
            bwrap, "--unshare-all", *_no_userns(bwrap), "--die-with-parent", "--new-session",
            *tmp, *binds(mounts, tmp_bytes), *inner_tail,
        ]  # fmt: skip
    outer = [
        bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", *binds(mounts, tmp_bytes), "--perms", "0755", "--dir", "/tmp",
        "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
    ]  # fmt: skip
    drop = [
        find_setpriv(), f"--reuid={host_uid}", f"--regid={host_uid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]  # fmt: skip
    inner = [
        bwrap, *_no_userns(bwrap), "--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts",
        "--die-with-parent",
        "--new-session", "--dev-bind", "/", "/", *tmp, *_under_tmp(mounts), *inner_tail,
    ]  # fmt: skip
    return outer + drop + inner


def _under_tmp(mounts: Mounts) -> list[str]:
    """Binds of the read-only paths that live under ``/tmp`` (a checkout or venv in ``mktemp -d``), again after the
    inner layer's private ``/tmp`` hid them; the outer layer already made them reachable."""
    out: list[str] = []
    for path in mounts.readonly:
        if Path(path).is_relative_to("/tmp"):
            out += ["--ro-bind", str(path), str(path)]
    return out
