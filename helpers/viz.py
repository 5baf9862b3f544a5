"""Pictures for the labs: coloured masks, overlays, prediction grids, confusion matrices and widgets.

Plotting functions return a :class:`matplotlib.figure.Figure`. In a notebook the figure is shown once
where the function is called (also when it is the cell's last line); in a script, save it with
``fig.savefig("out.png")``. Figures are not registered with ``pyplot``, so they never pile up in memory.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from helpers.data import CLASSES, IGNORE_COLOR, IGNORE_INDEX, PALETTE, voc_colormap

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


# --------------------------------------------------------------------------------------------------
# notebook plumbing
# --------------------------------------------------------------------------------------------------
def _kernel() -> Any:
    """The running IPython kernel shell (Jupyter, Colab), or None in plain Python / a terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class _NotebookFigure(Figure):
    """A Figure shown once in a notebook when drawn; echoing it as the cell's value does not repeat it."""

    _shown_in: int | None = None

    def _ipython_display_(self) -> None:
        shell = _kernel()
        if shell is not None and self._shown_in == shell.execution_count:
            return  # already displayed by the call in this very cell
        from IPython.display import Image, display

        display(Image(data=_png(self), format="png"))


def _new_figure(width: float, height: float) -> _NotebookFigure:
    return _NotebookFigure(figsize=(width, height), dpi=100, layout="constrained")


def _present(fig: _NotebookFigure) -> _NotebookFigure:
    shell = _kernel()
    if shell is not None:
        from IPython.display import Image, display

        display(Image(data=_png(fig), format="png"))
        fig._shown_in = shell.execution_count
    return fig


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------
def _lut(palette: Sequence[Sequence[int]] | None) -> np.ndarray:
    """256 x 3 colour table: the given palette (default: the scene classes), VOC's colours beyond it."""
    lut = voc_colormap(256)
    colours = np.asarray(PALETTE if palette is None else palette, dtype=np.uint8).reshape(-1, 3)
    lut[: len(colours)] = colours
    lut[IGNORE_INDEX] = IGNORE_COLOR
    return lut


def _mask_array(mask: Any) -> np.ndarray:
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


def _image_array(image: Any) -> np.ndarray:
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
    return _lut(palette)[_mask_array(mask)]


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
    img, m = _image_array(image), _mask_array(mask)
    if img.shape[:2] != m.shape:
        raise ValueError(f"image is {img.shape[0]}x{img.shape[1]} but mask is {m.shape[0]}x{m.shape[1]}")
    paint = m != IGNORE_INDEX
    if classes is not None:
        paint &= np.isin(m, np.asarray(list(classes), dtype=np.int64))
    colours = _lut(palette)[m].astype(np.float32)
    out = img.astype(np.float32)
    out[paint] = (1 - alpha) * out[paint] + alpha * colours[paint]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def legend_handles(
    class_names: Sequence[str] = CLASSES, palette: Sequence[Sequence[int]] | None = None
) -> list:
    """Matplotlib legend patches, one per class, plus "ignore" (255)."""
    lut = _lut(palette)
    handles = [Patch(facecolor=lut[i] / 255, edgecolor="k", label=name) for i, name in enumerate(class_names)]
    handles.append(
        Patch(facecolor=np.array(IGNORE_COLOR) / 255, edgecolor="k", label=f"ignore ({IGNORE_INDEX})")
    )
    return handles


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------
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
    fig = _new_figure(2.2 * cols, 2.2 * len(ims) + 0.5)
    axes = np.asarray(fig.subplots(len(ims), cols, squeeze=False))
    headers = ["image", "truth", "prediction"]
    for row, (img, tgt) in enumerate(zip(ims, tgs)):
        picture = _image_array(img)
        panels = [picture, tgt] + ([pds[row]] if preds is not None else [])
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
    fig.legend(
        handles=legend_handles(class_names, palette),
        loc="outside lower center",
        ncol=min(6, len(class_names) + 1),
        fontsize=8,
        frameon=False,
    )
    if title:
        fig.suptitle(title)
    return _present(fig)


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
    fig = _new_figure(1.0 + 0.9 * n, 0.6 + 0.8 * n)
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
    return _present(fig)


# --------------------------------------------------------------------------------------------------
# widgets
# --------------------------------------------------------------------------------------------------
def _to_png(array: np.ndarray, zoom: int) -> bytes:
    from PIL import Image

    im = Image.fromarray(array)
    if zoom > 1:
        im = im.resize((im.width * zoom, im.height * zoom), Image.NEAREST)
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()


