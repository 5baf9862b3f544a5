"""helpers.metrics against brute-force loops on random data."""

import math

import pytest
import torch

from helpers.metrics import SegmentationMetric, confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


def brute_cm(pred, target, c, ignore=255):
    cm = [[0] * c for _ in range(c)]
    for p, t in zip(pred.reshape(-1).tolist(), target.reshape(-1).tolist()):
        if t != ignore:
            cm[t][p] += 1
    return torch.tensor(cm)


def brute_iou(cm):
    c = len(cm)
    out = []
    for k in range(c):
        tp = cm[k][k]
        fp = sum(cm[t][k] for t in range(c) if t != k)
        fn = sum(cm[k][p] for p in range(c) if p != k)
        out.append(tp / (tp + fp + fn) if tp + fp + fn else None)
    return out


def random_batch(seed, c=5, shape=(3, 17, 13), ignore_frac=0.1):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, shape, generator=g)
    target[torch.rand(shape, generator=g) < ignore_frac] = 255
    pred = torch.randint(0, c, shape, generator=g)
    return pred, target


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matrix_matches_loop(seed):
    pred, target = random_batch(seed)
    cm = confusion_matrix(pred, target, 5)
    assert cm.dtype == torch.int64 and cm.shape == (5, 5)
    assert torch.equal(cm, brute_cm(pred, target, 5))
    assert int(cm.sum()) == int((target != 255).sum())


def test_rows_are_truth_columns_are_prediction():
    target = torch.tensor([0, 0, 1])
    pred = torch.tensor([1, 1, 1])
    cm = confusion_matrix(pred, target, 2)
    assert cm.tolist() == [[0, 2], [0, 1]]


def test_logits_are_argmaxed():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    assert torch.equal(confusion_matrix(logits, target, 4), brute_cm(logits.argmax(1), target, 4))


def test_ignore_none_counts_everything():
    pred, target = random_batch(1, ignore_frac=0.0)
    assert int(confusion_matrix(pred, target, 5, ignore_index=None).sum()) == target.numel()


@pytest.mark.parametrize("seed", range(5))
def test_iou_and_accuracy_match_loop(seed):
    pred, target = random_batch(seed, c=6)
    pred[pred == 5] = 4  # class 5 never predicted ...
    target[target == 5] = 255  # ... and never true: undefined IoU
    cm = confusion_matrix(pred, target, 6)
    ref = brute_iou(cm.tolist())
    got = iou_per_class(cm)
    assert got.dtype == torch.float64
    for g_, r in zip(got.tolist(), ref):
        assert (math.isnan(g_) and r is None) or g_ == pytest.approx(r)
    defined = [r for r in ref if r is not None]
    assert mean_iou(cm) == pytest.approx(sum(defined) / len(defined))
    valid = target != 255
    assert pixel_accuracy(cm) == pytest.approx(float((pred[valid] == target[valid]).float().mean()))


def test_predicted_but_absent_class_counts_as_zero():
    target = torch.tensor([0, 0, 0, 0])
    pred = torch.tensor([0, 0, 0, 1])
    cm = confusion_matrix(pred, target, 3)
    iou = iou_per_class(cm)
    assert iou[1] == 0 and math.isnan(iou[2])
    assert mean_iou(cm) == pytest.approx((0.75 + 0.0) / 2)


def test_perfect_prediction_scores_one():
    _, target = random_batch(3)
    pred = target.clone()
    pred[pred == 255] = 0
    cm = confusion_matrix(pred, target, 5)
    assert mean_iou(cm) == pytest.approx(1.0) and pixel_accuracy(cm) == pytest.approx(1.0)


def test_no_valid_pixel_gives_nan():
    target = torch.full((4, 4), 255)
    cm = confusion_matrix(torch.zeros(4, 4, dtype=torch.long), target, 3)
    assert int(cm.sum()) == 0
    assert math.isnan(mean_iou(cm)) and math.isnan(pixel_accuracy(cm))
    assert torch.isnan(iou_per_class(cm)).all()


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), "does not match"),
        (torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 7, 255]), "target holds class index 7"),
        (torch.tensor([0, 9, 0, 0]), torch.zeros(4, dtype=torch.long), "pred holds class index 9"),
        (torch.tensor([0, -1, 0, 0]), torch.zeros(4, dtype=torch.long), "pred holds class index -1"),
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), "integer class indices"),
        (torch.zeros(1, 2, 4), torch.zeros(1, 4, dtype=torch.long), "2 score channels"),
    ],
)
def test_bad_inputs_raise_clear_errors(pred, target, match):
    with pytest.raises((ValueError, TypeError), match=match):
        confusion_matrix(pred, target, 3)


def test_bad_confusion_matrix_shape():
    with pytest.raises(ValueError, match="square"):
        mean_iou(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="expects tensors"):
        confusion_matrix([0, 1], torch.tensor([0, 1]), 2)


def test_streaming_metric_equals_one_shot():
    metric = SegmentationMetric(5)
    assert metric.confusion().sum() == 0 and math.isnan(metric.compute()["miou"])
    preds, targets = zip(*(random_batch(s) for s in range(4)))
    for p, t in zip(preds, targets):
        metric.update(p, t)
    whole = confusion_matrix(torch.cat(preds), torch.cat(targets), 5)
    out = metric.compute()
    assert torch.equal(out["cm"], whole)
    assert out["miou"] == pytest.approx(mean_iou(whole))
    assert out["pixel_acc"] == pytest.approx(pixel_accuracy(whole))
    assert len(out["iou_per_class"]) == 5
    metric.reset()
    assert metric.confusion().sum() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_confusion_matrix_stays_on_device():
    pred, target = random_batch(0)
    cm = confusion_matrix(pred.cuda(), target.cuda(), 5)
    assert cm.device.type == "cuda" and torch.equal(cm.cpu(), brute_cm(pred, target, 5))
