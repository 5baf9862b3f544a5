"""Data for the labs: the embedded outdoor scenes, real-data loaders and joint image/mask transforms.

The embedded dataset
--------------------
The lecture's running example labels every pixel of an outdoor photo as GRASS, CAT, TREE or SKY. The
labs need thousands of such images without a download, so :func:`render_scene` draws them procedurally
(sky with clouds, hills, grass with texture, trees, several cats occluding each other and the trees) and
:func:`make_scenes` writes them in the **PASCAL VOC layout**, so the same loader reads them and a real
VOC 2012 tree::

    <root>/JPEGImages/<id>.jpg                 RGB photo
    <root>/SegmentationClass/<id>.png          palette PNG: pixel value = class index, 255 = ignore
    <root>/ImageSets/Segmentation/train.txt    one <id> per line (and val.txt)

The classes are the lecture's four plus VOC's ``background`` for everything else (distant hills, paths,
rocks): a real label map always needs a class for "none of the above", and keeping index 0 for it makes
the scenes read exactly like VOC masks. As in VOC, a thin band around every object (tree, cat) is
labelled 255 ("void"): those pixels blend two classes after the camera blur, so no label is right for
them, and losses and metrics skip them (``ignore_index=255``).

The scenes are built to *need context*: colours overlap across classes (grey and brown cats against
brown trunks and grey rocks, dark trees against shadowed grass, bright grass against a hazy sky, per-image
lighting, colour casts, shadows and noise). A classifier that looks at one pixel's colour plateaus near
0.65 mIoU while a small fully-convolutional network passes 0.90 (see ``benchmarks/README.md``).

Where the data live
-------------------
:func:`ensure_scenes` generates a dataset once into :func:`data_dir` and reuses it: ``$SEGLAB_DATA`` if set,
else the repository's ``data/`` folder when the package is installed from a checkout, else
``~/.cache/seglabs``. From a shell: ``python -m helpers.data make-scenes --root data/scenes``.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from helpers.config import data_dir

__all__ = [
    "CLASSES",
    "NUM_CLASSES",
    "IGNORE_INDEX",
    "PALETTE",
    "VOC_CLASSES",
    "PET_CLASSES",
    "BACKGROUND",
    "SKY",
    "GRASS",
    "TREE",
    "CAT",
    "GENERATOR_VERSION",
    "Scene",
    "render_scene",
    "make_scenes",
    "data_dir",
    "ensure_scenes",
    "voc_colormap",
    "SegmentationFolder",
    "OxfordPetSegmentation",
    "make_train_transforms",
    "make_eval_transforms",
    "main",
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
"""Classes of :class:`OxfordPetSegmentation` (the trimap's border becomes 255)."""

GENERATOR_VERSION = 3
"""Bumped whenever :func:`render_scene` changes, so cached datasets are regenerated."""
_META_FILE = "seglab.json"


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


def _png_palette() -> list[int]:
    """Flat 768-entry palette for the scene PNGs: our class colours, VOC's colours elsewhere."""
    cmap = voc_colormap(256)
    cmap[: len(PALETTE)] = PALETTE
    cmap[IGNORE_INDEX] = IGNORE_COLOR
    return cmap.reshape(-1).tolist()


# =====================================================================================================
# Procedural scenes
# =====================================================================================================
@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: uint8 array H x W x 3 (RGB).
        mask: uint8 array H x W of class indices (see :data:`CLASSES`), 255 on object borders.
        instance_map: int32 array H x W, 0 where no object instance is visible, else the instance id.
        instance_classes: instance id -> class index (trees and cats are instances; sky, grass and
            background are "stuff" and have none). Semantic segmentation ignores instances; they are here
            to show what it does not distinguish.
    """

    image: np.ndarray
    mask: np.ndarray
    instance_map: np.ndarray
    instance_classes: dict[int, int] = field(default_factory=dict)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), np.float32)


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth random field of ``shape`` (roughly unit variance): a lattice every ``cell`` pixels, bilinear."""
    h, w = shape
    lattice = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2)).astype(np.float32)

    def axis(n: int) -> tuple[np.ndarray, np.ndarray]:
        t = (np.arange(n, dtype=np.float32) + 0.5) / cell
        i = t.astype(np.int64)
        f = t - i
        return i, f * f * (3 - 2 * f)  # smoothstep: no visible lattice creases

    iy, fy = axis(h)
    ix, fx = axis(w)
    top = lattice[iy][:, ix] * (1 - fx) + lattice[iy][:, ix + 1] * fx
    bottom = lattice[iy + 1][:, ix] * (1 - fx) + lattice[iy + 1][:, ix + 1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def _blur3(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with edge replication (a camera's slight softness)."""
    p = np.pad(img, ((1, 1), (0, 0), (0, 0)), mode="edge")
    img = (p[:-2] + 2 * p[1:-1] + p[2:]) * 0.25
    p = np.pad(img, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) * 0.25


def _dilate(m: np.ndarray) -> np.ndarray:
    """4-neighbour binary dilation."""
    out = m.copy()
    out[1:] |= m[:-1]
    out[:-1] |= m[1:]
    out[:, 1:] |= m[:, :-1]
    out[:, :-1] |= m[:, 1:]
    return out


class _Canvas:
    """Painter's-algorithm canvas: float RGB image, label map, instance map on a normalised grid."""

    def __init__(self, size: int):
        self.size = size
        coords = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.v, self.u = np.meshgrid(coords, coords, indexing="ij")  # v: down, u: right, both in [0, 1]
        self.img = np.zeros((size, size, 3), np.float32)
        self.label = np.zeros((size, size), np.uint8)
        self.inst = np.zeros((size, size), np.int32)
        self.instance_classes: dict[int, int] = {}

    def window(self, u0: float, u1: float, v0: float, v1: float) -> _Canvas:
        """A canvas over the pixels of the box [u0, u1] x [v0, v1] (plus one pixel), sharing memory with
        this one: shapes are computed on their bounding box only, which keeps rendering fast."""
        n = self.size
        x0, x1 = (min(max(int(np.floor(t * n)) + d, 0), n) for t, d in ((u0, -1), (u1, 2)))
        y0, y1 = (min(max(int(np.floor(t * n)) + d, 0), n) for t, d in ((v0, -1), (v1, 2)))
        w = _Canvas.__new__(_Canvas)
        w.size, w.instance_classes = n, self.instance_classes
        box = (slice(y0, max(y0, y1)), slice(x0, max(x0, x1)))
        w.u, w.v, w.img, w.label, w.inst = (
            self.u[box],
            self.v[box],
            self.img[box],
            self.label[box],
            self.inst[box],
        )
        return w

    def paint(self, region: np.ndarray, colour: np.ndarray, label: int, inst: int = 0) -> None:
        """``colour`` is an RGB triple or an H x W x 3 field (only ``region`` is used)."""
        if colour.ndim == 1:
            self.img[region] = colour
        else:
            self.img[region] = colour[region]
        self.label[region] = label
        self.inst[region] = inst


def _sky(c: _Canvas, rng: np.random.Generator, horizon_mean: float) -> np.ndarray:
    """Sky gradient and clouds over the whole canvas; returns the colour near the horizon (for haze)."""
    kind = rng.choice(4, p=[0.58, 0.12, 0.15, 0.15])
    if kind == 0:  # clear day
        top = _hsv(rng.uniform(0.55, 0.64), rng.uniform(0.45, 0.8), rng.uniform(0.6, 0.95))
        low = _hsv(rng.uniform(0.52, 0.6), rng.uniform(0.1, 0.35), rng.uniform(0.8, 1.0))
    elif kind == 1:  # overcast: grey, close to rocks and grey cats
        g = rng.uniform(0.5, 0.85)
        top = np.full(3, g, np.float32) + rng.normal(0, 0.03, 3).astype(np.float32)
        low = np.full(3, min(g + 0.1, 1.0), np.float32) + rng.normal(0, 0.03, 3).astype(np.float32)
    elif kind == 2:  # sunset: orange horizon, close to orange cats and autumn trees
        top = _hsv(rng.uniform(0.8, 0.95), rng.uniform(0.25, 0.5), rng.uniform(0.5, 0.8))
        low = _hsv(rng.uniform(0.03, 0.12), rng.uniform(0.4, 0.75), rng.uniform(0.8, 1.0))
    else:  # haze: pale green-yellow, close to bright grass
        top = _hsv(rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.3), rng.uniform(0.65, 0.9))
        low = _hsv(rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.45), rng.uniform(0.75, 0.95))
    t = np.clip(c.v / max(horizon_mean, 1e-3), 0, 1)[..., None]
    sky = top * (1 - t) + low * t
    n_clouds = rng.integers(0, 4)
    if n_clouds:
        alpha = np.zeros_like(c.v)
        for _ in range(n_clouds):
            cu, cv = rng.uniform(0, 1), rng.uniform(0, horizon_mean * 0.8)
            w, h = rng.uniform(0.08, 0.25), rng.uniform(0.03, 0.08)
            for _ in range(3):  # a cloud is a few overlapping puffs
                du, dv = rng.normal(0, w * 0.5), rng.normal(0, h * 0.5)
                alpha += np.exp(-(((c.u - cu - du) / w) ** 2) - ((c.v - cv - dv) / h) ** 2)
        alpha = np.clip(alpha * rng.uniform(0.5, 1.0), 0, 1)[..., None]
        cloud = np.full(3, rng.uniform(0.8, 1.0), np.float32)
        sky = sky * (1 - alpha) + cloud * alpha
    c.paint(np.ones_like(c.label, bool), sky, SKY)
    return low


def _ground(c: _Canvas, rng: np.random.Generator, horizon: np.ndarray, haze: np.ndarray) -> None:
    """Hills (background) behind the horizon, textured grass below it, maybe a path and rocks."""
    v, u = c.v, c.u
    if rng.random() < 0.55:
        ridge = (
            horizon
            - rng.uniform(0.04, 0.14)
            + rng.uniform(0.01, 0.04) * np.sin(2 * np.pi * (rng.uniform(1, 3) * u[0] + rng.uniform(0, 1)))
        )
        hills = v > ridge[None, :]
        base = _hsv(rng.uniform(0.6, 0.78), rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.5))
        mix = rng.uniform(0.0, 0.25)  # distance haze pulls the hills towards the sky colour
        col = base * (1 - mix) + haze * mix
        field_ = col + 0.04 * _value_noise(rng, c.u.shape, c.size / 6)[..., None]
        c.paint(hills, field_, BACKGROUND)

    below = v > horizon[None, :]
    depth = np.clip((v - horizon[None, :]) / np.maximum(1 - horizon[None, :], 1e-3), 0, 1)
    base = _hsv(rng.uniform(0.17, 0.3), rng.uniform(0.4, 0.85), rng.uniform(0.5, 0.9))
    tex = (
        rng.uniform(0.04, 0.1) * _value_noise(rng, c.u.shape, c.size / 4)
        + rng.uniform(0.02, 0.06) * rng.standard_normal((c.size, c.size)).astype(np.float32)
        + rng.uniform(0.0, 0.04) * _value_noise(rng, c.u.shape, c.size / 16)
    )
    grass = base[None, None, :] * (1 + tex[..., None]) * (0.85 + 0.3 * depth[..., None])
    c.paint(below, grass, GRASS)

    if rng.random() < 0.35:  # a dirt or gravel path running into the distance
        near_u, far_u = rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.8)
        centre = far_u + (near_u - far_u) * depth
        half = 0.01 + rng.uniform(0.08, 0.2) * depth
        path = below & (np.abs(u - centre) < half)
        col = _hsv(rng.uniform(0.08, 0.12), rng.uniform(0.2, 0.45), rng.uniform(0.45, 0.75))
        c.paint(
            path, col * (1 + 0.08 * rng.standard_normal((c.size, c.size, 1)).astype(np.float32)), BACKGROUND
        )
    for _ in range(rng.integers(0, 3)):  # rocks: grey or brown lumps lit from above
        ru, rv = rng.uniform(0, 1), rng.uniform(horizon.mean() + 0.05, 1.0)
        rw = rng.uniform(0.05, 0.1) * (0.5 + rv)
        rh = rw * rng.uniform(0.5, 0.8)
        w = c.window(ru - rw, ru + rw, rv - rh, rv + rh)
        d = ((w.u - ru) / rw) ** 2 + ((w.v - rv) / rh) ** 2
        rock = (d < 1) & (w.label == GRASS)
        col = _hsv(rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.25), rng.uniform(0.3, 0.55))
        shade = (1.15 - 0.4 * np.clip((w.v - rv + rh) / (2 * rh), 0, 1))[..., None]
        w.paint(rock, col * shade, BACKGROUND)


