"""Checkpoints written by :func:`helpers.train.fit`: :func:`save_checkpoint` and its mirror
:func:`load_checkpoint`.

One file holds ``{"model": best weights, "last": {"model", "optimizer", "rng", "step", "seconds"[, "scaler"]},
"history": History.state()}``: only tensors, numbers and lists, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "cpu_state"]


def cpu_state(model: nn.Module, clone: bool = False) -> dict[str, torch.Tensor]:
    """The model's weights on the CPU (``clone``: a copy that later training cannot change)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {k: v.clone() for k, v in state.items()} if clone else state


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    step: int,
    seconds: float,
    best: dict[str, torch.Tensor] | None,
    history: dict,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Write the best weights and the latest training state to ``path``, atomically (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    last: dict[str, Any] = {
        "model": cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "step": step,
        "seconds": seconds,
    }
    if scaler is not None:
        last["scaler"] = scaler.state_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": best, "last": last, "history": history}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The dict :func:`save_checkpoint` wrote, read with ``torch.load(..., weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist (fit(..., checkpoint={str(path)!r}) writes it)"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(model: nn.Module, path: str | os.PathLike, which: str = "best") -> dict:
    """Load weights saved by :func:`helpers.train.fit` into ``model`` (``which`` = "best" or "last"); returns
    the file's dict. The file is read with ``torch.load(path, weights_only=True)``: it holds only tensors,
    numbers and lists."""
    state = read_checkpoint(path)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    model.load_state_dict(state["model"] if which == "best" else state["last"]["model"])
    return state
