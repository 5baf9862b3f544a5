"""The live training plot: loss and mIoU curves that redraw in place while a notebook cell trains."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from helpers import notebook

__all__ = ["LivePlot"]


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
        self.in_notebook = notebook.kernel() is not None
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
        fig = notebook.new_figure(4.0 * len(self.metrics), 2.8)
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

        png = Image(data=notebook.png_bytes(self.figure()), format="png")
        if self._handle is None:
            self._handle = display(png, display_id=True)
        else:
            self._handle.update(png)

    def close(self) -> None:
        """Finish (nothing to release: figures are not kept by pyplot)."""
