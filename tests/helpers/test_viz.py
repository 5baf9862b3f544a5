"""helpers.viz: colours, overlays, figures (Agg), the dataset browser widget and the live plot."""

from __future__ import annotations

import types

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from helpers import notebook, viz  # noqa: E402
from helpers.data import CLASSES, IGNORE_COLOR, PALETTE, SegmentationFolder, make_scenes, voc_colormap  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = make_scenes(tmp_path_factory.mktemp("scenes"), n_train=2, n_val=3, size=24, seed=2, progress=False)
    return SegmentationFolder(root, "val")


@pytest.fixture
def fake_kernel(monkeypatch):
    """Pretend to run inside a Jupyter kernel; record what gets displayed."""
    shell = types.SimpleNamespace(kernel=object(), execution_count=1)
    shown: list = []

    class Handle:
        def __init__(self, obj):
            self.updates = [obj]

        def update(self, obj):
            self.updates.append(obj)
            shown.append(("update", obj))

    def display(obj, display_id=None):
        shown.append(("display", obj))
        return Handle(obj) if display_id else None

    monkeypatch.setattr(notebook, "kernel", lambda: shell)
    monkeypatch.setattr("IPython.display.display", display)
    return shell, shown


def test_colorize_uses_palette_and_ignore_colour():
    mask = torch.tensor([[0, 1, 2], [3, 4, 255]])
    rgb = viz.colorize(mask)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    expected = [PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[4], IGNORE_COLOR]
    assert [tuple(int(v) for v in px) for px in rgb.reshape(-1, 3)] == expected
    assert np.array_equal(viz.colorize(mask.numpy()), rgb)
    # VOC masks (up to 20) use VOC's colours beyond our five
    assert tuple(viz.colorize(np.array([[15]]))[0, 0]) == tuple(voc_colormap()[15])
    custom = viz.colorize(np.array([[1]]), palette=[(1, 2, 3), (4, 5, 6)])
    assert tuple(custom[0, 0]) == (4, 5, 6)


@pytest.mark.parametrize(
    "mask, error, match",
    [
        (np.zeros((2, 2), np.float32), TypeError, "integer class indices"),
        (np.zeros((2, 2, 2), np.int64), ValueError, "H x W"),
        (np.full((2, 2), 300), ValueError, "0..255"),
    ],
)
def test_colorize_bad_masks(mask, error, match):
    with pytest.raises(error, match=match):
        viz.colorize(mask)


def test_overlay_blends_and_skips_ignored_pixels():
    image = torch.full((3, 2, 2), 0.5)
    mask = torch.tensor([[1, 4], [255, 2]])
    assert np.array_equal(viz.overlay(image, mask, alpha=0.0), np.full((2, 2, 3), 128, np.uint8))
    full = viz.overlay(image, mask, alpha=1.0)
    assert tuple(full[0, 0]) == PALETTE[1] and tuple(full[1, 0]) == (128, 128, 128)
    half = viz.overlay(image, mask, alpha=0.5).astype(int)
    assert np.abs(half[0, 1] - (np.array(PALETTE[4]) + 128) / 2).max() <= 1
    only_cats = viz.overlay(image, mask, alpha=1.0, classes=[4])
    assert tuple(only_cats[0, 1]) == PALETTE[4] and tuple(only_cats[0, 0]) == (128, 128, 128)
    uint8 = viz.overlay(np.full((2, 2, 3), 128, np.uint8), mask, alpha=1.0)
    assert np.array_equal(uint8, full)


def test_overlay_errors():
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(torch.zeros(3, 2, 2), torch.zeros(2, 2, dtype=torch.long), alpha=2)
    with pytest.raises(ValueError, match="image is 2x2 but mask is 3x3"):
        viz.overlay(torch.zeros(3, 2, 2), torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="3 x H x W"):
        viz.overlay(torch.zeros(4, 2, 2, 2), torch.zeros(2, 2, dtype=torch.long))


def test_show_predictions_grid_and_legend(dataset):
    images, masks = map(torch.stack, zip(*(dataset[i] for i in range(3))))
    fig = viz.show_predictions(images, masks, masks.clone(), title="t")
    assert isinstance(fig, Figure)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 9
    assert [ax.get_title() for ax in image_axes[:3]] == ["image", "truth", "prediction"]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [*CLASSES, "ignore (255)"]
    # truth panel shows exactly the colourised mask
    assert np.array_equal(image_axes[1].images[0].get_array(), viz.colorize(masks[0]))
    logits = torch.nn.functional.one_hot(masks.clamp(max=4), 5).permute(0, 3, 1, 2).float()
    fig = viz.show_predictions(images, masks, logits, max_rows=2)
    assert len([ax for ax in fig.axes if ax.images]) == 6
    fig = viz.show_predictions(images, masks, alpha=0.5)
    assert len([ax for ax in fig.axes if ax.images]) == 6


