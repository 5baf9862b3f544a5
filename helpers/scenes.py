"""The embedded dataset on disk: :func:`make_scenes` writes rendered scenes in the PASCAL VOC layout,
:func:`ensure_scenes` caches one copy per parameter set.

The layout, read by :class:`helpers.datasets.SegmentationFolder` exactly like a real VOC 2012 tree::

    <root>/JPEGImages/<id>.jpg                 RGB photo
    <root>/SegmentationClass/<id>.png          palette PNG: pixel value = class index, 255 = ignore
    <root>/ImageSets/Segmentation/train.txt    one <id> per line (and val.txt)
    <root>/seglab.json                         how it was generated (META_FILE), class names included

:func:`ensure_scenes` generates a dataset once into :func:`helpers.config.data_dir` and reuses it:
``$SEGLAB_DATA`` if set, else the repository's ``data/`` folder when the package is installed from a checkout,
else ``~/.cache/seglabs``. From a shell: ``python -m helpers.data make-scenes --root data/scenes``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from helpers.config import META_FILE, data_dir
from helpers.labels import CLASSES, png_palette
from helpers.render import GENERATOR_VERSION, render_scene

__all__ = ["META_FILE", "make_scenes", "ensure_scenes", "read_meta", "is_generated"]


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
    palette = png_palette()
    with tqdm(
        total=n_train + n_val,
        desc=f"rendering {n_train + n_val} scenes of {size}×{size}",
        disable=not progress,
    ) as bar:
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
    (root / META_FILE).write_text(json.dumps(_meta(n_train, n_val, size, seed), indent=2) + "\n")
    return root


def read_meta(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed :data:`META_FILE` of a dataset folder, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((Path(folder) / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_generated(folder: str | os.PathLike) -> bool:
    """True for a folder written by :func:`make_scenes` (it carries a :data:`META_FILE`)."""
    return (Path(folder) / META_FILE).is_file()


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
    if read_meta(target) == wanted:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        make_scenes(tmp, n_train, n_val, size, seed, progress=progress)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is meant to be shared like data/
        return _move_into_place(tmp, target, wanted)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, target: Path, wanted: dict[str, Any]) -> Path:
    """Rename the complete dataset ``tmp`` to ``target``, unless another process got there first."""
    for _attempt in range(5):
        if read_meta(target) == wanted:  # another process finished first: use theirs
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
