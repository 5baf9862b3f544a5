"""helpers.train: device choice, seeding, fit (determinism, checkpoints, resume, stopping rules), evaluate,
predict, make_loaders. Tiny models on a tiny generated dataset keep this fast."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from helpers.data import NUM_CLASSES, make_scenes
from helpers.train import (
    History,
    evaluate,
    fit,
    load_checkpoint,
    make_loaders,
    pick_device,
    predict,
    seed_everything,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_scenes(
        tmp_path_factory.mktemp("scenes"), n_train=16, n_val=8, size=24, seed=3, progress=False
    )


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-exact repeatability and no oversubscription on a shared machine
    yield
    torch.set_num_threads(threads)


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, NUM_CLASSES, 1))


def run(root, **kwargs):
    seed_everything(0)
    model = tiny_net()
    train_loader, val_loader = make_loaders(root, batch_size=4)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("live_plot", False)
    history = fit(model, train_loader, val_loader, **kwargs)
    return model, history


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_pick_device_explains(capsys):
    device = pick_device()
    out = capsys.readouterr().out
    assert isinstance(device, torch.device) and out.startswith(f"device: {device.type}")
    assert out.count("\n") == 1
    if not torch.cuda.is_available():
        assert device.type in ("cpu", "mps")
    assert pick_device(verbose=False) == device and capsys.readouterr().out == ""


def test_seed_everything_repeats_all_generators():
    seed_everything(5)
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(5)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_fit_is_deterministic_and_records_history(root):
    a, h = run(root, epochs=2)
    b, _ = run(root, epochs=2)
    assert same_weights(a, b)
    assert isinstance(h, History) and h["step"] == [4, 8] and h["epoch"] == [1.0, 2.0]
    assert len(h["step_loss"]) == 8 and all(len(h[k]) == 2 for k in History.KEYS)
    assert all(0 <= m <= 1 for m in h["miou"]) and h.stopped_by == "epochs"
    assert h.best_miou == max(h["miou"]) and "best mIoU" in repr(h)


def test_validating_more_often_does_not_change_training(root):
    a, _ = run(root, steps=8, eval_every=8)
    b, h = run(root, steps=8, eval_every=1)
    assert same_weights(a, b) and len(h["step"]) == 8 and h.stopped_by == "steps"


def test_steps_and_epochs_whichever_first(root):
    _, h = run(root, steps=3, epochs=5)
    assert h["step"][-1] == 3 and h.stopped_by == "steps"
    _, h = run(root, steps=100, epochs=1)
    assert h["step"][-1] == 4 and h.stopped_by == "epochs"


def test_checkpoint_holds_best_weights_and_loads_weights_only(root, tmp_path):
    model, h = run(root, steps=6, eval_every=2, checkpoint=tmp_path / "ck.pt")
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert set(state) == {"model", "last", "history"} and state["last"]["step"] == 6
    fresh = tiny_net()
    load_checkpoint(fresh, tmp_path / "ck.pt", which="last")
    assert same_weights(fresh, model)
    load_checkpoint(fresh, tmp_path / "ck.pt")  # best
    _, val_loader = make_loaders(root, batch_size=4)
    assert evaluate(fresh, val_loader)["miou"] == pytest.approx(h.best_miou)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(fresh, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="which"):
        load_checkpoint(fresh, tmp_path / "ck.pt", which="worst")


def test_resume_from_epoch_boundary_equals_uninterrupted_run(root, tmp_path, capsys):
    whole, _ = run(root, epochs=2)
    run(root, epochs=1, checkpoint=tmp_path / "r.pt")
    seed_everything(123)  # a different seed: everything must come from the checkpoint
    model = tiny_net()
    train_loader, val_loader = make_loaders(root, batch_size=4)
    quiet = {"progress": False, "live_plot": False}
    h = fit(model, train_loader, val_loader, epochs=2, checkpoint=tmp_path / "r.pt", resume=True, **quiet)
    assert "resumed from" in capsys.readouterr().out
    assert same_weights(whole, model) and h["step"] == [4, 8]
    # resuming a finished run trains no further
    again = fit(model, train_loader, val_loader, epochs=2, checkpoint=tmp_path / "r.pt", resume=True, **quiet)
    assert again["step"] == [4, 8] and same_weights(whole, model)


def test_time_budget_stops_and_no_validation_loader(root):
    seed_everything(0)
    train_loader, _ = make_loaders(root, batch_size=4)
    h = fit(tiny_net(), train_loader, None, time_budget_s=1e-9, progress=False, live_plot=False)
    assert h.stopped_by == "time budget" and h["step"] == [1] and math.isnan(h["miou"][0])


def test_live_plot_and_progress_bar_outside_notebook(root, capsys):
    run(root, steps=2, eval_every=1, live_plot=True, progress=True)
    captured = capsys.readouterr()
    assert "step 1: loss" in captured.out and "step 2: loss" in captured.out
    assert "training" in captured.err  # tqdm bar


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "epochs=, steps= or time_budget_s="),
        ({"steps": 0}, "steps must be"),
        ({"epochs": 1.5}, "epochs must be"),
    ],
)
def test_fit_bad_arguments(root, kwargs, match):
    train_loader, val_loader = make_loaders(root, batch_size=4)
    with pytest.raises(ValueError, match=match):
        fit(tiny_net(), train_loader, val_loader, progress=False, live_plot=False, **kwargs)


def test_fit_explains_wrong_model_output(root):
    train_loader, _ = make_loaders(root, batch_size=4)
    half = nn.Sequential(nn.Conv2d(3, NUM_CLASSES, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match="at the input's resolution"):
        fit(half, train_loader, None, steps=1, progress=False, live_plot=False)
    three = nn.Conv2d(3, 3, 1)
    with pytest.raises(
        ValueError, match=r"3 class scores per pixel but the dataset has 5 classes \(background, sky"
    ):
        fit(three, train_loader, None, steps=1, progress=False, live_plot=False)
    with pytest.raises(ValueError, match="returned 5 class scores per pixel but num_classes=4"):
        fit(tiny_net(), train_loader, None, steps=1, num_classes=4, progress=False, live_plot=False)
    _, val_loader = make_loaders(root, batch_size=4)
    with pytest.raises(ValueError, match="returned 3 class scores per pixel but the dataset has 5"):
        evaluate(three, val_loader)
    with pytest.raises(ValueError, match="returned 5 class scores per pixel but num_classes=7"):
        evaluate(tiny_net(), val_loader, num_classes=7)


def test_number_of_classes_comes_from_the_model(root, tmp_path):
    """A VOC-layout folder without seglab.json (e.g. CamVid's 11 classes) assumes VOC's 21 names, but the
    model's 11 output channels decide, in fit and in evaluate, without num_classes=."""
    import shutil

    from helpers.data import SegmentationFolder

    other = tmp_path / "camvid"
    shutil.copytree(root, other)
    (other / "seglab.json").unlink()
    assert SegmentationFolder(other, "val").num_classes == 21
    seed_everything(0)
    eleven = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 11, 1))
    train_loader, val_loader = make_loaders(other, batch_size=4)
    h = fit(eleven, train_loader, val_loader, steps=2, progress=False, live_plot=False)
    assert h["step"][-1] == 2 and all(0 <= m <= 1 for m in h["miou"])
    scores = evaluate(eleven, val_loader)
    assert scores["cm"].shape == (11, 11) and len(scores["iou_per_class"]) == 11


