"""A slider that builds a transposed convolution one input position at a time (lab 03).

The lecture draws a transposed convolution as "each input value scales the kernel, the scaled kernel is
written into the output, overlaps are summed, then the padding is cropped". This widget animates exactly
that picture for one channel::

    from helpers.viz import transposed_conv_stepper
    transposed_conv_stepper(torch.tensor([[1., 2.], [3., 4.]]), torch.ones(3, 3),
                            stride=2, padding=1, output_padding=1)

Four panels per step: the input with the current position framed, the kernel scaled by that input value,
the *uncropped* canvas holding the running sums (the scaled kernel's footprint framed, the part that
survives the crop dashed), and the cropped output so far.

The widget necessarily adds up a transposed convolution to draw it; that arithmetic stays inside the
drawing code on purpose. Nothing here is a reusable transposed-convolution function: lab 03 asks students
to write that themselves.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["TransposedConvStepper", "transposed_conv_stepper"]

# Above these sizes the numbers no longer fit in the cells; colours alone carry the picture.
_ANNOTATE_MAX_CELLS = 12


def _as_2d(name: str, value: Any) -> np.ndarray:
    """One channel as a float 2-D array; accepts H×W, 1×H×W or 1×1×H×W tensors, arrays or nested lists."""
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"transposed_conv_stepper: `{name}` must be a 2-D tensor or array of numbers ({err})"
        ) from None
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(
            f"transposed_conv_stepper: `{name}` must be one channel, H×W (or 1×H×W, 1×1×H×W), "
            f"got shape {tuple(np.shape(value))}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"transposed_conv_stepper: `{name}` contains NaN or infinite values")
    return array


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"transposed_conv_stepper: `{name}` must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"transposed_conv_stepper: `{name}` must be >= {minimum}, got {value}")
    return int(value)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if value != 0 else "0"


class TransposedConvStepper(widgets.VBox):
    """The widget returned by :func:`transposed_conv_stepper` (a ``VBox``).

    Attributes for programmatic use and tests: ``slider`` (the input position, row-major), ``play`` (animates
    the slider), ``caption`` (what the current step does, as HTML), ``output`` (the ``Output`` widget showing
    the figure), ``figure`` (the matplotlib figure of the current step) and ``png`` (its rendered bytes).
    """

    def __init__(self, x: Any, weight: Any, stride: int, padding: int, output_padding: int, dilation: int):
        self._x = _as_2d("x", x)
        self._w = _as_2d("weight", weight)
        self.stride = _check_int("stride", stride, 1)
        self.padding = _check_int("padding", padding, 0)
        self.output_padding = _check_int("output_padding", output_padding, 0)
        self.dilation = _check_int("dilation", dilation, 1)
        if self.output_padding >= max(self.stride, self.dilation):
            raise ValueError(
                f"transposed_conv_stepper: `output_padding` ({self.output_padding}) must be smaller than stride "
                f"({self.stride}) or dilation ({self.dilation}), as in torch.nn.ConvTranspose2d"
            )
        h, w = self._x.shape
        kh, kw = self._w.shape
        s, p, op, d = self.stride, self.padding, self.output_padding, self.dilation
        # Footprint of one scaled kernel, the uncropped canvas, and the output after cropping.
        self._foot = (d * (kh - 1) + 1, d * (kw - 1) + 1)
        full = ((h - 1) * s + self._foot[0], (w - 1) * s + self._foot[1])
        self._out_size = (full[0] - 2 * p + op, full[1] - 2 * p + op)
        if min(self._out_size) < 1:
            raise ValueError(
                f"transposed_conv_stepper: padding={p} crops the whole {full[0]}×{full[1]} canvas "
                f"(output would be {self._out_size[0]}×{self._out_size[1]}); use a smaller padding"
            )
        # output_padding may reach past the canvas when it exceeds padding: those rows/columns stay 0.
        self._canvas_size = (max(full[0], p + self._out_size[0]), max(full[1], p + self._out_size[1]))

        self.figure = Figure(figsize=(13, 3.6), dpi=80, layout="constrained")
        self.png = b""
        self.output = widgets.Output()
        self.caption = widgets.HTML()
        self.slider = widgets.IntSlider(
            value=0,
            min=0,
            max=h * w - 1,
            description="position",
            continuous_update=False,
            style={"description_width": "initial"},
        )
        self.play = widgets.Play(value=0, min=0, max=h * w - 1, interval=1200, description="play")
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        settings = widgets.HTML(
            f"<code>input {h}×{w}, kernel {kh}×{kw}, stride={s}, padding={p}, output_padding={op}, "
            f"dilation={d}</code> → canvas {full[0]}×{full[1]}, output "
            f"{self._out_size[0]}×{self._out_size[1]}"
        )
        super().__init__([settings, widgets.HBox([self.play, self.slider]), self.caption, self.output])
        self.slider.observe(lambda change: self._render(change["new"]), names="value")
        self._render(0)

    def _render(self, step: int) -> None:
        """Draw the state after painting input positions 0..step (row-major) and show it."""
        h, w = self._x.shape
        s, p, d = self.stride, self.padding, self.dilation
        i, j = divmod(step, w)
        value = self._x[i, j]
        scaled = value * self._w

        # The running sums: scatter-add every scaled kernel painted so far (this step's included).
        # Also finish the sum over all positions, only to fix the colour scale across steps.
        canvas = np.zeros(self._canvas_size)
        final = np.zeros(self._canvas_size)
        for k in range(h * w):
            r, c = divmod(k, w)
            rows = slice(r * s, r * s + self._foot[0], d)
            cols = slice(c * s, c * s + self._foot[1], d)
            final[rows, cols] += self._x[r, c] * self._w
            if k <= step:
                canvas[rows, cols] += self._x[r, c] * self._w
        ho, wo = self._out_size
        output = canvas[p : p + ho, p : p + wo]

        in_lim = float(np.abs(self._x).max()) or 1.0
        kern_lim = in_lim * (float(np.abs(self._w).max()) or 1.0)
        out_lim = float(np.abs(final).max()) or 1.0
        fig = self.figure
        fig.clear()
        axes = fig.subplots(1, 4, width_ratios=[w + 1, self._foot[1] + 1, *(2 * [self._canvas_size[1] + 1])])
        self._panel(axes[0], self._x, in_lim, f"input x\nx[{i},{j}] = {_fmt(value)}")
        axes[0].add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=3))

        # Show the scaled kernel with its dilation gaps, as it lands on the canvas.
        footprint = np.full(self._foot, np.nan)
        footprint[::d, ::d] = scaled
        self._panel(axes[1], footprint, kern_lim, f"scaled kernel\nx[{i},{j}] · weight")

        self._panel(
            axes[2],
            canvas,
            out_lim,
            f"running sums, uncropped canvas\n{step + 1} of {h * w} positions painted",
        )
        axes[2].add_patch(
            Rectangle(
                (j * s - 0.5, i * s - 0.5),
                self._foot[1],
                self._foot[0],
                fill=False,
                edgecolor="black",
                linewidth=3,
            )
        )
        axes[2].add_patch(
            Rectangle(
                (p - 0.5, p - 0.5), wo, ho, fill=False, edgecolor="tab:green", linewidth=2, linestyle="--"
            )
        )
        self._panel(axes[3], output, out_lim, f"output so far\n= canvas[{p}:{p + ho}, {p}:{p + wo}]")

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        self.png = buffer.getvalue()
        self.caption.value = (
            f"<b>Position ({i}, {j})</b>: x[{i},{j}] = {_fmt(value)} scales the kernel; the scaled kernel is "
            f"added to canvas rows {i * s}–{i * s + self._foot[0] - 1}, columns {j * s}–{j * s + self._foot[1] - 1} "
            f"(top-left corner = position × stride = ({i * s}, {j * s})). Where copies overlap they sum. "
            f"Finally padding={p} removes {p} row(s)/column(s) on every side (dashed green frame)"
            + (
                f" and output_padding={self.output_padding} keeps that many extra at the bottom/right."
                if self.output_padding
                else "."
            )
        )
        self._show()

    @staticmethod
    def _panel(ax: Any, data: np.ndarray, limit: float, title: str) -> None:
        ax.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(data.shape[1]))
        ax.set_yticks(range(data.shape[0]))
        ax.tick_params(labelsize=7, length=0)
        if max(data.shape) <= _ANNOTATE_MAX_CELLS:
            size = 9 if max(data.shape) <= 6 else 6
            for (r, c), v in np.ndenumerate(data):
                if np.isfinite(v):
                    ax.text(
                        c,
                        r,
                        _fmt(v),
                        ha="center",
                        va="center",
                        fontsize=size,
                        color="white" if abs(v) > 0.6 * limit else "black",
                    )

    def _show(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import Image, display
        except ImportError:  # plain Python: the figure and png attributes are all there is
            return
        if get_ipython() is None:
            return
        with self.output:
            self.output.clear_output(wait=True)
            display(Image(data=self.png, format="png"))


def transposed_conv_stepper(
    x: Any, weight: Any, stride: int = 2, padding: int = 1, output_padding: int = 0, *, dilation: int = 1
) -> TransposedConvStepper:
    """Interactive step-by-step transposed convolution of one channel (ipywidgets + matplotlib).

    Args:
        x: the input, H×W (a tensor, array or nested list; 1×H×W and 1×1×H×W are accepted too).
        weight: the kernel, k×k (or kH×kW; 1×1×k×k is accepted too).
        stride, padding, output_padding, dilation: as in ``torch.nn.ConvTranspose2d``.

    Returns:
        A widget: move the slider (or press play) over the input positions and watch each scaled kernel
        being added into the uncropped canvas, then cropped by ``padding``. Display it by leaving it as the
        last expression of a notebook cell.
    """
    return TransposedConvStepper(x, weight, stride, padding, output_padding, dilation)
