"""Segmentation metrics from a confusion matrix: pixel accuracy, per-class IoU, mean IoU.

Everything starts from the confusion matrix ``cm`` (rows = true class, columns = predicted class), summed
over a whole dataset and only then turned into scores. That is how PASCAL VOC and torchvision's
references report mIoU; averaging per-image IoUs instead gives a different (usually lower) number.

Conventions (both matter on small validation sets):

* A class that appears neither in the truth nor in the predictions has an *undefined* IoU (0 / 0):
  :func:`iou_per_class` returns NaN for it and :func:`mean_iou` leaves it out of the mean. A class that is
  predicted but absent from the truth has IoU 0 (all its pixels are false positives) and is counted.
* Pixels whose target is ``ignore_index`` (255: VOC's object borders, crop padding) are left out
  entirely, whatever is predicted there.
* With no valid pixel at all (an empty input, or everything ignored), :func:`pixel_accuracy` and
  :func:`mean_iou` return NaN: there is nothing to score, and NaN cannot be mistaken for a real 0.
"""

from __future__ import annotations

import math

import torch

__all__ = ["confusion_matrix", "pixel_accuracy", "iou_per_class", "mean_iou", "SegmentationMetric"]


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """Count pixels by (true class, predicted class).

    Args:
        pred: predicted class indices, same shape as ``target`` (any shape, e.g. N x H x W); or scores with
            one extra class dimension at position 1 (N x C x H x W logits), which are arg-maxed first.
        target: true class indices; pixels equal to ``ignore_index`` are skipped.
        num_classes: number of classes C.
        ignore_index: target value to skip (``None`` to skip nothing).

    Returns:
        int64 tensor C x C on the inputs' device; ``cm[t, p]`` = number of pixels of class t predicted as p.
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"confusion_matrix expects tensors, got pred={type(pred).__name__}, target={type(target).__name__}"
        )
    if pred.is_floating_point() and pred.dim() == target.dim() + 1:
        if pred.shape[1] != num_classes:
            raise ValueError(f"pred has {pred.shape[1]} score channels but num_classes={num_classes}")
        pred = pred.argmax(dim=1)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)} "
            "(pass class indices of the same shape, or N x C x H x W scores)"
        )
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError(
            f"pred and target must hold integer class indices, got {pred.dtype} and {target.dtype} "
            "(arg-max the scores over the class dimension first)"
        )
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long().to(pred.device)
    valid = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    pred, target = pred[valid], target[valid]
    if target.numel():
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"target holds class index {lo if lo < 0 else hi}, outside 0..{num_classes - 1}"
                + (f" (and it is not ignore_index={ignore_index})" if ignore_index is not None else "")
            )
        lo, hi = int(pred.min()), int(pred.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"pred holds class index {lo if lo < 0 else hi}, outside 0..{num_classes - 1}")
    # one bincount over the flat index t * C + p: a single fast kernel on CPU and GPU alike
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_cm(cm: torch.Tensor) -> torch.Tensor:
    cm = torch.as_tensor(cm)
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square C x C confusion matrix, got shape {tuple(cm.shape)}")
    return cm.double()


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Fraction of valid pixels predicted correctly: trace / total (NaN when there are no pixels)."""
    cm = _check_cm(cm)
    total = float(cm.sum())
    return float(cm.diagonal().sum()) / total if total > 0 else math.nan


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """IoU of each class, TP / (TP + FP + FN), as a float64 tensor; NaN for classes absent from both
    the truth and the predictions (see module docstring)."""
    cm = _check_cm(cm)
    tp = cm.diagonal()
    union = cm.sum(dim=0) + cm.sum(dim=1) - tp
    iou = tp / union  # 0 / 0 -> NaN, exactly the "undefined" classes
    return torch.where(union > 0, iou, torch.full_like(iou, math.nan))


def mean_iou(cm: torch.Tensor) -> float:
    """Mean of :func:`iou_per_class` over the classes where it is defined (NaN if none is)."""
    iou = iou_per_class(cm)
    defined = ~torch.isnan(iou)
    return float(iou[defined].mean()) if bool(defined.any()) else math.nan


class SegmentationMetric:
    """Streaming accumulator for evaluation loops::

        metric = SegmentationMetric(num_classes=5)
        for images, masks in loader:
            metric.update(model(images), masks)     # logits or class indices
        print(metric.compute()["miou"])

    The confusion matrix lives on the device of the first batch (no GPU -> CPU copy per batch).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.cm: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.cm = None

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch (see :func:`confusion_matrix` for the accepted shapes)."""
        cm = confusion_matrix(pred.detach(), target, self.num_classes, self.ignore_index)
        self.cm = cm if self.cm is None else self.cm + cm.to(self.cm.device)

    def confusion(self) -> torch.Tensor:
        """The accumulated confusion matrix on the CPU (zeros before any update)."""
        if self.cm is None:
            return torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        return self.cm.cpu()

    def compute(self) -> dict:
        """``{"miou": float, "pixel_acc": float, "iou_per_class": list[float], "cm": C x C int64 tensor}``."""
        cm = self.confusion()
        return {
            "miou": mean_iou(cm),
            "pixel_acc": pixel_accuracy(cm),
            "iou_per_class": iou_per_class(cm).tolist(),
            "cm": cm,
        }
