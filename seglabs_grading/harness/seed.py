"""SEED of a hidden test: made from a per-course secret, the lab and the student.

Identical on every re-grade, different between students and labs, and not readable from the notebook (the
secret never reaches the kernel). The secret lives in ``<grading>/harness-secret`` (created on first use, mode
0600, next to the gradebook; back it up with it) unless ``SEGLAB_HARNESS_SECRET`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from helpers.config import setting

SECRET_FILE = "harness-secret"
ENV = "SEGLAB_HARNESS_SECRET"


def course_secret(grading_dir: Path | None, create: bool = True) -> bytes:
    """The course's secret: ``$SEGLAB_HARNESS_SECRET``, else ``<grading_dir>/harness-secret`` (made if missing)."""
    from_env = setting(ENV)
    if from_env:
        return from_env.encode()
    if grading_dir is None:
        raise ValueError(f"no course secret: set {ENV} or give the grading folder")
    path = Path(grading_dir) / SECRET_FILE
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"{path} does not exist (it is made by the first grading run)")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()


def seed_for(secret: bytes, lab: str, student: str) -> int:
    """A 47-bit seed (``SEED + k`` stays a valid ``torch.manual_seed``) from the secret, lab and student."""
    digest = hmac.new(secret, f"{lab}\0{student}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:6], "big") >> 1


def copy_secret(grading_dir: Path, dest_dir: Path) -> Path:
    """Copy the course secret (made if missing) into ``dest_dir`` (mode 0600): a grading job's own copy."""
    secret = course_secret(grading_dir)  # $SEGLAB_HARNESS_SECRET, when set, wins over the file
    dest = Path(dest_dir) / SECRET_FILE
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.decode() + "\n")
    return dest
