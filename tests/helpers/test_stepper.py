"""The lab 03 transposed-convolution stepper: it builds, its slider redraws, and what it draws is right."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from helpers.stepper import transposed_conv_stepper  # noqa: E402

LECTURE_X = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
LECTURE_W = torch.arange(1.0, 10.0).reshape(3, 3)


def _panel(stepper, index: int) -> np.ndarray:
    """The array drawn in panel ``index`` (0 input, 1 scaled kernel, 2 canvas, 3 output)."""
    return np.asarray(stepper.figure.axes[index].images[0].get_array(), dtype=np.float64)


def _random_stepper(seed: int, shape, k, stride, padding, output_padding, dilation):
    """A stepper over a random float64 input and kernel, and PyTorch's transposed convolution of the two."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    w = torch.randn(k, k, generator=g, dtype=torch.float64)
    stepper = transposed_conv_stepper(x, w, stride, padding, output_padding, dilation=dilation)
    expected = F.conv_transpose2d(
        x[None, None],
        w[None, None],
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    )[0, 0]
    return x, w, stepper, expected


def test_widget_builds_with_a_slider_over_the_input_positions():
    stepper = transposed_conv_stepper(LECTURE_X, LECTURE_W, stride=2, padding=1, output_padding=1)
    assert isinstance(stepper, widgets.VBox)
    assert (stepper.slider.min, stepper.slider.max) == (0, LECTURE_X.numel() - 1)
    assert stepper.png.startswith(b"\x89PNG"), "the first step was not rendered"
    assert len(stepper.figure.axes) == 4
    assert "Position (0, 0)" in stepper.caption.value
    assert stepper.output in stepper.children


def test_moving_the_slider_changes_the_picture_and_the_caption():
    stepper = transposed_conv_stepper(LECTURE_X, LECTURE_W, stride=2, padding=1, output_padding=1)
    png, caption, canvas = stepper.png, stepper.caption.value, _panel(stepper, 2)
    stepper.slider.value = 3
    assert stepper.png != png
    assert stepper.caption.value != caption and "Position (1, 1)" in stepper.caption.value
    assert not np.array_equal(_panel(stepper, 2), canvas)


def test_first_step_paints_one_scaled_kernel_at_the_top_left():
    x = torch.tensor([[2.0, -1.0, 0.5], [1.0, 3.0, -2.0]])
    w = torch.tensor([[1.0, -2.0], [0.5, 4.0]])
    stepper = transposed_conv_stepper(x, w, stride=3, padding=0)
    canvas = _panel(stepper, 2)
    expected = np.zeros_like(canvas)
    expected[:2, :2] = 2.0 * w.numpy()
    np.testing.assert_allclose(canvas, expected)
    np.testing.assert_allclose(_panel(stepper, 1), 2.0 * w.numpy())


@pytest.mark.parametrize(
    "shape, k, stride, padding, output_padding, dilation",
    [
        ((2, 2), 3, 2, 1, 1, 1),  # the lecture's 2x2 -> 4x4
        ((3, 4), 4, 2, 1, 0, 1),
        ((3, 2), 3, 3, 2, 2, 1),  # output_padding reaches past the canvas
        ((2, 3), 3, 1, 1, 1, 2),  # output_padding allowed by dilation
    ],
)
def test_last_step_output_is_the_transposed_convolution(shape, k, stride, padding, output_padding, dilation):
    x, w, stepper, expected = _random_stepper(0, shape, k, stride, padding, output_padding, dilation)
    stepper.slider.value = stepper.slider.max
    np.testing.assert_allclose(_panel(stepper, 3), expected.numpy(), atol=1e-12)


def test_accepts_batched_single_channel_tensors_and_lists():
    stepper = transposed_conv_stepper(LECTURE_X[None, None], [[1, 0], [0, 1]], stride=2, padding=0)
    assert _panel(stepper, 0).shape == (2, 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(x=torch.zeros(2, 3, 3)), "`x` must be one channel"),
        (dict(weight=torch.zeros(0, 3)), "`weight` must be one channel"),
        (dict(stride=0), "`stride` must be >= 1"),
        (dict(padding=-1), "`padding` must be >= 0"),
        (dict(stride=2, output_padding=2), "`output_padding` (2) must be smaller"),
        (dict(padding=5), "crops the whole"),
        (dict(stride=2.0), "`stride` must be an int"),
    ],
)
def test_bad_arguments_are_named_in_the_error(kwargs, message):
    args = dict(x=LECTURE_X, weight=LECTURE_W, stride=2, padding=1, output_padding=0) | kwargs
    with pytest.raises((ValueError, TypeError)) as info:
        transposed_conv_stepper(**args)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "shape, k, stride, padding, output_padding, dilation",
    [((2, 2), 3, 3, 2, 2, 1), ((2, 2), 2, 1, 0, 1, 2)],  # output_padding past the last copy; dilation gaps
)
def test_every_step_shows_the_running_sum_of_the_positions_painted(
    shape, k, stride, padding, output_padding, dilation
):
    """Step s: the canvas is the transposed convolution (no padding) of x with every position after s set to
    0, with room for the crop frame; the scaled kernel has NaN in its dilation gaps."""
    x, w, stepper, out = _random_stepper(1, shape, k, stride, padding, output_padding, dilation)
    for step in range(x.numel()):
        stepper.slider.value = step
        painted = (torch.arange(x.numel()) <= step).reshape(shape).double()
        full = F.conv_transpose2d((x * painted)[None, None], w[None, None], stride=stride, dilation=dilation)[
            0, 0
        ]
        canvas = _panel(stepper, 2)
        assert canvas.shape[0] >= padding + out.shape[0] and canvas.shape[1] >= padding + out.shape[1]
        np.testing.assert_allclose(canvas[: full.shape[0], : full.shape[1]], full.numpy(), atol=1e-12)
        assert not canvas[full.shape[0] :].any() and not canvas[:, full.shape[1] :].any()
        kernel = _panel(stepper, 1)
        value = x.flatten()[step].item()
        np.testing.assert_allclose(kernel[::dilation, ::dilation], value * w.numpy(), atol=1e-12)
        assert np.isnan(kernel).sum() == kernel.size - w.numel()
