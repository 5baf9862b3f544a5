"""Pictures for the labs: coloured masks, overlays, prediction grids, confusion matrices, and the widgets.

Plotting functions return a :class:`matplotlib.figure.Figure`. In a notebook the figure is shown once
where the function is called (also when it is the cell's last line); in a script, save it with
``fig.savefig("out.png")``. Figures are not registered with ``pyplot``, so they never pile up in memory.

The widgets (:func:`dataset_browser`, :class:`LivePlot`, :func:`transposed_conv_stepper`) live in
:mod:`helpers.widgets` and are re-exported here; :func:`colorize` and :func:`overlay` in :mod:`helpers.colors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from helpers.colors import colorize, image_array, overlay
from helpers.labels import CLASSES, IGNORE_COLOR, IGNORE_INDEX, color_table
from helpers.notebook import new_figure, present
from helpers.widgets import LivePlot, dataset_browser, transposed_conv_stepper

__all__ = [
    "colorize",
    "overlay",
    "legend_handles",
    "show_predictions",
    "plot_confusion_matrix",
    "dataset_browser",
    "LivePlot",
    "transposed_conv_stepper",
]


def legend_handles(
    class_names: Sequence[str] = CLASSES, palette: Sequence[Sequence[int]] | None = None
) -> list:
    """Matplotlib legend patches, one per class, plus "ignore" (255)."""
    lut = color_table(palette)
    handles = [Patch(facecolor=lut[i] / 255, edgecolor="k", label=name) for i, name in enumerate(class_names)]
    handles.append(
        Patch(facecolor=np.array(IGNORE_COLOR) / 255, edgecolor="k", label=f"ignore ({IGNORE_INDEX})")
    )
    return handles


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
def _draw_rows(axes: np.ndarray, ims: list, tgs: list, pds: list, palette: Any, alpha: float | None) -> None:
    """One row per sample: the photo, then the truth (and the prediction) coloured or over the photo."""
    headers = ["image", "truth", "prediction"]
    for row, (img, tgt) in enumerate(zip(ims, tgs)):
        picture = image_array(img)
        panels = [picture, tgt] + ([pds[row]] if pds else [])
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            if col == 0:
                ax.imshow(picture, interpolation="nearest")
            elif alpha is None:
                ax.imshow(colorize(panel, palette), interpolation="nearest")
            else:
                ax.imshow(overlay(picture, panel, alpha, palette), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(headers[col])


def show_predictions(
    images: Any,
    targets: Any,
    preds: Any = None,
    class_names: Sequence[str] = CLASSES,
    *,
    palette: Sequence[Sequence[int]] | None = None,
    max_rows: int = 6,
    alpha: float | None = None,
    title: str | None = None,
) -> Figure:
    """Grid with one row per sample: image | truth | prediction (the last column only with ``preds``).

    Args:
        images: N x 3 x H x W float tensor (or a list of images).
        targets: N x H x W class maps; preds: the same for the predictions (class maps, or N x C x H x W
            scores which are arg-maxed).
        alpha: if given, the masks are drawn over the image with this opacity instead of on their own.
        max_rows: at most this many samples are drawn.
    """
    if isinstance(preds, torch.Tensor) and preds.is_floating_point() and preds.dim() == 4:
        preds = preds.argmax(dim=1)
    ims, tgs, pds = (
        list(images)[:max_rows],
        list(targets)[:max_rows],
        list(preds)[:max_rows] if preds is not None else [],
    )
    if not ims:
        raise ValueError("show_predictions needs at least one image")
    if len(tgs) != len(ims) or (preds is not None and len(pds) != len(ims)):
        raise ValueError(
            f"got {len(list(images))} images, {len(list(targets))} targets"
            + (f" and {len(list(preds))} predictions" if preds is not None else "")
            + "; they must match"
        )
    cols = 3 if preds is not None else 2
    fig = new_figure(2.2 * cols, 2.2 * len(ims) + 0.5)
    axes = np.asarray(fig.subplots(len(ims), cols, squeeze=False))
    _draw_rows(axes, ims, tgs, pds, palette, alpha)
    fig.legend(
        handles=legend_handles(class_names, palette),
        loc="outside lower center",
        ncol=min(6, len(class_names) + 1),
        fontsize=8,
        frameon=False,
    )
    if title:
        fig.suptitle(title)
    return present(fig)


def plot_confusion_matrix(
    cm: Any, class_names: Sequence[str] = CLASSES, *, normalize: bool = True, title: str | None = None
) -> Figure:
    """Heatmap of a confusion matrix (rows = truth, columns = prediction, as in :mod:`helpers.metrics`).

    With ``normalize`` each row is divided by its sum, so the diagonal reads as per-class recall and a
    rare class is as visible as a frequent one; the cells show the percentage and the raw count.
    """
    counts = np.asarray(cm.detach().cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"expected a square C x C confusion matrix, got shape {counts.shape}")
    if len(class_names) != counts.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {counts.shape[0]} x {counts.shape[0]} matrix")
    rows = counts.sum(axis=1, keepdims=True)
    shown = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) if normalize else counts
    n = counts.shape[0]
    fig = new_figure(1.0 + 0.9 * n, 0.6 + 0.8 * n)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class" if normalize else "pixels")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    top = shown.max() if shown.size else 1
    if n <= 12:
        for t in range(n):
            for p in range(n):
                text = f"{shown[t, p]:.0%}\n{int(counts[t, p])}" if normalize else f"{int(counts[t, p])}"
                ax.text(
                    p,
                    t,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shown[t, p] > 0.6 * top else "black",
                )
    ax.set_title(title or "confusion matrix")
    return present(fig)