def _shadow(c: _Canvas, cu: float, cv: float, w: float, h: float, strength: float) -> None:
    """Darken ground (grass/background) pixels under an object; objects already drawn keep their colour."""
    c = c.window(cu - w, cu + w, cv - h, cv + h)
    d = ((c.u - cu) / w) ** 2 + ((c.v - cv) / h) ** 2
    ground = (d < 1) & ((c.label == GRASS) | (c.label == BACKGROUND))
    c.img[ground] *= 1 - strength * (1 - d[ground, None])


def _tree(c: _Canvas, rng: np.random.Generator, base_v: float, scale: float, inst: int, sun: float) -> None:
    cu = rng.uniform(-0.05, 1.05)
    trunk_h = rng.uniform(0.15, 0.3) * scale
    trunk_w = rng.uniform(0.025, 0.05) * scale + 1.2 / c.size
    r = rng.uniform(0.1, 0.19) * scale
    _shadow(c, cu + sun * r * 0.6, base_v, r * 1.3, 0.02 + 0.03 * scale, rng.uniform(0.2, 0.4))
    crown_v = base_v - trunk_h - r * 0.55
    c = c.window(cu - 1.4 * r, cu + 1.4 * r, crown_v - 1.3 * r, base_v)
    u, v = c.u, c.v
    widen = 1 + 0.6 * np.clip((v - (base_v - trunk_h * 0.3)) / (trunk_h * 0.3 + 1e-6), 0, 1)  # root flare
    trunk = (np.abs(u - cu) < trunk_w / 2 * widen) & (v < base_v) & (v > base_v - trunk_h - r * 0.5)
    kind = rng.random()
    if kind < 0.84:  # green crown, from dark (close to shadowed grass) to bright
        leaves = _hsv(rng.uniform(0.26, 0.45), rng.uniform(0.5, 0.9), rng.uniform(0.12, 0.45))
    elif kind < 0.93:  # autumn: orange/brown, close to orange or brown cats
        leaves = _hsv(rng.uniform(0.02, 0.13), rng.uniform(0.5, 0.9), rng.uniform(0.35, 0.8))
    else:  # olive / yellowish, close to dry grass
        leaves = _hsv(rng.uniform(0.12, 0.2), rng.uniform(0.4, 0.7), rng.uniform(0.35, 0.7))
    bark = _hsv(rng.uniform(0.04, 0.11), rng.uniform(0.2, 0.65), rng.uniform(0.18, 0.5))
    bark_field = bark * (1 + 0.12 * rng.standard_normal((*u.shape, 1)).astype(np.float32))
    c.paint(trunk, bark_field, TREE, inst)
    crown = np.zeros_like(trunk)
    for k in range(rng.integers(3, 6)):  # lumpy crown: overlapping blobs
        du = rng.uniform(-0.55, 0.55) * r if k else 0.0
        dv = rng.uniform(-0.45, 0.3) * r if k else 0.0
        rr = r * (rng.uniform(0.55, 0.8) if k else 0.85)
        crown |= (u - cu - du) ** 2 + (v - crown_v - dv) ** 2 < rr**2
    light = 1 + 0.25 * np.clip(sun * (u - cu) / r - (v - crown_v) / r, -1, 1)  # lit towards the sun
    leaf_tex = 1 + 0.18 * rng.standard_normal(u.shape) + 0.12 * _value_noise(rng, u.shape, c.size / 12)
    c.paint(crown, leaves * (light * leaf_tex)[..., None].astype(np.float32), TREE, inst)
    c.instance_classes[inst] = TREE


