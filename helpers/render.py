"""The procedural outdoor scenes: :func:`render_scene` draws one photo and its label map.

The lecture's running example labels every pixel of an outdoor photo as GRASS, CAT, TREE or SKY. The labs
need thousands of such images without a download, so this module draws them (sky with clouds, hills, grass
with texture, trees, several cats occluding each other and the trees). The classes are the lecture's four
plus VOC's ``background`` for everything else (distant hills, paths, rocks): a real label map always needs a
class for "none of the above", and keeping index 0 for it makes the scenes read exactly like VOC masks. As in
VOC, a thin band around every object (tree, cat) is labelled 255 ("void"): those pixels blend two classes
after the camera blur, so no label is right for them, and losses and metrics skip them.

The scenes are built to *need context*: colours overlap across classes (grey and brown cats against brown
trunks and grey rocks, dark trees against shadowed grass, bright grass against a hazy sky, per-image
lighting, colour casts, shadows and noise). A classifier that looks at one pixel's colour plateaus near
0.65 mIoU while a small fully-convolutional network passes 0.90 (see ``benchmarks/README.md``).
:mod:`helpers.scenes` writes them to disk in the PASCAL VOC layout.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from helpers.labels import BACKGROUND, CAT, GRASS, IGNORE_INDEX, SKY, TREE

__all__ = ["GENERATOR_VERSION", "Scene", "render_scene"]

GENERATOR_VERSION = 3
"""Bumped whenever :func:`render_scene` changes, so cached datasets are regenerated."""


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
