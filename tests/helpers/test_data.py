"""helpers.data: scene generator, VOC-layout writer and cache, VOC/Pet loaders, joint transforms, errors.

Real datasets are never downloaded: tiny VOC- and Pet-layout trees are written by the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data, datasets
from helpers import scenes as scene_cache
from helpers.data import (
    CLASSES,
    IGNORE_INDEX,
    NUM_CLASSES,
    PALETTE,
    OxfordPetSegmentation,
    SegmentationFolder,
    ensure_scenes,
    make_eval_transforms,
    make_scenes,
    make_train_transforms,
    render_scene,
    voc_colormap,
)


# ------------------------------------------------------------------------------------------------
# fixtures: tiny trees on disk
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return make_scenes(tmp_path_factory.mktemp("scenes"), n_train=6, n_val=3, size=32, seed=1, progress=False)


def write_voc(root: Path, ids=("2007_000032", "2007_000033"), split="train", size=(20, 14)) -> Path:
    """A miniature VOCdevkit/VOC2012 tree: JPEGs, 21-class palette PNGs with 255 borders, a split file."""
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(0)
    for k, name in enumerate(ids):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg"
        )
        mask = np.zeros((h, w), np.uint8)
        mask[3:10, 4:12] = 15 + k  # person / pottedplant
        mask[2, 3:13] = 255  # VOC's void border
        png = Image.fromarray(mask, mode="P")
        png.putpalette(voc_colormap(256).reshape(-1).tolist())
        png.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return voc


def write_pet(root: Path, ids=("Abyssinian_1", "beagle_2"), size=(18, 12)) -> Path:
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    w, h = size
    lines = []
    for k, name in enumerate(ids):
        Image.fromarray(np.full((h, w, 3), 40 * (k + 1), np.uint8)).save(base / "images" / f"{name}.jpg")
        trimap = np.full((h, w), 2, np.uint8)  # background
        trimap[2:8, 3:9] = 1  # pet
        trimap[1, 3:9] = 3  # border
        Image.fromarray(trimap, mode="L").save(base / "annotations" / "trimaps" / f"{name}.png")
        lines.append(f"{name} {k + 1} {k + 1} 1")
    for split in ("trainval", "test"):
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return base


# ------------------------------------------------------------------------------------------------
# render_scene
# ------------------------------------------------------------------------------------------------
def test_render_scene_types_and_determinism():
    a, b, c = render_scene(7), render_scene(7), render_scene(8)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert a.mask.shape == (64, 64) and a.mask.dtype == np.uint8
    assert a.instance_map.shape == (64, 64) and a.instance_map.dtype == np.int32
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    assert set(np.unique(a.mask).tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}


def test_render_scene_size_and_bad_size():
    s = render_scene(3, size=40)
    assert s.image.shape == (40, 40, 3) and s.mask.shape == (40, 40)
    with pytest.raises(ValueError, match="size=8"):
        render_scene(0, size=8)


def test_scenes_show_every_class_and_several_cats():
    scenes = [render_scene(i) for i in range(40)]
    seen = set().union(*(np.unique(s.mask).tolist() for s in scenes))
    assert seen == set(range(NUM_CLASSES)) | {IGNORE_INDEX}
    cats_per_scene = [sum(1 for k in s.instance_classes.values() if k == data.CAT) for s in scenes]
    assert max(cats_per_scene) >= 2  # several cats, occluding each other
    assert sum(1 for s in scenes if data.TREE in s.instance_classes.values()) >= 10


def test_instances_agree_with_mask_and_have_void_borders():
    for seed in range(10):
        s = render_scene(seed)
        for inst, cls in s.instance_classes.items():
            own = s.instance_map == inst
            assert own.any()
            # inside an instance the label is its class, or 255 where another instance's border lies
            assert set(np.unique(s.mask[own]).tolist()) <= {cls, IGNORE_INDEX}
            # the one-pixel ring just outside it is void (written independently with np.pad)
            p = np.pad(own, 1)
            ring = (p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]) & ~own
            assert (s.mask[ring] == IGNORE_INDEX).all()
        stuff = s.instance_map == 0
        assert set(np.unique(s.mask[stuff]).tolist()) <= {data.BACKGROUND, data.SKY, data.GRASS, IGNORE_INDEX}


def test_colours_overlap_across_classes():
    """The premise of the labs: a pixel's colour alone does not tell its class."""
    pixels = {k: [] for k in range(NUM_CLASSES)}
    for seed in range(60):
        s = render_scene(seed)
        for k in pixels:
            pixels[k].append(s.image[s.mask == k] // 32)  # 8 levels per channel
    bins = {k: {tuple(v) for v in np.concatenate(p)} for k, p in pixels.items()}
    for a, b in (
        (data.CAT, data.TREE),
        (data.TREE, data.GRASS),
        (data.CAT, data.BACKGROUND),
        (data.SKY, data.GRASS),
    ):
        shared = len(bins[a] & bins[b]) / len(bins[a])
        assert shared > 0.1, f"{CLASSES[a]} and {CLASSES[b]} colours barely overlap ({shared:.0%})"


# ------------------------------------------------------------------------------------------------
# make_scenes, CLI, cache
# ------------------------------------------------------------------------------------------------
def test_make_scenes_writes_voc_layout(scenes):
    assert (scenes / "ImageSets" / "Segmentation" / "train.txt").read_text().split() == [
        f"train_{i:06d}" for i in range(6)
    ]
    assert len((scenes / "ImageSets" / "Segmentation" / "val.txt").read_text().split()) == 3
    assert len(list((scenes / "JPEGImages").glob("*.jpg"))) == 9
    with Image.open(scenes / "SegmentationClass" / "val_000002.png") as im:
        assert im.mode == "P" and im.size == (32, 32)
        assert tuple(im.getpalette()[3 * 4 : 3 * 5]) == PALETTE[4]
        stored = np.array(im)
    # the PNG stores exactly the rendered mask
    seed = scene_cache._scene_seed(1, "val", 2)
    assert np.array_equal(stored, render_scene(seed, 32).mask)
    meta = json.loads((scenes / "seglab.json").read_text())
    assert meta["n_train"] == 6 and meta["size"] == 32 and meta["classes"] == list(CLASSES)


def test_make_scenes_is_deterministic_and_val_independent_of_n_train(tmp_path):
    a = make_scenes(tmp_path / "a", 2, 2, size=24, seed=5, progress=False)
    b = make_scenes(tmp_path / "b", 4, 2, size=24, seed=5, progress=False)
    for name in ("JPEGImages/train_000001.jpg", "SegmentationClass/val_000001.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


@pytest.mark.parametrize(
    "kwargs, match", [({"n_train": -1, "n_val": 1}, "n_train"), ({"n_train": 0, "n_val": 0}, "at least one")]
)
def test_make_scenes_bad_counts(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_scenes(tmp_path, progress=False, **kwargs)


def test_cli_make_scenes(tmp_path, capsys):
    assert (
        data.main(
            [
                "make-scenes",
                "--root",
                str(tmp_path / "s"),
                "--n-train",
                "2",
                "--n-val",
                "1",
                "--size",
                "24",
                "--quiet",
            ]
        )
        == 0
    )
    assert "wrote 2 train + 1 val" in capsys.readouterr().out
    assert len(SegmentationFolder(tmp_path / "s", "val")) == 1
    with pytest.raises(SystemExit):
        data.main(["make-scenes", "--root", str(tmp_path / "t"), "--n-train", "0", "--n-val", "0"])
    assert "at least one" in capsys.readouterr().err


def test_cli_help_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "helpers.data", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "make-scenes" in out.stdout


def test_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGLAB_DATA", str(tmp_path / "here"))
    assert data.data_dir() == tmp_path / "here"
    monkeypatch.delenv("SEGLAB_DATA")
    checkout = Path(data.__file__).resolve().parents[1] / "data"
    expected = checkout if checkout.is_dir() else Path.home() / ".cache" / "seglabs"
    assert data.data_dir() == expected


def test_ensure_scenes_caches_and_regenerates(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGLAB_DATA", str(tmp_path))
    root = ensure_scenes(n_train=3, n_val=2, size=24, progress=False)
    assert root.parent == tmp_path and len(SegmentationFolder(root, "train")) == 3
    calls = []
    real = scene_cache.make_scenes
    monkeypatch.setattr(scene_cache, "make_scenes", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert ensure_scenes(n_train=3, n_val=2, size=24, progress=False) == root and not calls  # cached
    other = ensure_scenes(n_train=4, n_val=2, size=24, progress=False)
    assert other != root and len(calls) == 1 and root.exists()  # other parameters: other folder
    meta = json.loads((root / scene_cache.META_FILE).read_text())
    meta["generator_version"] = -1  # as if made by an older generator
    (root / scene_cache.META_FILE).write_text(json.dumps(meta))
    assert ensure_scenes(n_train=3, n_val=2, size=24, progress=False) == root and len(calls) == 2
    assert (
        json.loads((root / scene_cache.META_FILE).read_text())["generator_version"] == data.GENERATOR_VERSION
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_ensure_scenes_concurrent_calls_agree(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGLAB_DATA", str(tmp_path))
    results, errors = [], []

    def work():
        try:
            results.append(ensure_scenes(n_train=4, n_val=2, size=24, progress=False))
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert len(SegmentationFolder(results[0], "train")) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------------------------------------------
# SegmentationFolder
# ------------------------------------------------------------------------------------------------
def test_segmentation_folder_items(scenes):
    ds = SegmentationFolder(scenes, "train")
    assert len(ds) == 6 and ds.classes == CLASSES and ds.num_classes == NUM_CLASSES
    image, mask = ds[2]
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert mask.dtype == torch.int64 and mask.shape == (32, 32)
    assert type(image) is torch.Tensor and type(mask) is torch.Tensor  # plain tensors, not tv_tensors
    with Image.open(ds.masks[2]) as im:
        assert torch.equal(mask, torch.from_numpy(np.array(im)).long())
    assert "n=6" in repr(ds)


@pytest.mark.parametrize("which", ["parent", "devkit", "voc2012"])
def test_reads_a_voc_tree_unchanged(tmp_path, which):
    voc = write_voc(tmp_path)
    root = {"parent": tmp_path, "devkit": tmp_path / "VOCdevkit", "voc2012": voc}[which]
    ds = SegmentationFolder(root, "train")
    assert ds.root == voc and ds.num_classes == 21
    image, mask = ds[1]
    assert image.shape == (3, 14, 20)
    assert set(mask.unique().tolist()) == {0, 16, 255}


def test_missing_root_says_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        SegmentationFolder(tmp_path / "nope", "train")
    message = str(err.value)
    assert "nope" in message and "python -m helpers.data make-scenes" in message and "VOC" in message


def test_missing_split_lists_available(tmp_path):
    write_voc(tmp_path, split="train")
    with pytest.raises(FileNotFoundError, match=r"val\.txt not found \(available splits: train\)"):
        SegmentationFolder(tmp_path, "val")


def test_empty_split_file(tmp_path):
    voc = write_voc(tmp_path)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n\n")
    with pytest.raises(ValueError, match=r"train\.txt is empty"):
        SegmentationFolder(tmp_path, "train")


def test_listed_file_missing(tmp_path):
    voc = write_voc(tmp_path)
    (voc / "JPEGImages" / "2007_000033.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2007_000033.jpg"):
        SegmentationFolder(tmp_path, "train")


def test_size_mismatch_names_both_files(tmp_path):
    voc = write_voc(tmp_path)
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(
        voc / "SegmentationClass" / "2007_000032.png"
    )
    ds = SegmentationFolder(tmp_path, "train")
    with pytest.raises(ValueError, match=r"2007_000032\.png.*10x10.*2007_000032\.jpg.*20x14"):
        ds[0]


def test_mask_values_outside_classes(tmp_path):
    voc = write_voc(tmp_path)
    mask = np.zeros((14, 20), np.uint8)
    mask[0, 0], mask[0, 1] = 21, 99
    Image.fromarray(mask, mode="L").save(voc / "SegmentationClass" / "2007_000033.png")
    ds = SegmentationFolder(tmp_path, "train")
    ds[0]  # the good file still loads
    with pytest.raises(ValueError, match=r"2007_000033\.png: mask values \[21, 99\]"):
        ds[1]
    # with the scene classes (5), VOC's person (15) is out of range too
    with pytest.raises(ValueError, match=r"values \[15\]"):
        SegmentationFolder(tmp_path, "train", classes=CLASSES)[0]


def test_rgb_mask_is_rejected(tmp_path):
    voc = write_voc(tmp_path)
    path = voc / "SegmentationClass" / "2007_000032.png"
    with Image.open(path) as im:
        im.convert("RGB").save(path)  # what a careless re-save does to a VOC mask
    with pytest.raises(
        ValueError, match=r"2007_000032\.png: mask is an RGB colour image; expected a palette"
    ):
        SegmentationFolder(tmp_path, "train")[0]


def test_cache_returns_the_same_samples_and_protects_them(scenes):
    plain, cached = SegmentationFolder(scenes, "train"), SegmentationFolder(scenes, "train", cache=True)
    for _ in range(2):  # second round comes from memory
        for i in (0, 3):
            for a, b in zip(plain[i], cached[i]):
                assert torch.equal(a, b) and a.dtype == b.dtype
    image, mask = cached.read(0)
    assert not image.flags.writeable and not mask.flags.writeable

    def scribble(image, mask):
        image.zero_()
        mask.fill_(7)
        return image, mask

    SegmentationFolder.__getitem__(cached, 0)  # warm
    cached.transforms = scribble
    cached[0]
    cached.transforms = None
    assert torch.equal(cached[0][1], plain[0][1])  # an in-place transform did not touch the cache


def test_transforms_receive_tv_tensors(scenes):
    from torchvision import tv_tensors

    seen = {}

    def spy(image, mask):
        seen["types"] = (type(image), type(mask), image.dtype)
        return image, mask

    SegmentationFolder(scenes, "val", transforms=spy)[0]
    assert seen["types"] == (tv_tensors.Image, tv_tensors.Mask, torch.uint8)


# ------------------------------------------------------------------------------------------------
# Oxford-IIIT Pet
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("given", ["parent", "base"])
def test_pet_trimap_to_classes(tmp_path, given):
    base = write_pet(tmp_path)
    ds = OxfordPetSegmentation(tmp_path if given == "parent" else base, "train")
    assert len(ds) == 2 and ds.classes == ("background", "pet") and ds.split == "trainval"
    image, mask = ds[0]
    assert image.shape == (3, 12, 18) and mask.dtype == torch.int64
    assert mask[0, 0] == 0 and mask[4, 5] == 1 and mask[1, 5] == IGNORE_INDEX
    assert set(mask.unique().tolist()) == {0, 1, 255}


def test_pet_missing_says_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        OxfordPetSegmentation(tmp_path, "trainval")


def test_pet_bad_split_and_empty_split(tmp_path):
    base = write_pet(tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        OxfordPetSegmentation(tmp_path, "everything")
    (base / "annotations" / "test.txt").write_text("")
    with pytest.raises(ValueError, match=r"test\.txt is empty"):
        OxfordPetSegmentation(tmp_path, "test")


def test_pet_bad_trimap_values_and_size(tmp_path):
    base = write_pet(tmp_path)
    Image.fromarray(np.full((12, 18), 7, np.uint8), mode="L").save(
        base / "annotations" / "trimaps" / "Abyssinian_1.png"
    )
    Image.fromarray(np.full((5, 5), 1, np.uint8), mode="L").save(
        base / "annotations" / "trimaps" / "beagle_2.png"
    )
    ds = OxfordPetSegmentation(tmp_path, "trainval")
    with pytest.raises(ValueError, match=r"Abyssinian_1\.png: trimap values \[7\]"):
        ds[0]
    with pytest.raises(ValueError, match=r"beagle_2\.png: trimap is 5x5"):
        ds[1]


# ------------------------------------------------------------------------------------------------
# joint transforms
# ------------------------------------------------------------------------------------------------
def _coloured_sample(seed: int = 0):
    """Image whose pixel colour is its class colour: any image/mask misalignment becomes visible."""
    mask = render_scene(seed, 48).mask
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(PALETTE)] = PALETTE
    lut[255] = (255, 255, 255)
    return lut[mask], mask.astype(np.int64), lut


def test_flip_and_crop_keep_image_and_mask_aligned():
    image, mask, lut = _coloured_sample()
    tf = make_train_transforms(32, base_size=48, scale=(1.0, 1.0), hflip_prob=0.5)  # no resizing
    torch.manual_seed(0)
    for _ in range(6):
        img, m = datasets._finish(image, mask, tf)
        assert img.shape == (3, 32, 32) and m.shape == (32, 32) and m.dtype == torch.int64
        expected = torch.from_numpy(lut[m.numpy()]).permute(2, 0, 1).float() / 255
        assert torch.allclose(img, expected, atol=1e-6)


def test_scaling_uses_nearest_for_masks_and_pads_with_ignore():
    image, mask, _ = _coloured_sample(1)
    mask[mask == IGNORE_INDEX] = 0  # so that every 255 in the output is padding
    torch.manual_seed(0)
    values = set(np.unique(mask).tolist())
    for scale in ((0.5, 0.6), (1.3, 1.7)):
        img, m = datasets._finish(image, mask, make_train_transforms(48, scale=scale))
        assert set(m.unique().tolist()) <= values | {IGNORE_INDEX}  # nearest: no in-between classes
    img, m = datasets._finish(image, mask, make_train_transforms(48, scale=(0.5, 0.5), hflip_prob=0.0))
    padded = m == IGNORE_INDEX
    assert padded.float().mean() > 0.5  # a 24 px image in a 48 px crop
    assert float(img[:, padded].abs().max()) == 0.0  # image padding is black


def test_eval_transforms():
    image, mask, _ = _coloured_sample(2)
    img, m = datasets._finish(image, mask, make_eval_transforms())
    assert torch.equal(m, torch.from_numpy(mask)) and img.shape == (3, 48, 48)
    img, m = datasets._finish(image, mask, make_eval_transforms(32))
    assert img.shape == (3, 32, 32) and m.shape == (32, 32)
    assert set(m.unique().tolist()) <= set(np.unique(mask).tolist())


@pytest.mark.parametrize(
    "kwargs, match", [({"crop_size": 0}, "crop_size"), ({"crop_size": 8, "scale": (2.0, 1.0)}, "scale")]
)
def test_train_transform_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_train_transforms(**kwargs)