_CAT_COATS = (
    (0.07, 0.75, 0.85),  # ginger
    (0.0, 0.0, 0.5),  # grey (rocks, overcast sky)
    (0.0, 0.0, 0.12),  # black (shadows, dark trunks)
    (0.1, 0.08, 0.92),  # white / cream (clouds)
    (0.07, 0.55, 0.4),  # brown (trunks, paths)
    (0.09, 0.35, 0.65),  # tabby grey-brown
)
_CAT_COAT_P = (0.45, 0.12, 0.1, 0.1, 0.13, 0.1)


def _cat(c: _Canvas, rng: np.random.Generator, base_v: float, scale: float, inst: int, sun: float) -> None:
    cu = rng.uniform(0.05, 0.95)
    face = rng.choice([-1.0, 1.0])
    bw = rng.uniform(0.2, 0.3) * scale  # body length
    bh = bw * rng.uniform(0.45, 0.6)
    leg = bh * rng.uniform(0.35, 0.6)
    by = base_v - leg - bh / 2
    _shadow(c, cu + sun * bw * 0.3, base_v, bw * 0.75, 0.015 + 0.015 * scale, rng.uniform(0.2, 0.45))
    c = c.window(cu - 1.3 * bw, cu + 1.3 * bw, by - 2.1 * bh, base_v)
    u, v = c.u, c.v
    body = ((u - cu) / (bw / 2)) ** 2 + ((v - by) / (bh / 2)) ** 2 < 1
    hr = bh * rng.uniform(0.5, 0.65)
    hu, hv = cu + face * bw * 0.45, by - bh * rng.uniform(0.35, 0.7)
    head = (u - hu) ** 2 + (v - hv) ** 2 < hr**2
    ears = np.zeros_like(body)
    for side in (-1.0, 1.0):  # triangles: apex above the head, base inside it
        eu = hu + side * hr * 0.55
        apex, base = hv - hr * rng.uniform(1.45, 1.8), hv - hr * 0.45
        t = (v - apex) / (base - apex)
        ears |= (t > 0) & (t < 1) & (np.abs(u - eu) < t * hr * 0.42)
    legs = np.zeros_like(body)
    for lu in (-0.32, -0.18, 0.22, 0.36):
        legs |= (np.abs(u - cu - lu * bw) < max(bw * 0.06, 0.6 / c.size)) & (v > by) & (v < base_v)
    # tail: a quadratic Bezier from the rump, curling up; drawn as the union of discs along it
    p0 = np.array([cu - face * bw * 0.48, by - bh * 0.1])
    p1 = p0 + np.array([-face * bw * rng.uniform(0.2, 0.5), rng.uniform(-0.1, 0.2) * bh])
    p2 = p1 + np.array([-face * bw * rng.uniform(-0.15, 0.2), -bh * rng.uniform(0.6, 1.2)])
    s = np.linspace(0, 1, 10, dtype=np.float32)[:, None]
    pts = (1 - s) ** 2 * p0 + 2 * s * (1 - s) * p1 + s**2 * p2
    tw = max(bh * 0.13, 0.55 / c.size)
    d2 = (u[None] - pts[:, 0, None, None]) ** 2 + (v[None] - pts[:, 1, None, None]) ** 2
    tail = d2.min(axis=0) < tw**2
    cat = body | head | ears | legs | tail

    h, s_, val = _CAT_COATS[rng.choice(len(_CAT_COATS), p=_CAT_COAT_P)]
    coat = _hsv(h + rng.normal(0, 0.02), s_ + rng.normal(0, 0.08), val + rng.normal(0, 0.08))
    pattern = np.ones_like(u)
    if rng.random() < 0.4:  # tabby stripes across the body
        period = rng.uniform(0.02, 0.04)
        pattern = 1 - 0.3 * (np.sin(2 * np.pi * (u - cu) / period) > 0.3)
    belly = 1 - 0.3 * np.clip((v - by) / bh, 0, 1)  # lit from above
    light = 1 + 0.15 * np.clip(sun * (u - cu) / bw, -1, 1)
    fur = 1 + 0.08 * rng.standard_normal(u.shape).astype(np.float32)
    c.paint(cat, coat * (pattern * belly * light * fur)[..., None], CAT, inst)
    c.instance_classes[inst] = CAT