def test_show_predictions_errors(dataset):
    images, masks = map(torch.stack, zip(*(dataset[i] for i in range(3))))
    with pytest.raises(ValueError, match="must match"):
        viz.show_predictions(images, masks[:2])
    with pytest.raises(ValueError, match="at least one"):
        viz.show_predictions(images[:0], masks[:0])


def test_plot_confusion_matrix():
    cm = torch.tensor([[8, 2, 0, 0, 0], [0, 5, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 3, 0], [0, 0, 0, 0, 4]])
    fig = viz.plot_confusion_matrix(cm)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "80%\n8" in texts and "20%\n2" in texts and "0%\n0" in texts  # row-normalised; empty row stays 0
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)
    assert ax.get_ylabel() == "true class" and ax.get_xlabel() == "predicted class"
    fig = viz.plot_confusion_matrix(cm, normalize=False)
    assert "8" in [t.get_text() for t in fig.axes[0].texts]
    with pytest.raises(ValueError, match="square"):
        viz.plot_confusion_matrix(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="5 class names for a 2 x 2"):
        viz.plot_confusion_matrix(torch.zeros(2, 2))


def test_figures_show_once_in_a_notebook(fake_kernel):
    shell, shown = fake_kernel
    fig = viz.plot_confusion_matrix(torch.eye(5, dtype=torch.int64))
    assert len(shown) == 1  # displayed by the call
    fig._ipython_display_()  # the cell echoing the returned figure: no second copy
    assert len(shown) == 1
    shell.execution_count = 2  # a later cell showing it again: displayed
    fig._ipython_display_()
    assert len(shown) == 2


def test_dataset_browser_controls(dataset):
    box = viz.dataset_browser(dataset)
    c = box.controls
    assert c["sample"].max == 2 and [t.description for t in c["classes"]] == list(CLASSES)
    first = c["image"].value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and "#0" in c["info"].value
    c["sample"].value = 2
    assert c["image"].value != first and "#2" in c["info"].value
    second = c["image"].value
    c["opacity"].value = 0.0
    assert c["image"].value != second
    third = c["image"].value
    c["classes"][1].value = False  # hide the sky
    assert c["image"].value != third
    with pytest.raises(ValueError, match="empty"):
        viz.dataset_browser([])


def test_live_plot_prints_outside_notebook(capsys):
    plot = viz.LivePlot()
    assert not plot.in_notebook
    plot.update(10, loss=0.5, miou=float("nan"))
    plot.update(20, loss=0.25, miou=0.5)
    out = capsys.readouterr().out
    assert "step 10: loss 0.5000" in out and "miou" not in out.splitlines()[0]
    assert "step 20: loss 0.2500, miou 0.5000" in out
    assert plot.steps["miou"] == [20] and plot.values["loss"] == [0.5, 0.25]
    fig = plot.figure()
    assert [ax.get_title() for ax in fig.axes] == ["loss", "miou"]
    assert list(fig.axes[0].lines[0].get_xdata()) == [10, 20]
    plot.extend({"step": [30], "loss": [0.1], "miou": [0.7]})
    assert plot.steps["loss"][-1] == 30 and capsys.readouterr().out == ""


def test_live_plot_updates_one_display_in_a_notebook(fake_kernel):
    _, shown = fake_kernel
    plot = viz.LivePlot()
    assert plot.in_notebook
    for step in range(3):
        plot.update(step, loss=1.0 / (step + 1), miou=0.1 * step)
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    plot.close()


def test_viz_reexports_the_stepper():
    from helpers.stepper import transposed_conv_stepper

    assert viz.transposed_conv_stepper is transposed_conv_stepper


def _helpers_imported_by(module: str) -> set[str]:
    """The helpers modules ``module`` imports at load time, transitively (read from the source, not run)."""
    import ast
    import importlib.util

    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        tree = ast.parse(open(spec.origin).read())
        for node in tree.body:  # module level only: imports inside functions load later, if ever
            if isinstance(node, ast.ImportFrom) and node.module == "helpers":  # from helpers import data
                todo += [f"helpers.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers."):
                todo.append(node.module)
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("helpers")]
        if spec.submodule_search_locations is None and "." in name:  # a package's __init__ runs first
            parent = name.rsplit(".", 1)[0]
            if parent != "helpers":
                todo.append(parent)
    return seen


def test_viz_does_not_pull_in_the_scene_renderer():
    """Plots need the class names and colours (helpers.labels), not the generator behind the datasets."""
    loaded = _helpers_imported_by("helpers.viz")
    assert {"helpers.labels", "helpers.widgets"} <= loaded, loaded
    # The stepper subclasses an ipywidgets box: loaded on first use, so viz imports without ipywidgets.
    assert "helpers.widgets.stepper" not in loaded, sorted(loaded)
    assert "helpers.render" not in loaded and "helpers.scenes" not in loaded, sorted(loaded)
    assert "helpers.render" in _helpers_imported_by("helpers.data"), "the scan misses imports"
