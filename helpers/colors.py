"""Masks and images as colour pictures (uint8 H x W x 3 arrays): :func:`colorize` and :func:`overlay`.

Pure numpy: the figures in :mod:`helpers.viz` and the widgets in :mod:`helpers.widgets` draw with these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from helpers.labels import IGNORE_INDEX, color_table

__all__ = ["colorize", "overlay", "mask_array", "image_array", "color_table"]


def mask_array(mask: Any) -> np.ndarray:
    """Class map (H x W or 1 x H x W tensor or array) -> int64 H x W, checked: integers in 0..255."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"a mask must be H x W class indices, got shape {mask.shape}")
    if mask.dtype.kind == "f":
        raise TypeError(f"a mask must hold integer class indices, got {mask.dtype} (arg-max scores first)")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask values must lie in 0..255, got {mask.min()}..{mask.max()}")
    return mask.astype(np.int64)


def image_array(image: Any) -> np.ndarray:
    """Float tensor 3 x H x W in [0, 1] or uint8 H x W x 3 -> uint8 H x W x 3."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dim() == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"an image must be 3 x H x W (tensor) or H x W x 3 (array), got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    return image


def colorize(mask: Any, palette: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Class map (H x W tensor or array) -> uint8 H x W x 3 colour picture; 255 (ignore) is cream."""
    return color_table(palette)[mask_array(mask)]


def overlay(
    image: Any,
    mask: Any,
    alpha: float = 0.5,
    palette: Sequence[Sequence[int]] | None = None,
    classes: Sequence[int] | None = None,
) -> np.ndarray:
    """Blend the coloured ``mask`` over ``image`` (uint8 H x W x 3 result).

    ``alpha`` is the mask's opacity (0 = image only, 1 = mask only). Ignored pixels (255) and classes not
    in ``classes`` (default: all) are left unpainted so the photo shows through.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    img, m = image_array(image), mask_array(mask)
    if img.shape[:2] != m.shape:
        raise ValueError(f"image is {img.shape[0]}x{img.shape[1]} but mask is {m.shape[0]}x{m.shape[1]}")
    paint = m != IGNORE_INDEX
    if classes is not None:
        paint &= np.isin(m, np.asarray(list(classes), dtype=np.int64))
    colours = color_table(palette)[m].astype(np.float32)
    out = img.astype(np.float32)
    out[paint] = (1 - alpha) * out[paint] + alpha * colours[paint]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
