"""Joint image/mask transforms (torchvision.transforms.v2 with ``tv_tensors.Mask``), as in torchvision's
segmentation references: the mask is resized with nearest neighbour and padded with 255, never interpolated.

Every transform ends with :func:`to_dtypes`: float image in [0, 1], int64 mask.
"""

from __future__ import annotations

from typing import Any

import torch

from helpers.labels import IGNORE_INDEX

__all__ = ["to_dtypes", "make_train_transforms", "make_eval_transforms", "make_flip_transforms"]


def to_dtypes():
    """The last step of every transform here: float32 image scaled to [0, 1], int64 mask, others as they are."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    return v2.ToDtype(
        {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True
    )


def make_train_transforms(
    crop_size: int,
    *,
    base_size: int | None = None,
    scale: tuple[float, float] = (0.5, 2.0),
    hflip_prob: float = 0.5,
):
    """Random scale, random crop and horizontal flip, applied to image and mask together.

    As in torchvision's segmentation references: the shorter side is resized to a random size in
    ``[scale[0] * base_size, scale[1] * base_size]`` (``base_size`` defaults to ``crop_size``), then a
    ``crop_size`` square is cropped, padding images with 0 and masks with 255 when the resized image
    is smaller, so padding never counts as a class. Masks are always resized with nearest neighbour
    (``tv_tensors.Mask`` makes v2 do that): interpolating class indices would invent classes.
    Output: float image in [0, 1], int64 mask.
    """
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    if crop_size < 1:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
    base = base_size or crop_size
    low, high = max(1, round(scale[0] * base)), max(1, round(scale[1] * base))
    return v2.Compose(
        [
            v2.RandomResize(low, high + 1, antialias=True),
            v2.RandomCrop(
                crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
            ),
            v2.RandomHorizontalFlip(hflip_prob),
            to_dtypes(),
        ]
    )


def make_eval_transforms(size: int | None = None):
    """Deterministic evaluation transform: optional resize of the shorter side to ``size`` then a
    centre crop to ``size`` x ``size`` (so images of different sizes batch together); masks nearest.
    Output: float image in [0, 1], int64 mask."""
    from torchvision.transforms import v2

    steps: list[Any] = []
    if size is not None:
        steps += [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    steps.append(to_dtypes())
    return v2.Compose(steps)


def make_flip_transforms(hflip_prob: float = 0.5):
    """Only a random horizontal flip (image and mask together), for training at the images' own size."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomHorizontalFlip(hflip_prob), to_dtypes()])
