"""Lab 05's optional real-photo pipeline, run on tiny files this test writes (offline, CPU, a few seconds).

The lab trains on PASCAL VOC / Oxford-IIIT Pet only on a GPU with the full budget, so CI never reaches that code
in the notebook; here the notebook's own pipeline cell runs on a 4-image VOC tree and a fake torch cache.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.labtools import read, solution_path

LAB = "05_classifier_to_fcn"
MARKER = "# Optional real-data pipeline"
RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1 file name


@pytest.fixture(scope="module")
def pipeline():
    """The notebook's pipeline cell, executed in a fresh namespace."""
    cells = [
        c for c in read(solution_path(LAB)).cells if c.cell_type == "code" and c.source.startswith(MARKER)
    ]
    assert len(cells) == 1, f"{LAB}: exactly one code cell must start with {MARKER!r}"
    namespace: dict = {"__name__": "lab05_real_data"}
    exec(compile(cells[0].source, f"{LAB}-real-data-cell", "exec"), namespace)  # noqa: S102 - our own notebook
    return namespace


@pytest.fixture
def tiny_voc(tmp_path):
    """A VOC-layout folder with 4 train and 2 val photos of 40×48 (cats = VOC class 8, borders 255)."""
    root = tmp_path / "voc"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    palette = [v for i in range(256) for v in (i, i, i)]
    for split, n in (("train", 4), ("val", 2)):
        ids = [f"{split}{k}" for k in range(n)]
        for name in ids:
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
                root / "JPEGImages" / f"{name}.jpg"
            )
            mask = np.zeros((40, 48), dtype=np.uint8)
            mask[10:30, 12:36] = 8
            mask[9, 12:36] = 255
            png = Image.fromarray(mask, mode="P")
            png.putpalette(palette)
            png.save(root / "SegmentationClass" / f"{name}.png")
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture
def torch_cache(tmp_path, monkeypatch):
    """An empty torch hub folder for this test (so the user's real cache is never read or written)."""
    hub = tmp_path / "hub"
    saved = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    yield hub
    torch.hub.set_dir(saved)


def test_missing_weights_give_a_clear_message_and_no_download(pipeline, torch_cache, capsys, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("the pipeline tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    assert pipeline["cached_resnet18"]() is None
    message = capsys.readouterr().out
    assert RESNET18_FILE in message and "never downloaded" in message, message
    assert not (torch_cache / "checkpoints").exists(), "nothing may be written into the torch cache"


def test_cached_weights_are_loaded(pipeline, torch_cache):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    saved = resnet18().state_dict()
    (torch_cache / "checkpoints").mkdir(parents=True)
    torch.save(saved, torch_cache / "checkpoints" / RESNET18_FILE)
    model = pipeline["cached_resnet18"]()
    assert model is not None and torch.equal(model.fc.weight, saved["fc.weight"])


def test_fc_as_a_1x1_convolution_is_exact(pipeline):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    backbone = resnet18().eval()
    fcn = pipeline["ResNetFCN"](backbone, num_classes=21).eval()
    x = torch.rand(2, 3, 96, 64)
    with torch.no_grad():
        scores = fcn.imagenet_scores(x)
        logits = backbone(x)
        out = fcn(torch.rand(1, 3, 50, 70))
    assert tuple(scores.shape) == (2, 1000, 3, 2)
    assert torch.allclose(scores.mean(dim=(2, 3)), logits, atol=1e-4), (
        "mean of the score map must be the logits"
    )
    assert tuple(out.shape) == (1, 21, 50, 70), "the FCN must return full-size scores for any input size"


def test_pipeline_trains_on_a_tiny_voc_tree(pipeline, tiny_voc, torch_cache):
    result = pipeline["run_real_data"](
        "voc", steps=2, device="cpu", crop=32, batch_size=2, root=str(tiny_voc)
    )
    assert result is not None
    model, history = result
    assert history["step"][-1] == 2 and 0.0 <= history["miou"][-1] <= 1.0
    assert model.score32.out_channels == 21


def test_missing_dataset_is_explained(pipeline, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEGLAB_VOC_ROOT", raising=False)
    assert pipeline["run_real_data"]("voc", steps=1, device="cpu") is None
    assert "SEGLAB_VOC_ROOT" in capsys.readouterr().out
    assert pipeline["run_real_data"]("pet", steps=1, device="cpu", root=str(tmp_path / "nowhere")) is None
    assert "cannot read" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown dataset"):
        pipeline["real_datasets"]("coco", 32)
