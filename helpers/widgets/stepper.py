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

Every number drawn comes from PyTorch's own ``F.conv_transpose2d``: run on one input pixel at a time (a
one-hot input) without padding it gives that pixel's scaled copy on the uncropped canvas, and run on the whole
input it gives the output and its size. This module adds nothing up itself and holds no transposed
convolution, size formula or canvas loop: lab 03 asks students to write those.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn.functional as F
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


class _Frames:
    """What the stepper draws, computed once by ``F.conv_transpose2d``: the running sums after each step, the
    output, and where each input position's copy lands."""

    def __init__(
        self, x: np.ndarray, w: np.ndarray, stride: int, padding: int, output_padding: int, dilation: int
    ):
        h, wd = x.shape
        geometry = {"stride": stride, "dilation": dilation}
        inputs, weight = torch.from_numpy(x)[None, None], torch.from_numpy(w)[None, None]
        # One input pixel at a time: a batch of one-hot inputs, item k holding input value k alone.
        one_hot = torch.eye(h * wd, dtype=torch.float64).reshape(h * wd, 1, h, wd)
        copies = F.conv_transpose2d(one_hot * inputs, weight, **geometry)[:, 0]
        reach = F.conv_transpose2d(one_hot, torch.ones_like(weight), **geometry)[:, 0]  # 1 where a copy lands
        self.full = tuple(copies.shape[1:])
        try:
            out = F.conv_transpose2d(
                inputs, weight, padding=padding, output_padding=output_padding, **geometry
            )
        except RuntimeError:  # PyTorch refuses an output smaller than one pixel
            out = torch.zeros(1, 1, 0, 0)
        self.out_size = tuple(out.shape[2:])
        if min(self.out_size, default=0) < 1:
            raise ValueError(
                f"transposed_conv_stepper: padding={padding} crops the whole {self.full[0]}×{self.full[1]} "
                "canvas; use a smaller padding"
            )
        # The canvas shown holds every copy and the crop frame: output_padding may reach past the last copy.
        canvas = [max(n, padding + m) for n, m in zip(self.full, self.out_size)]
        grow = (0, canvas[1] - self.full[1], 0, canvas[0] - self.full[0])
        self.sums = F.pad(copies, grow).cumsum(0).numpy()  # running sums after each position, row-major
        self.reach = F.pad(reach, grow).numpy() > 0
        pixel = torch.ones(1, 1, 1, 1, dtype=torch.float64)
        self.taps = F.conv_transpose2d(pixel, torch.ones_like(weight), dilation=dilation)[0, 0].numpy() > 0
        self.kernel = F.conv_transpose2d(pixel, weight, dilation=dilation)[0, 0].numpy()  # dilated, 0 in gaps

    def box(self, step: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the canvas cells input position ``step``'s copy covers."""
        rows, cols = np.nonzero(self.reach[step])
        return (
            int(rows.min()),
            int(cols.min()),
            int(rows.max() - rows.min() + 1),
            int(cols.max() - cols.min() + 1),
        )

    def footprint(self, value: float) -> np.ndarray:
        """The kernel scaled by ``value`` as it lands on the canvas: NaN in the dilation gaps."""
        return np.where(self.taps, value * self.kernel, np.nan)


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
        self._frames = _Frames(
            self._x, self._w, self.stride, self.padding, self.output_padding, self.dilation
        )
        self.figure = Figure(figsize=(13, 3.6), dpi=80, layout="constrained")
        self.png = b""
        self.output = widgets.Output()
        self.caption = widgets.HTML()
        last = self._x.size - 1
        self.slider = widgets.IntSlider(
            value=0,
            min=0,
            max=last,
            description="position",
            continuous_update=False,
            style={"description_width": "initial"},
        )
        self.play = widgets.Play(value=0, min=0, max=last, interval=1200, description="play")
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        super().__init__(
            [self._settings(), widgets.HBox([self.play, self.slider]), self.caption, self.output]
        )
        self.slider.observe(lambda change: self._render(change["new"]), names="value")
        self._render(0)

    def _settings(self) -> widgets.HTML:
        (h, w), (kh, kw), f = self._x.shape, self._w.shape, self._frames
        return widgets.HTML(
            f"<code>input {h}×{w}, kernel {kh}×{kw}, stride={self.stride}, padding={self.padding}, "
            f"output_padding={self.output_padding}, dilation={self.dilation}</code> → canvas "
            f"{f.full[0]}×{f.full[1]}, output {f.out_size[0]}×{f.out_size[1]}"
        )

    def _render(self, step: int) -> None:
        """Draw the state after painting input positions 0..step (row-major) and show it."""
        i, j = divmod(step, self._x.shape[1])
        self._draw(step, i, j)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png")
        self.png = buffer.getvalue()
        self.caption.value = self._caption(step, i, j)
        self._show()

    def _draw(self, step: int, i: int, j: int) -> None:
        f, p = self._frames, self.padding
        (ho, wo), canvas = f.out_size, f.sums[step]
        footprint = f.footprint(self._x[i, j])
        in_lim = float(np.abs(self._x).max()) or 1.0
        kern_lim = in_lim * (float(np.abs(self._w).max()) or 1.0)
        out_lim = float(np.abs(f.sums[-1]).max()) or 1.0  # the finished sum fixes the colours across steps
        self.figure.clear()
        ratios = [self._x.shape[1] + 1, footprint.shape[1] + 1, *(2 * [canvas.shape[1] + 1])]
        axes = self.figure.subplots(1, 4, width_ratios=ratios)
        self._panel(axes[0], self._x, in_lim, f"input x\nx[{i},{j}] = {_fmt(self._x[i, j])}")
        axes[0].add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=3))
        self._panel(axes[1], footprint, kern_lim, f"scaled kernel\nx[{i},{j}] · weight")
        painted = f"{step + 1} of {self._x.size} positions painted"
        self._panel(axes[2], canvas, out_lim, f"running sums, uncropped canvas\n{painted}")
        top, left, bh, bw = f.box(step)
        axes[2].add_patch(
            Rectangle((left - 0.5, top - 0.5), bw, bh, fill=False, edgecolor="black", linewidth=3)
        )
        crop = Rectangle(
            (p - 0.5, p - 0.5), wo, ho, fill=False, edgecolor="tab:green", linewidth=2, linestyle="--"
        )
        axes[2].add_patch(crop)
        output = canvas[p : p + ho, p : p + wo]
        self._panel(axes[3], output, out_lim, f"output so far\n= canvas[{p}:{p + ho}, {p}:{p + wo}]")

    def _caption(self, step: int, i: int, j: int) -> str:
        top, left, bh, bw = self._frames.box(step)
        p, op = self.padding, self.output_padding
        return (
            f"<b>Position ({i}, {j})</b>: x[{i},{j}] = {_fmt(self._x[i, j])} scales the kernel; the scaled kernel is "
            f"added to canvas rows {top}–{top + bh - 1}, columns {left}–{left + bw - 1} "
            f"(top-left corner = position × stride = ({top}, {left})). Where copies overlap they sum. "
            f"Finally padding={p} removes {p} row(s)/column(s) on every side (dashed green frame)"
            + (f" and output_padding={op} keeps that many extra at the bottom/right." if op else ".")
        )

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