def render_scene(seed: int, size: int = 64) -> Scene:
    """Draw one outdoor scene and its label map, deterministically from ``seed``.

    Vectorised numpy: every shape is a boolean region over the whole grid, drawn back to front (far
    objects first) so nearer trees and cats occlude farther ones. Shapes are laid out in normalised
    coordinates, so ``size`` changes the resolution, not the layout.

    Args:
        seed: any non-negative integer; the same seed always gives the same scene.
        size: image height and width in pixels (at least 16).

    Returns:
        A :class:`Scene` (image, mask, instance map, instance classes).
    """
    if size < 16:
        raise ValueError(f"size={size} is too small to draw a scene; use at least 16 (the labs use 64)")
    rng = np.random.default_rng(seed)
    c = _Canvas(size)
    sun = float(rng.choice([-1.0, 1.0]))

    h0 = rng.uniform(0.28, 0.58)
    horizon = h0 + rng.uniform(0, 0.05) * np.sin(
        2 * np.pi * (rng.uniform(0.3, 1.5) * c.u[0] + rng.uniform(0, 1))
    )
    haze = _sky(c, rng, h0)
    _ground(c, rng, horizon.astype(np.float32), haze)

    # Objects stand on the grass; the nearer (lower) the base, the larger (perspective), drawn last.
    n_trees, n_cats = int(rng.integers(0, 4)), int(rng.integers(1, 4))
    kinds = ["tree"] * n_trees + ["cat"] * n_cats
    bases = rng.uniform(h0 + 0.05, 1.08, len(kinds))
    inst = 0
    for i in np.argsort(bases, kind="stable"):
        inst += 1
        scale = 0.55 + 0.65 * (bases[i] - h0) / (1 - h0)
        draw = _tree if kinds[i] == "tree" else _cat
        draw(c, rng, float(bases[i]), float(scale), inst, sun)

    # Camera: exposure and colour cast per image, cloud shadows, slight blur, sensor noise.
    img = c.img
    if rng.random() < 0.2:
        shade = np.clip(_value_noise(rng, (size, size), size / 3) * 1.5, 0, 1) * rng.uniform(0.3, 0.55)
        img = img * (1 - shade * (c.v > h0))[..., None]
    gain = rng.uniform(0.8, 1.15)
    cast = 1 + rng.normal(0, 0.04, 3).astype(np.float32)
    img = _blur3(img * gain * cast)
    img = img + rng.uniform(0.01, 0.04) * rng.standard_normal(img.shape).astype(np.float32)
    image = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)

    # Void band: pixels just outside an object mix two classes after the blur (VOC's 255 border).
    mask = c.label.copy()
    objects = c.inst
    for k in c.instance_classes:  # per instance, so touching cats also get a border between them
        own = objects == k
        mask[_dilate(own) & ~own] = IGNORE_INDEX
    visible = {k: v for k, v in c.instance_classes.items() if (objects == k).any()}
    return Scene(image=image, mask=mask, instance_map=objects, instance_classes=visible)