def dataset_browser(
    dataset: Any,
    class_names: Sequence[str] | None = None,
    *,
    palette: Sequence[Sequence[int]] | None = None,
    zoom: int | None = None,
):
    """An ipywidgets browser over a segmentation dataset: a slider over samples, the overlay's opacity, and
    one toggle per class (untick a class to see the photo under it).

    Shows image | overlay | mask side by side, with the class legend and each class's share of the
    sample's pixels. ``dataset[i]`` must return ``(image, mask)`` as :class:`helpers.data.SegmentationFolder`
    does. Returns the widget (display it, or make it the cell's last line).
    """
    import ipywidgets as widgets

    if len(dataset) == 0:
        raise ValueError("dataset_browser: the dataset is empty")
    names = tuple(class_names or getattr(dataset, "classes", CLASSES))
    lut = _lut(palette)
    sample = widgets.IntSlider(
        value=0, min=0, max=len(dataset) - 1, description="sample", continuous_update=False
    )
    opacity = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity")
    toggles = [
        widgets.ToggleButton(
            value=True, description=name, tooltip=f"show or hide {name}", layout=widgets.Layout(width="auto")
        )
        for name in names
    ]
    swatches = [
        widgets.HTML(
            f'<span style="display:inline-block;width:14px;height:14px;margin-top:8px;border:1px solid #333;'
            f'background:#{"".join(f"{int(v):02x}" for v in lut[i])}"></span>'
        )
        for i in range(len(names))
    ]
    picture = widgets.Image(format="png")
    info = widgets.HTML()
    cache: dict[str, Any] = {}

    def redraw(*_: Any) -> None:
        if cache.get("index") != sample.value:
            image, mask = dataset[sample.value]
            cache.update(index=sample.value, image=_image_array(image), mask=_mask_array(mask))
        img, m = cache["image"], cache["mask"]
        shown = [i for i, t in enumerate(toggles) if t.value]
        labelled = (np.isin(m, shown) | (m == IGNORE_INDEX))[..., None]
        mask_panel = np.where(labelled, lut[m], img)  # untoggled classes show the photo
        strip = np.concatenate(
            [img, overlay(img, m, opacity.value, palette, classes=shown), mask_panel], axis=1
        )
        picture.value = _to_png(strip, zoom or max(1, 256 // max(img.shape[:2])))
        total = max(int((m != IGNORE_INDEX).sum()), 1)
        shares = ", ".join(
            f"{n} {int((m == i).sum()) / total:.0%}" for i, n in enumerate(names) if (m == i).any()
        )
        info.value = f"<b>#{sample.value}</b> of {len(dataset)} - {img.shape[1]}x{img.shape[0]} px - {shares}"

    for w in (sample, opacity, *toggles):
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox(
        [
            widgets.HBox([sample, opacity]),
            widgets.HBox([w for pair in zip(swatches, toggles) for w in pair]),
            picture,
            info,
        ],
    )
    box.controls = {"sample": sample, "opacity": opacity, "classes": toggles, "image": picture, "info": info}
    return box


class LivePlot:
    """Loss and mIoU curves that redraw in place while a notebook cell trains; plain lines elsewhere.

    ``fit`` drives it; by hand::

        plot = LivePlot()
        for step in ...:
            plot.update(step, loss=..., miou=...)
        plot.close()
    """

    def __init__(self, metrics: Sequence[str] = ("loss", "miou"), title: str | None = None):
        self.metrics = tuple(metrics)
        self.title = title
        self.steps: dict[str, list[float]] = {m: [] for m in self.metrics}
        self.values: dict[str, list[float]] = {m: [] for m in self.metrics}
        self.in_notebook = _kernel() is not None
        self._handle = None
        self.lines: list[str] = []  # what was printed outside notebooks

    def update(self, step: int, **values: float) -> None:
        """Add one point per named metric (unknown names are ignored, NaN values are skipped)."""
        for name, value in values.items():
            if name in self.values and value is not None and not math.isnan(float(value)):
                self.steps[name].append(step)
                self.values[name].append(float(value))
        if self.in_notebook:
            self._draw()
        else:
            parts = [
                f"{k} {float(v):.4f}" for k, v in values.items() if v is not None and not math.isnan(float(v))
            ]
            line = f"step {step}: " + ", ".join(parts)
            self.lines.append(line)
            from tqdm.auto import tqdm

            tqdm.write(line)  # does not break a running progress bar

    def extend(self, history: dict) -> None:
        """Add the points of an earlier :class:`helpers.train.History` (when resuming) without printing."""
        for i, step in enumerate(history.get("step", [])):
            for name in self.metrics:
                values = history.get(name, [])
                if i < len(values) and not math.isnan(values[i]):
                    self.steps[name].append(step)
                    self.values[name].append(values[i])

    def figure(self) -> Figure:
        """The current curves as a figure."""
        fig = _new_figure(4.0 * len(self.metrics), 2.8)
        axes = np.atleast_1d(fig.subplots(1, len(self.metrics)))
        for ax, name in zip(axes, self.metrics):
            ax.plot(self.steps[name], self.values[name], marker="o", markersize=3)
            ax.set_xlabel("step")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            if name in ("miou", "pixel_acc"):
                ax.set_ylim(0, 1)
        if self.title:
            fig.suptitle(self.title)
        return fig

    def _draw(self) -> None:
        from IPython.display import Image, display

        png = Image(data=_png(self.figure()), format="png")
        if self._handle is None:
            self._handle = display(png, display_id=True)
        else:
            self._handle.update(png)

    def close(self) -> None:
        """Finish (nothing to release: figures are not kept by pyplot)."""


# The lab-03 transposed-convolution stepper lives in its own module; viz re-exports it.
try:
    from helpers.stepper import transposed_conv_stepper  # noqa: E402,F401
except ImportError:  # pragma: no cover - before that module exists
    pass
