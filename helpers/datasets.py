"""Segmentation datasets: the PASCAL VOC layout (the embedded scenes or a real VOC 2012 tree) and
Oxford-IIIT Pet. Both return ``(float image 3 x H x W in [0, 1], int64 mask H x W)`` and expose their class
names as ``classes``. Nothing is ever downloaded; files are checked when read and errors name the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from helpers.labels import IGNORE_INDEX, PET_CLASSES, VOC_CLASSES
from helpers.scenes import read_meta

__all__ = ["SegmentationFolder", "OxfordPetSegmentation"]

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


def _read_split(root: Path, given: Path, split: str) -> list[str]:
    """The image ids listed in ``root/ImageSets/Segmentation/<split>.txt``, with errors naming the file."""
    split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        available = (
            sorted(p.stem for p in split_file.parent.glob("*.txt")) if split_file.parent.is_dir() else []
        )
        raise FileNotFoundError(
            f"split file {split_file} not found"
            + (f" (available splits: {', '.join(available)})" if available else "")
            + f". Expected the PASCAL VOC layout under {given}: {_MAKE_HINT.format(root=given)}, {_VOC_HINT}."
        )
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"split file {split_file} is empty: it must list one image id per line")
    return ids


def _check_listed_files(root: Path, split: str, images: list[Path], masks: list[Path]) -> None:
    """Every image and mask a split lists must exist."""
    split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    for folder in ("JPEGImages", "SegmentationClass"):
        if not (root / folder).is_dir():
            raise FileNotFoundError(f"{root / folder} is missing (expected by {split_file})")
    missing = [str(p) for pair in zip(images, masks) for p in pair if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(f"{split_file} lists files that do not exist: {', '.join(missing[:3])}{more}")


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


def _read_pair(image_path: Path, mask_path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image and its index mask (``what``: "mask", "trimap") as arrays, checked to be the same size."""
    with Image.open(image_path) as im:
        image = np.array(im.convert("RGB"))
    mask = _load_mask(mask_path)
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"{mask_path}: {what} is {mask.shape[1]}x{mask.shape[0]} (WxH) but image {image_path} is "
            f"{image.shape[1]}x{image.shape[0]}; every {what} must match its image's size"
        )
    return image, mask


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
            ``classes_declared`` says whether they were given or read (True) or VOC's assumed (False).
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
        self.ids = _read_split(self.root, given, split)
        self.images = [self.root / "JPEGImages" / f"{i}.jpg" for i in self.ids]
        self.masks = [self.root / "SegmentationClass" / f"{i}.png" for i in self.ids]
        _check_listed_files(self.root, split, self.images, self.masks)
        meta = read_meta(self.root) or {}
        self.classes_declared = classes is not None or "classes" in meta
        self.classes = tuple(classes if classes is not None else meta.get("classes", VOC_CLASSES))
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
        mask_path = self.masks[index]
        image, mask = _read_pair(self.images[index], mask_path, "mask")
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
    classes_declared = True
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
        image, trimap = _read_pair(image_path, trimap_path, "trimap")
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
