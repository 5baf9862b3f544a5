"""Training and validation data loaders over a VOC-layout folder (:func:`make_loaders`)."""

from __future__ import annotations

import os

import torch

from helpers.datasets import SegmentationFolder
from helpers.device import resolve_device
from helpers.scenes import is_generated
from helpers.transforms import make_eval_transforms, make_flip_transforms, make_train_transforms

__all__ = ["make_loaders"]


def _train_transforms(
    augment: bool, crop_size: int | None, scale: tuple[float, float], eval_size: int | None
):
    if not augment:
        return make_eval_transforms(eval_size)
    if crop_size is not None:
        return make_train_transforms(crop_size, scale=scale)
    return make_flip_transforms(0.5)


def make_loaders(
    root: str | os.PathLike,
    batch_size: int = 32,
    crop_size: int | None = None,
    num_workers: int = 0,
    *,
    augment: bool = True,
    scale: tuple[float, float] = (0.75, 1.25),
    eval_size: int | None = None,
    train_split: str = "train",
    val_split: str = "val",
    device: torch.device | str | None = None,
    cache: bool | None = None,
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """Training and validation loaders over a VOC-layout folder (e.g. :func:`helpers.data.ensure_scenes`).

    Training: shuffled, last incomplete batch dropped, augmented with a random horizontal flip and, when
    ``crop_size`` is given, random scaling by ``scale`` then a ``crop_size`` crop (masks padded with 255).
    Validation: in order, unaugmented; pass ``eval_size`` for datasets whose images differ in size (VOC).
    Decoded samples are kept in memory when ``cache`` is True (default: for generated scenes, which carry
    a ``seglab.json``). Memory is pinned when the device is CUDA. Shuffling and augmentation draw from
    PyTorch's global RNG, so :func:`helpers.train.seed_everything` makes them repeatable.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if cache is None:  # generated scenes are small: keep them decoded in memory
        cache = is_generated(root)
    train_tf = _train_transforms(augment, crop_size, scale, eval_size)
    train = SegmentationFolder(root, train_split, transforms=train_tf, cache=cache)
    val = SegmentationFolder(root, val_split, transforms=make_eval_transforms(eval_size), cache=cache)
    if len(train) < batch_size:
        raise ValueError(f"{train!r} has {len(train)} images, fewer than batch_size={batch_size}")
    pin = resolve_device(device).type == "cuda"
    common = {"num_workers": num_workers, "pin_memory": pin, "persistent_workers": num_workers > 0}
    return (
        torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True, **common),
        torch.utils.data.DataLoader(val, batch_size=batch_size, shuffle=False, **common),
    )
