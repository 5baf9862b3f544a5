"""Data for the labs, in one import: class constants, the scene renderer, the cached scene datasets, the
VOC and Pet loaders and the joint transforms; and the command line that generates scenes.

Each job has its own module, re-exported here so that ``from helpers.data import ...`` serves every lab:

==========================  =====================================================================
:mod:`helpers.labels`       class names, palette, ``IGNORE_INDEX`` (255), the VOC colour map
:mod:`helpers.render`       :func:`render_scene`: one procedural outdoor scene and its label map
:mod:`helpers.scenes`       :func:`make_scenes` (VOC layout on disk), :func:`ensure_scenes` (cache)
:mod:`helpers.datasets`     :class:`SegmentationFolder` (VOC layout), :class:`OxfordPetSegmentation`
:mod:`helpers.transforms`   :func:`make_train_transforms`, :func:`make_eval_transforms`
==========================  =====================================================================

From a shell: ``python -m helpers.data make-scenes --root data/scenes``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from helpers import datasets, labels, render, scenes, transforms
from helpers.config import data_dir

# The facade: every public name of the five modules, so that notebooks keep importing from helpers.data.
from helpers.datasets import *  # noqa: F403
from helpers.labels import *  # noqa: F403
from helpers.render import *  # noqa: F403
from helpers.scenes import *  # noqa: F403
from helpers.transforms import *  # noqa: F403

__all__ = [
    *labels.__all__,
    *render.__all__,
    *scenes.__all__,
    *datasets.__all__,
    *transforms.__all__,
    "data_dir",
    "main",
]


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
        + ", ".join(labels.CLASSES)
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
            root = scenes.make_scenes(
                args.root, args.n_train, args.n_val, args.size, args.seed, progress=not args.quiet
            )
        except ValueError as err:
            parser.error(str(err))
        print(f"wrote {args.n_train} train + {args.n_val} val scenes to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
