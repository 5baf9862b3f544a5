"""The dataset browser: an ipywidgets slider over the samples of a segmentation dataset (lab 01)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from helpers.colors import color_table, image_array, mask_array, overlay
from helpers.labels import CLASSES, IGNORE_INDEX

__all__ = ["dataset_browser"]


def _to_png(array: np.ndarray, zoom: int) -> bytes:
    from PIL import Image

    im = Image.fromarray(array)
    if zoom > 1:
        im = im.resize((im.width * zoom, im.height * zoom), Image.NEAREST)
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()


def _controls(n: int, names: Sequence[str], lut: np.ndarray) -> dict[str, Any]:
    """The browser's widgets: sample slider, opacity slider, one toggle and colour swatch per class."""
    import ipywidgets as widgets

    def swatch(rgb: np.ndarray) -> Any:
        colour = "".join(f"{int(v):02x}" for v in rgb)
        return widgets.HTML(
            '<span style="display:inline-block;width:14px;height:14px;margin-top:8px;border:1px solid #333;'
            f'background:#{colour}"></span>'
        )

    return {
        "sample": widgets.IntSlider(value=0, min=0, max=n - 1, description="sample", continuous_update=False),
        "opacity": widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity"),
        "classes": [
            widgets.ToggleButton(
                value=True,
                description=name,
                tooltip=f"show or hide {name}",
                layout=widgets.Layout(width="auto"),
            )
            for name in names
        ],
        "swatches": [swatch(lut[i]) for i in range(len(names))],
        "image": widgets.Image(format="png"),
        "info": widgets.HTML(),
    }


class _Redraw:
    """Redraws the browser's picture and caption from the current control values (a widget callback)."""

    def __init__(self, dataset: Any, names: Sequence[str], palette: Any, zoom: int | None, controls: dict):
        self.dataset, self.names, self.palette, self.zoom, self.c = dataset, names, palette, zoom, controls
        self.lut = color_table(palette)
        self.index, self.image, self.mask = None, None, None

    def _load(self, index: int) -> None:
        if self.index != index:  # moving the opacity or a toggle must not re-read the sample
            image, mask = self.dataset[index]
            self.index, self.image, self.mask = index, image_array(image), mask_array(mask)

    def __call__(self, *_: Any) -> None:
        c = self.c
        self._load(c["sample"].value)
        img, m = self.image, self.mask
        shown = [i for i, t in enumerate(c["classes"]) if t.value]
        labelled = (np.isin(m, shown) | (m == IGNORE_INDEX))[..., None]
        mask_panel = np.where(labelled, self.lut[m], img)  # untoggled classes show the photo
        blended = overlay(img, m, c["opacity"].value, self.palette, classes=shown)
        strip = np.concatenate([img, blended, mask_panel], axis=1)
        c["image"].value = _to_png(strip, self.zoom or max(1, 256 // max(img.shape[:2])))
        total = max(int((m != IGNORE_INDEX).sum()), 1)
        shares = ", ".join(
            f"{n} {int((m == i).sum()) / total:.0%}" for i, n in enumerate(self.names) if (m == i).any()
        )
        size = f"{img.shape[1]}x{img.shape[0]} px"
        c["info"].value = f"<b>#{self.index}</b> of {len(self.dataset)} - {size} - {shares}"


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
    c = _controls(len(dataset), names, color_table(palette))
    redraw = _Redraw(dataset, names, palette, zoom, c)
    for w in (c["sample"], c["opacity"], *c["classes"]):
        w.observe(redraw, names="value")
    redraw()
    legend = [w for pair in zip(c["swatches"], c["classes"]) for w in pair]
    box = widgets.VBox(
        [widgets.HBox([c["sample"], c["opacity"]]), widgets.HBox(legend), c["image"], c["info"]]
    )
    box.controls = {k: c[k] for k in ("sample", "opacity", "classes", "image", "info")}
    return box
