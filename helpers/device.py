"""Where computation runs: the device choice and its fallbacks, batch copies, mixed precision on CUDA."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["pick_device", "resolve_device", "model_device", "to_device", "use_amp", "autocast"]


def pick_device(verbose: bool = True) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU; prints one line saying why."""
    if torch.cuda.is_available():
        device = torch.device("cuda")
        why = f"CUDA GPU found ({torch.cuda.get_device_name(0)}); training uses mixed precision"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
        why = "Apple GPU (MPS) found"
    else:
        device = torch.device("cpu")
        why = f"no GPU found, using {torch.get_num_threads()} CPU thread(s): fine for the labs' 64x64 images"
    if verbose:
        print(f"device: {device} - {why}")
    return device


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a :class:`torch.device`; None means the best available one (:func:`pick_device`)."""
    return torch.device(device) if device is not None else pick_device(verbose=False)


def model_device(model: nn.Module, device: torch.device | str | None = None) -> torch.device:
    """``device`` if given, else where the model's parameters are (the CPU for a model without any)."""
    if device is not None:
        return torch.device(device)
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def to_device(batch: Iterable[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Copy each tensor of ``batch`` to ``device`` (asynchronously on CUDA, where memory is pinned)."""
    non_blocking = device.type == "cuda"  # overlaps the copy with compute when memory is pinned
    return [t.to(device, non_blocking=non_blocking) for t in batch]


def use_amp(amp: bool | str, device: torch.device) -> bool:
    """Whether to train in mixed precision: "auto" means on CUDA only; True elsewhere warns and says no."""
    if amp == "auto":
        return device.type == "cuda"
    if amp and device.type != "cuda":
        warnings.warn(f"amp=True needs CUDA; training in float32 on {device}", stacklevel=4)
        return False
    return bool(amp)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA; nothing elsewhere (not every PyTorch build accepts autocast on MPS)."""
    return torch.autocast(device.type, dtype=torch.float16) if enabled else contextlib.nullcontext()
