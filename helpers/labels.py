"""Class names, colours and the ignore value: the constants every other module shares.

Kept apart (numpy only, no renderer, no torch) so that plots and widgets can name and colour the classes
without importing the scene generator.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CLASSES",
    "NUM_CLASSES",
    "IGNORE_INDEX",
    "IGNORE_COLOR",
    "PALETTE",
    "VOC_CLASSES",
    "PET_CLASSES",
    "BACKGROUND",
    "SKY",
    "GRASS",
    "TREE",
    "CAT",
    "voc_colormap",
    "color_table",
    "png_palette",
]

CLASSES: tuple[str, ...] = ("background", "sky", "grass", "tree", "cat")
"""Class names of the embedded scenes; the index of a name is its pixel value in the masks."""
BACKGROUND, SKY, GRASS, TREE, CAT = range(5)
NUM_CLASSES: int = len(CLASSES)
IGNORE_INDEX: int = 255
"""Mask value for pixels no class describes (object borders, crop padding): skipped by losses and metrics."""

PALETTE: list[tuple[int, int, int]] = [
    (0, 0, 0),  # background: black, as in VOC
    (110, 170, 255),  # sky
    (60, 180, 60),  # grass
    (0, 90, 40),  # tree
    (255, 140, 0),  # cat
]
"""One RGB colour per class (used for the palette PNGs and :func:`helpers.viz.colorize`)."""
IGNORE_COLOR: tuple[int, int, int] = (224, 224, 192)
"""The colour VOC draws its 255 ("void") pixels in."""

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
"""The 21 classes of PASCAL VOC 2012 segmentation."""
PET_CLASSES: tuple[str, ...] = ("background", "pet")
"""Classes of :class:`helpers.datasets.OxfordPetSegmentation` (the trimap's border becomes 255)."""


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (``n`` x 3 uint8): index i gets the colour VOC's palette PNGs use."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def color_table(palette=None) -> np.ndarray:
    """256 x 3 uint8 colour table: ``palette`` (default :data:`PALETTE`), VOC's colours beyond it, cream at 255.

    The one rule for colouring a mask: the scene PNGs, :func:`helpers.viz.colorize` and the widgets use it."""
    lut = voc_colormap(256)
    colours = np.asarray(PALETTE if palette is None else palette, dtype=np.uint8).reshape(-1, 3)
    lut[: len(colours)] = colours
    lut[IGNORE_INDEX] = IGNORE_COLOR
    return lut


def png_palette() -> list[int]:
    """Flat 768-entry palette for the scene PNGs (:func:`color_table` flattened)."""
    return color_table().reshape(-1).tolist()