# =====================================================================================================
# Writing and caching datasets
# =====================================================================================================
def _scene_seed(seed: int, split: str, index: int) -> int:
    """Independent seed per (dataset seed, split, index): val scenes do not change when n_train does."""
    return int(np.random.SeedSequence([seed, 0 if split == "train" else 1, index]).generate_state(1)[0])


def _meta(n_train: int, n_val: int, size: int, seed: int) -> dict[str, Any]:
    return {
        "generator": "helpers.data.render_scene",
        "generator_version": GENERATOR_VERSION,
        "n_train": n_train,
        "n_val": n_val,
        "size": size,
        "seed": seed,
        "classes": list(CLASSES),
    }


def make_scenes(
    root: str | os.PathLike, n_train: int, n_val: int, size: int = 64, seed: int = 0, *, progress: bool = True
) -> Path:
    """Render ``n_train + n_val`` scenes into ``root`` in the PASCAL VOC layout (see module docstring).

    Files are named ``train_000000`` / ``val_000000``; images are JPEG (quality 95, no chroma
    subsampling, so small cats keep their colour), masks palette PNGs. ``root/seglab.json`` records the
    parameters. Existing files with the same names are overwritten; use :func:`ensure_scenes` for a
    cached, atomically created copy.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.
    """
    for name, value in (("n_train", n_train), ("n_val", n_val)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"make_scenes: {name} must be a non-negative integer, got {value!r}")
    if n_train + n_val == 0:
        raise ValueError("make_scenes: n_train + n_val is 0; ask for at least one scene")
    from tqdm.auto import tqdm

    root = Path(root)
    images, masks = root / "JPEGImages", root / "SegmentationClass"
    sets = root / "ImageSets" / "Segmentation"
    for folder in (images, masks, sets):
        folder.mkdir(parents=True, exist_ok=True)
    palette = _png_palette()
    with tqdm(total=n_train + n_val, desc=f"rendering {n_train + n_val} scenes of {size}×{size}", disable=not progress) as bar:
        for split, n in (("train", n_train), ("val", n_val)):
            ids = [f"{split}_{i:06d}" for i in range(n)]
            for i, name in enumerate(ids):
                scene = render_scene(_scene_seed(seed, split, i), size)
                Image.fromarray(scene.image).save(images / f"{name}.jpg", quality=95, subsampling=0)
                png = Image.fromarray(scene.mask, mode="P")
                png.putpalette(palette)
                png.save(masks / f"{name}.png", optimize=False)
                bar.update()
            (sets / f"{split}.txt").write_text("".join(f"{name}\n" for name in ids))
    (root / _META_FILE).write_text(json.dumps(_meta(n_train, n_val, size, seed), indent=2) + "\n")
    return root


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / _META_FILE).read_text())
    except (OSError, ValueError):
        return None


