"""Scoring a segmentation model: :func:`evaluate` (mIoU over a loader), :func:`predict` (class maps), and
:func:`class_count`, the one rule for the number of classes: the model's, checked against what was said."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from helpers.device import autocast, model_device, to_device, use_amp
from helpers.labels import IGNORE_INDEX
from helpers.metrics import SegmentationMetric

__all__ = ["evaluate", "predict", "class_count", "model_output", "loader_dataset"]


def model_output(out: Any) -> torch.Tensor:
    """torchvision segmentation models return {"out": logits, ...}; ours return the logits."""
    return out["out"] if isinstance(out, dict) else out


def class_count(
    logits: torch.Tensor, masks: torch.Tensor, num_classes: int | None, dataset: Any = None
) -> int:
    """The number of classes, read from the model's scores (N x C x H x W) and checked.

    An explicit ``num_classes`` and the class names a dataset declares (``dataset.classes``, unless it says
    ``classes_declared = False``, e.g. VOC's names assumed for a folder without ``seglab.json``) must agree
    with the model; errors name both numbers."""
    if logits.dim() != 4 or logits.shape[0] != masks.shape[0] or logits.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"the model returned shape {tuple(logits.shape)} for masks of shape {tuple(masks.shape)}; a "
            f"segmentation model must return N x C x H x W scores (C classes) at the input's resolution "
            "(upsample inside the model)"
        )
    found = int(logits.shape[1])
    if num_classes is not None and num_classes != found:
        raise ValueError(
            f"the model returned {found} class scores per pixel but num_classes={num_classes}: give the model "
            f"{num_classes} output channels, or leave num_classes unset to use the model's {found}"
        )
    classes = getattr(dataset, "classes", None)
    if classes is not None and getattr(dataset, "classes_declared", True) and len(classes) != found:
        raise ValueError(
            f"the model returned {found} class scores per pixel but the dataset has {len(classes)} classes "
            f"({', '.join(map(str, classes))}): give the model {len(classes)} output channels"
        )
    return found


def loader_dataset(loader: Any) -> Any:
    return getattr(loader, "dataset", None)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    *,
    amp: bool | str = "auto",
    ignore_index: int = IGNORE_INDEX,
) -> dict:
    """Score ``model`` on every batch of ``loader``.

    Returns ``{"miou", "pixel_acc", "iou_per_class", "cm"}`` from one confusion matrix over the whole
    loader (see :mod:`helpers.metrics` for the conventions). The number of classes is the model's (checked
    against ``num_classes`` when given, and the dataset's class names). The train/eval mode is restored.
    """
    device = model_device(model, device)
    model.to(device)
    amp = use_amp(amp, device)
    was_training = model.training
    model.eval()
    metric = None
    # Iterating a DataLoader draws a seed from the global RNG; evaluating must not change what training
    # draws next, or validating more often would change the trained weights.
    rng_state = torch.get_rng_state()
    try:
        for images, masks in loader:
            images, masks = to_device((images, masks), device)
            with autocast(device, amp):
                logits = model_output(model(images))
            if metric is None:
                num_classes = class_count(logits, masks, num_classes, loader_dataset(loader))
                metric = SegmentationMetric(num_classes, ignore_index)
            class_count(logits, masks, num_classes)
            metric.update(logits.argmax(dim=1), masks)
    finally:
        model.train(was_training)
        torch.set_rng_state(rng_state)
    if metric is None:  # an empty loader: nothing to score (NaN results)
        classes = getattr(loader_dataset(loader), "classes", None)
        metric = SegmentationMetric(num_classes or (len(classes) if classes else 1), ignore_index)
    return metric.compute()


@torch.no_grad()
def predict(model: nn.Module, image: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """Predicted class map(s) for one image (3 x H x W -> H x W) or a batch (N x 3 x H x W -> N x H x W).

    ``image`` may be a float tensor in [0, 1] (as the datasets return) or a uint8 H x W x 3 numpy array
    (as :func:`helpers.data.render_scene` returns). The result is an int64 tensor on the CPU.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"a numpy image must be H x W x 3, got shape {image.shape}")
        image = torch.from_numpy(image).permute(2, 0, 1).float() / (255 if image.dtype == np.uint8 else 1)
    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(
            f"predict expects a 3 x H x W or N x 3 x H x W image tensor, got "
            f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}"
        )
    single = image.dim() == 3
    batch = image[None] if single else image
    device = model_device(model, device)
    was_training = model.training
    model.eval()
    try:
        pred = model_output(model(batch.float().to(device))).argmax(dim=1).cpu()
    finally:
        model.train(was_training)
    return pred[0] if single else pred