class Unsized:
    """A loader without len(): epochs end when it is exhausted."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        return iter(self.loader)


def test_unsized_loader_counts_epochs_and_validates_at_their_end(root):
    seed_everything(0)
    train_loader, val_loader = make_loaders(root, batch_size=4)
    h = fit(tiny_net(), Unsized(train_loader), val_loader, epochs=2, progress=False, live_plot=False)
    assert h.stopped_by == "epochs" and h["step"] == [4, 8] and all(math.isnan(e) for e in h["epoch"])
    a, _ = run(root, epochs=2)
    seed_everything(0)
    b = tiny_net()
    train_loader, val_loader = make_loaders(root, batch_size=4)
    fit(b, Unsized(train_loader), val_loader, epochs=2, progress=False, live_plot=False)
    assert same_weights(a, b), "an unsized loader must train exactly like the sized one"


def test_fit_stops_on_nan_loss(root):
    train_loader, _ = make_loaders(root, batch_size=4)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(
            tiny_net(),
            train_loader,
            None,
            steps=2,
            loss_fn=lambda logits, masks: logits.sum() * math.nan,
            progress=False,
            live_plot=False,
        )


def test_amp_true_on_cpu_warns(root):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    train_loader, _ = make_loaders(root, batch_size=4, device="cpu")
    with pytest.warns(UserWarning, match="amp=True needs CUDA"):
        fit(tiny_net(), train_loader, None, steps=1, amp=True, device="cpu", progress=False, live_plot=False)


def test_fit_accepts_torchvision_style_dict_output(root):
    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_net()

        def forward(self, x):
            return {"out": self.body(x)}

    train_loader, val_loader = make_loaders(root, batch_size=4)
    h = fit(DictNet(), train_loader, val_loader, steps=1, progress=False, live_plot=False)
    assert h["step"] == [1]


def test_evaluate_matches_a_loop_and_restores_state(root):
    seed_everything(1)
    model = tiny_net()
    _, val_loader = make_loaders(root, batch_size=3)
    model.train()
    rng_before = torch.get_rng_state()
    out = evaluate(model, val_loader)
    assert model.training and torch.equal(rng_before, torch.get_rng_state())
    cm = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    with torch.no_grad():
        for images, masks in val_loader:
            pred = model(images).argmax(1)
            for t, p in zip(masks.reshape(-1).tolist(), pred.reshape(-1).tolist()):
                if t != 255:
                    cm[t, p] += 1
    assert torch.equal(out["cm"], cm)
    assert out["pixel_acc"] == pytest.approx(cm.diag().sum().item() / cm.sum().item())
    assert set(out) == {"miou", "pixel_acc", "iou_per_class", "cm"}


def test_predict_shapes_and_inputs(root):
    model = tiny_net().eval()
    image = torch.rand(3, 24, 24)
    single = predict(model, image)
    assert single.shape == (24, 24) and single.dtype == torch.int64
    batch = predict(model, image[None].repeat(2, 1, 1, 1))
    assert batch.shape == (2, 24, 24) and torch.equal(batch[0], single)
    as_uint8 = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert predict(model, as_uint8).shape == (24, 24)
    assert not model.training
    with pytest.raises(ValueError, match="3 x H x W"):
        predict(model, torch.rand(24, 24))
    with pytest.raises(ValueError, match="H x W x 3"):
        predict(model, np.zeros((24, 24), np.uint8))


def test_make_loaders(root):
    train_loader, val_loader = make_loaders(root, batch_size=4, crop_size=16)
    images, masks = next(iter(train_loader))
    assert images.shape == (4, 3, 16, 16) and masks.shape == (4, 16, 16) and masks.dtype == torch.int64
    assert len(train_loader) == 4 and train_loader.drop_last and not train_loader.pin_memory
    images, masks = next(iter(val_loader))
    assert images.shape == (4, 3, 24, 24)
    plain, _ = make_loaders(root, batch_size=4, augment=False)
    assert next(iter(plain))[0].shape == (4, 3, 24, 24)
    with pytest.raises(ValueError, match="fewer than batch_size=64"):
        make_loaders(root, batch_size=64)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        make_loaders(root, batch_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_pins_memory_and_uses_amp(root):
    train_loader, val_loader = make_loaders(root, batch_size=4)
    assert train_loader.pin_memory
    model = tiny_net()
    h = fit(model, train_loader, val_loader, steps=2, device="cuda", progress=False, live_plot=False)
    assert next(model.parameters()).device.type == "cuda" and len(h["step"]) >= 1


def test_interrupt_returns_the_history(root, capsys):
    class StopAfter:
        """A loss that raises KeyboardInterrupt (the stop button) on its third call."""

        def __init__(self):
            self.calls = 0
            self.ce = nn.CrossEntropyLoss(ignore_index=255)

        def __call__(self, logits, masks):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.ce(logits, masks)

    _, h = run(root, steps=10, eval_every=1, loss_fn=StopAfter())
    assert h.stopped_by == "interrupted" and h["step"] == [1, 2]
    assert "interrupted at step 2" in capsys.readouterr().out