def ensure_scenes(
    name: str = "scenes",
    n_train: int = 2000,
    n_val: int = 500,
    size: int = 64,
    seed: int = 0,
    *,
    progress: bool = True,
) -> Path:
    """Return the folder of an embedded scene dataset, generating it on first use.

    The folder is ``data_dir() / f"{name}-{size}px-{n_train}-{n_val}-seed{seed}"``, so labs asking for
    different sizes never overwrite each other. A cached folder is reused only when its ``seglab.json``
    matches these parameters and the current :data:`GENERATOR_VERSION`. Generation goes to a temporary
    folder next to the target, renamed into place when complete: two notebooks generating at once both
    end up reading one complete dataset, never a half-written one.

    Example::

        root = ensure_scenes()        # a few seconds the first time (about 9 CPU-s), instant afterwards
        train = SegmentationFolder(root, "train")
    """
    target = data_dir() / f"{name}-{size}px-{n_train}-{n_val}-seed{seed}"
    wanted = _meta(n_train, n_val, size, seed)
    if _read_meta(target) == wanted:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        make_scenes(tmp, n_train, n_val, size, seed, progress=progress)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is meant to be shared like data/
        for _attempt in range(5):
            if _read_meta(target) == wanted:  # another process finished first: use theirs
                return target
            if target.exists():  # stale (older generator or damaged): move aside, then delete
                stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                try:
                    os.replace(target, stale / "old")
                except OSError:
                    pass  # someone else moved it first
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.rename(tmp, target)  # atomic; fails if a complete copy appeared meanwhile
                return target
            except OSError:
                continue
        raise RuntimeError(f"could not move the generated dataset into {target} (is the folder writable?)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# =====================================================================================================
# Loading: VOC layout, Oxford-IIIT Pet
# =====================================================================================================
_MAKE_HINT = "create the embedded scenes with `python -m helpers.data make-scenes --root {root}` (or call helpers.data.ensure_scenes())"
_VOC_HINT = (
    "or download PASCAL VOC 2012 (VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/) "
    "and pass the folder that contains VOCdevkit/VOC2012"
)


def _find_voc_root(root: Path) -> Path:
    """Accept the VOC-layout folder itself, or a parent holding ``VOCdevkit/VOC2012`` or ``VOC2012``."""
    for candidate in (root, root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    return root


def _load_mask(path: Path) -> np.ndarray:
    """Read an index mask (palette 'P' or greyscale 'L'/'I' PNG) as an integer array."""
    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV"):
            raise ValueError(
                f"{path}: mask is an {im.mode} colour image; expected a palette ('P') or single-channel index "
                f"('L') PNG whose pixel values are class indices. Convert colours to indices first (for VOC: "
                f"use the SegmentationClass PNGs as distributed, not a re-saved RGB copy)."
            )
        if im.mode not in ("P", "L", "I", "I;16", "1"):
            raise ValueError(
                f"{path}: unsupported mask mode {im.mode!r}; expected a palette or greyscale PNG"
            )
        return np.array(im).astype(np.int64)


class SegmentationFolder(torch.utils.data.Dataset):
    """A segmentation dataset in the PASCAL VOC layout: the embedded scenes or a real VOC 2012 tree.

    Args:
        root: the folder holding ``JPEGImages``, ``SegmentationClass`` and ``ImageSets/Segmentation`` (for VOC
            2012 you may also pass its parent, or the folder containing ``VOCdevkit``).
        split: the name of a split file, ``ImageSets/Segmentation/<split>.txt`` ("train", "val", ...).
        transforms: optional joint transform ``(image, mask) -> (image, mask)`` called with a
            ``tv_tensors.Image`` (uint8, 3 x H x W) and a ``tv_tensors.Mask`` (int64, H x W), e.g.
            :func:`make_train_transforms`.
        classes: class names; default: read from ``seglab.json`` for generated scenes, else VOC's 21.
        cache: keep decoded samples in memory after their first read (the 64x64 scenes take ~16 KB
            each; decoding a JPEG and a PNG costs more than training a small model on them).

    Each item is ``(image, mask)``: a float32 tensor 3 x H x W in [0, 1] and an int64 tensor H x W of
    class indices with 255 for ignored pixels. Files are checked when read, and errors name the file.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
        classes: Sequence[str] | None = None,
        cache: bool = False,
    ):
        given = Path(root).expanduser()
        if not given.exists():
            raise FileNotFoundError(
                f"dataset root {given} does not exist: {_MAKE_HINT.format(root=given)}, {_VOC_HINT}."
            )
        self.root = _find_voc_root(given)
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            available = (
                sorted(p.stem for p in split_file.parent.glob("*.txt")) if split_file.parent.is_dir() else []
            )
            raise FileNotFoundError(
                f"split file {split_file} not found"
                + (f" (available splits: {', '.join(available)})" if available else "")
                + f". Expected the PASCAL VOC layout under {given}: {_MAKE_HINT.format(root=given)}, {_VOC_HINT}."
            )
        self.ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise ValueError(f"split file {split_file} is empty: it must list one image id per line")
        for folder in ("JPEGImages", "SegmentationClass"):
            if not (self.root / folder).is_dir():
                raise FileNotFoundError(f"{self.root / folder} is missing (expected by {split_file})")
        self.images = [self.root / "JPEGImages" / f"{i}.jpg" for i in self.ids]
        self.masks = [self.root / "SegmentationClass" / f"{i}.png" for i in self.ids]
        missing = [str(p) for pair in zip(self.images, self.masks) for p in pair if not p.is_file()]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise FileNotFoundError(
                f"{split_file} lists files that do not exist: {', '.join(missing[:3])}{more}"
            )
        if classes is None:
            meta = _read_meta(self.root)
            classes = meta["classes"] if meta and "classes" in meta else VOC_CLASSES
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.split = split
        self.transforms = transforms
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw sample as numpy arrays (uint8 H x W x 3 image, int64 H x W mask), validated."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image_path, mask_path = self.images[index], self.masks[index]
        with Image.open(image_path) as im:
            image = np.array(im.convert("RGB"))
        mask = _load_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but image {image_path} is "
                f"{image.shape[1]}x{image.shape[0]}; every mask must match its image's size"
            )
        bad = (mask >= self.num_classes) & (mask != IGNORE_INDEX) | (mask < 0)
        if bad.any():
            values = sorted(set(np.unique(mask[bad]).tolist()))[:10]
            raise ValueError(
                f"{mask_path}: mask values {values} are not class indices 0..{self.num_classes - 1} "
                f"({', '.join(self.classes)}) or {IGNORE_INDEX} (ignore)"
            )
        if self._cache is not None:
            image.setflags(write=False)  # shared by every later read: transforms must not modify it
            mask = mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.int64)  # 8x less memory
            mask.setflags(write=False)
            self._cache[index] = (image, mask)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.read(index)
        return _finish(image, mask, self.transforms)

    def __repr__(self) -> str:
        return f"SegmentationFolder(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, classes={self.num_classes})"


def _finish(
    image: np.ndarray, mask: np.ndarray, transforms: Callable | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """numpy sample -> (float image in [0, 1], int64 mask), through the optional joint transform."""
    from torchvision import tv_tensors

    # copies: the arrays may be cached (read-only) and transforms may work in place
    img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
    msk = tv_tensors.Mask(torch.from_numpy(np.array(mask, dtype=np.int64)))
    if transforms is not None:
        img, msk = transforms(img, msk)
    img = torch.as_tensor(img).as_subclass(torch.Tensor)
    if not img.is_floating_point():
        img = img.float().div_(255)
    return img, torch.as_tensor(msk).as_subclass(torch.Tensor).long()


class OxfordPetSegmentation(torch.utils.data.Dataset):
    """Oxford-IIIT Pet (cats and dogs) as a two-class segmentation dataset, for users who downloaded it.

    Wraps ``torchvision.datasets.OxfordIIITPet(root, split, target_types="segmentation", download=False)``
    (nothing is downloaded here: fetch it once yourself with ``download=True`` if you want it). The trimap
    (1 = pet, 2 = background, 3 = border) becomes ``pet`` = 1, ``background`` = 0 and border = 255.

    Args:
        root: the folder containing ``oxford-iiit-pet/`` (or that folder itself).
        split: "trainval" or "test" ("train" and "val" are accepted as aliases).
        transforms: joint transform as for :class:`SegmentationFolder`.
    """

    classes = PET_CLASSES
    num_classes = len(PET_CLASSES)
    _TRIMAP_TO_CLASS = np.array([IGNORE_INDEX, 1, 0, IGNORE_INDEX], dtype=np.int64)

    def __init__(self, root: str | os.PathLike, split: str = "trainval", transforms: Callable | None = None):
        from torchvision.datasets import OxfordIIITPet

        given = Path(root).expanduser()
        parent = given.parent if given.name == "oxford-iiit-pet" else given
        base = parent / "oxford-iiit-pet"
        split = {"train": "trainval", "val": "test"}.get(split, split)
        if split not in ("trainval", "test"):
            raise ValueError(f"split must be 'trainval' or 'test' (or 'train'/'val'), got {split!r}")
        for needed in (
            base / "images",
            base / "annotations" / "trimaps",
            base / "annotations" / f"{split}.txt",
        ):
            if not needed.exists():
                raise FileNotFoundError(
                    f"{needed} not found: Oxford-IIIT Pet is not downloaded under {parent}. Get it once with "
                    f"torchvision.datasets.OxfordIIITPet({str(parent)!r}, target_types='segmentation', "
                    f"download=True) or from https://www.robots.ox.ac.uk/~vgg/data/pets/ (images.tar.gz, "
                    f"annotations.tar.gz), unpacked into {base}"
                )
        if not (base / "annotations" / f"{split}.txt").read_text().strip():
            raise ValueError(f"split file {base / 'annotations' / f'{split}.txt'} is empty")
        self._ds = OxfordIIITPet(parent, split=split, target_types="segmentation", download=False)
        self.root, self.split, self.transforms = parent, split, transforms

    def __len__(self) -> int:
        return len(self._ds)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw sample as numpy arrays (uint8 image, int64 class mask), validated."""
        image_path, trimap_path = Path(self._ds._images[index]), Path(self._ds._segs[index])
        for p in (image_path, trimap_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p} is listed in the {self.split} split but does not exist")
        with Image.open(image_path) as im:
            image = np.array(im.convert("RGB"))
        trimap = _load_mask(trimap_path)
        if trimap.shape != image.shape[:2]:
            raise ValueError(
                f"{trimap_path}: trimap is {trimap.shape[1]}x{trimap.shape[0]} (WxH) but image {image_path} is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        bad = (trimap < 1) | (trimap > 3)
        if bad.any():
            raise ValueError(
                f"{trimap_path}: trimap values {sorted(np.unique(trimap[bad]).tolist())[:10]} are not "
                f"1 (pet), 2 (background) or 3 (border)"
            )
        return image, self._TRIMAP_TO_CLASS[trimap]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.read(index)
        return _finish(image, mask, self.transforms)


# =====================================================================================================
# Joint transforms (torchvision.transforms.v2 + tv_tensors.Mask)
# =====================================================================================================
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
            v2.ToDtype(
                {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True
            ),
        ]
    )


def make_eval_transforms(size: int | None = None):
    """Deterministic evaluation transform: optional resize of the shorter side to ``size`` then a
    centre crop to ``size`` x ``size`` (so images of different sizes batch together); masks nearest.
    Output: float image in [0, 1], int64 mask."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    steps: list[Any] = []
    if size is not None:
        steps += [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    steps.append(
        v2.ToDtype(
            {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True
        )
    )
    return v2.Compose(steps)


# =====================================================================================================
# Command line
# =====================================================================================================
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helpers.data make-scenes --root data/scenes --n-train 2000 --n-val 500``"""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.data", description="Create the labs' embedded segmentation dataset."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser(
        "make-scenes",
        help="render procedural outdoor scenes in the PASCAL VOC layout",
        description="Render procedural outdoor scenes (classes: "
        + ", ".join(CLASSES)
        + ") in the PASCAL VOC layout.",
    )
    make.add_argument(
        "--root", type=Path, default=Path("data/scenes"), help="output folder (default: data/scenes)"
    )
    make.add_argument("--n-train", type=int, default=2000, help="number of training scenes (default: 2000)")
    make.add_argument("--n-val", type=int, default=500, help="number of validation scenes (default: 500)")
    make.add_argument("--size", type=int, default=64, help="image height and width in pixels (default: 64)")
    make.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    make.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "make-scenes":
        try:
            root = make_scenes(
                args.root, args.n_train, args.n_val, args.size, args.seed, progress=not args.quiet
            )
        except ValueError as err:
            parser.error(str(err))
        print(f"wrote {args.n_train} train + {args.n_val} val scenes to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
