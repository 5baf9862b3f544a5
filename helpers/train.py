"""Training and evaluation loops for the labs: device choice, seeding, ``fit``, ``evaluate``, ``predict``.

Typical use in a notebook::

    from helpers.config import budget
    from helpers.data import ensure_scenes
    from helpers.train import fit, make_loaders, pick_device, seed_everything

    seed_everything(0)                            # before building the model and the loaders
    train_loader, val_loader = make_loaders(ensure_scenes(), batch_size=32)
    model = MyFCN()
    history = fit(model, train_loader, val_loader, steps=budget(full=1500, ci=20), checkpoint="fcn.pt")

Training for a fixed number of ``epochs`` or ``steps`` is deterministic on the CPU for a fixed seed.
``time_budget_s`` stops earlier when the wall-clock budget is spent: convenient on a slow laptop, but
the result then depends on the machine, so grading never relies on it.

On CUDA, ``fit`` uses mixed precision (``torch.autocast`` + ``torch.amp.GradScaler``) and asynchronous
host-to-device copies from pinned memory; on MPS and CPU it runs in float32.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from helpers.data import (
    IGNORE_INDEX,
    NUM_CLASSES,
    SegmentationFolder,
    make_eval_transforms,
    make_train_transforms,
)
from helpers.metrics import SegmentationMetric

__all__ = [
    "pick_device",
    "seed_everything",
    "History",
    "fit",
    "evaluate",
    "predict",
    "make_loaders",
    "load_checkpoint",
]


def pick_device(verbose: bool = True) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU; prints one line saying why."""
    if torch.cuda.is_available():
        device = torch.device("cuda")
        why = f"CUDA GPU found ({torch.cuda.get_device_name(0)}); training uses mixed precision"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
        why = "Apple GPU (MPS) found"
    else:
        device = torch.device("cpu")
        why = f"no GPU found, using {torch.get_num_threads()} CPU thread(s): fine for the labs' 64x64 images"
    if verbose:
        print(f"device: {device} - {why}")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a run can be repeated exactly on the CPU.

    Call it before creating the model (weight initialisation) and the data loaders (shuffling,
    augmentation). cuDNN autotuning is turned off, so GPU runs are repeatable as far as cuDNN allows.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds CUDA and MPS
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


class History(dict):
    """What :func:`fit` records, one entry per validation point (end of epoch or every ``eval_every`` steps).

    Keys (all lists of the same length): ``step`` (optimizer steps done), ``epoch`` (epochs done, may be
    fractional), ``loss`` (mean training loss since the previous point), ``miou`` and ``pixel_acc``
    (validation; NaN without a validation loader), ``seconds`` (training time so far) and ``images/s``
    (training throughput since the previous point). ``step_loss`` holds the loss of every step.
    Attributes ``best_miou`` and ``best_step`` name the best validation point; ``stopped_by`` says why
    training ended ("steps", "epochs", "time budget" or "interrupted": the notebook's stop button
    ends training cleanly and ``fit`` still returns the history).
    """

    KEYS = ("step", "epoch", "loss", "miou", "pixel_acc", "seconds", "images/s")

    def __init__(self, data: dict | None = None):
        super().__init__({k: [] for k in (*self.KEYS, "step_loss")})
        self.best_miou = -math.inf
        self.best_step = -1
        self.stopped_by = ""
        if data:
            for key, values in data.items():
                if key in self:
                    self[key] = list(values)
            self.best_miou = float(data.get("best_miou", -math.inf))
            self.best_step = int(data.get("best_step", -1))

    def state(self) -> dict:
        """Plain dict of lists and numbers (safe for ``torch.load(..., weights_only=True)``)."""
        return {
            **{k: list(v) for k, v in self.items()},
            "best_miou": self.best_miou,
            "best_step": self.best_step,
        }

    def __repr__(self) -> str:
        if not self["step"]:
            return "History(empty)"
        return (
            f"History({len(self['step'])} points, last: step {self['step'][-1]}, loss {self['loss'][-1]:.4f}, "
            f"mIoU {self['miou'][-1]:.4f}; best mIoU {self.best_miou:.4f} at step {self.best_step})"
        )


def _output(out: Any) -> torch.Tensor:
    """torchvision segmentation models return {"out": logits, ...}; ours return the logits."""
    return out["out"] if isinstance(out, dict) else out


def _check_shapes(logits: torch.Tensor, masks: torch.Tensor, num_classes: int) -> None:
    if logits.dim() != 4 or logits.shape[0] != masks.shape[0] or logits.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"the model returned shape {tuple(logits.shape)} for masks of shape {tuple(masks.shape)}; a "
            f"segmentation model must return N x {num_classes} x H x W scores at the input's resolution "
            "(upsample inside the model)"
        )
    if logits.shape[1] != num_classes:
        raise ValueError(
            f"the model returned {logits.shape[1]} class scores per pixel but num_classes={num_classes}"
        )


def _use_amp(amp: bool | str, device: torch.device) -> bool:
    if amp == "auto":
        return device.type == "cuda"
    if amp and device.type != "cuda":
        warnings.warn(f"amp=True needs CUDA; training in float32 on {device}", stacklevel=3)
        return False
    return bool(amp)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA; nothing elsewhere (not every PyTorch build accepts autocast on MPS)."""
    return torch.autocast(device.type, dtype=torch.float16) if enabled else contextlib.nullcontext()


def _to(batch: Iterable[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    non_blocking = device.type == "cuda"  # overlaps the copy with compute when memory is pinned
    return [t.to(device, non_blocking=non_blocking) for t in batch]


def load_checkpoint(model: nn.Module, path: str | os.PathLike, which: str = "best") -> dict:
    """Load weights saved by :func:`fit` into ``model`` (``which`` = "best" or "last"); returns the file's dict.

    The file is read with ``torch.load(path, weights_only=True)``: it holds only tensors, numbers and lists.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist (fit(..., checkpoint={str(path)!r}) writes it)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    model.load_state_dict(state["model"] if which == "best" else state["last"]["model"])
    return state


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    time_budget_s: float | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    amp: bool | str = "auto",
    device: torch.device | str | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    live_plot: bool = True,
    num_classes: int = NUM_CLASSES,
    eval_every: int | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` on ``train_loader`` and validate on ``val_loader``; return a :class:`History`.

    Args:
        epochs / steps: how long to train (give one; with both, whichever ends first). ``steps`` counts
            optimizer steps (batches).
        time_budget_s: also stop when this many seconds of training have passed (validation is not
            counted). May be given alone. Not deterministic: for grading use ``epochs`` or ``steps``.
        lr, weight_decay: for the default optimizer, Adam. Pass ``optimizer`` to use your own.
        loss_fn: default ``nn.CrossEntropyLoss(ignore_index=255)``.
        amp: "auto" (mixed precision on CUDA only), True or False.
        device: default :func:`pick_device` (the model is moved there).
        checkpoint: file to save to at every validation point: the best weights so far (by validation
            mIoU, or the latest without a validation loader) and the latest training state.
        resume: continue from ``checkpoint`` if it exists; ``epochs``/``steps`` are totals, so a
            finished run is not trained further. On the CPU, resuming from an epoch boundary gives the same
            weights as an uninterrupted run.
        live_plot: draw loss and mIoU live in a notebook (printed lines elsewhere).
        eval_every: validate every this many steps (default: at the end of each epoch, or 10 times
            over a run given in ``steps`` only).
        progress: show a tqdm progress bar.

    The model is left in training mode with the *latest* weights; load the best ones with
    :func:`load_checkpoint`.
    """
    from tqdm.auto import tqdm

    from helpers.viz import LivePlot

    if epochs is None and steps is None and time_budget_s is None:
        raise ValueError("fit needs epochs=, steps= or time_budget_s= to know when to stop")
    for name, value in (("epochs", epochs), ("steps", steps), ("eval_every", eval_every)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        per_epoch = None
    if per_epoch == 0:
        raise ValueError("train_loader is empty (no batches): check the dataset and batch_size/drop_last")
    by_steps = [n for n in (steps, epochs * per_epoch if epochs and per_epoch else None) if n]
    total = (
        min(by_steps) if by_steps else None
    )  # None: until the time budget (or epochs of an unsized loader)
    if eval_every is None and (epochs is not None or steps is None):
        eval_every = per_epoch  # end of each epoch (None for an unsized loader: handled at exhaustion)
    elif eval_every is None:
        eval_every = max(1, total // 10)

    device = torch.device(device) if device is not None else pick_device(verbose=False)
    model.to(device)
    use_amp = _use_amp(amp, device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = loss_fn or nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history = History()
    step, trained_s = 0, 0.0
    best_state: dict[str, torch.Tensor] | None = None
    checkpoint = Path(checkpoint) if checkpoint is not None else None

    if resume and checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        last = state["last"]
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        if use_amp and "scaler" in last:
            scaler.load_state_dict(last["scaler"])
        torch.set_rng_state(last["rng"])
        step, trained_s = int(last["step"]), float(last["seconds"])
        history = History(state["history"])
        best_state = state["model"]
        print(f"resumed from {checkpoint} at step {step} (best mIoU so far {history.best_miou:.4f})")

    plot = LivePlot(title=f"training on {device}") if live_plot else None
    if plot is not None and history["step"]:
        plot.extend(history)

    def validate_and_save(run_loss: float, run_n: int, run_images: int, run_s: float) -> None:
        nonlocal best_state
        if val_loader is not None:
            metrics = evaluate(model, val_loader, num_classes=num_classes, device=device, amp=use_amp)
            miou, acc = metrics["miou"], metrics["pixel_acc"]
        else:
            miou = acc = math.nan
        history["step"].append(step)
        history["epoch"].append(step / per_epoch if per_epoch else math.nan)
        history["loss"].append(run_loss / max(run_n, 1))
        history["miou"].append(miou)
        history["pixel_acc"].append(acc)
        history["seconds"].append(trained_s)
        history["images/s"].append(run_images / run_s if run_s > 0 else math.nan)
        improved = val_loader is None or (not math.isnan(miou) and miou > history.best_miou)
        if improved:
            history.best_miou, history.best_step = (miou if val_loader is not None else -math.inf), step
            if checkpoint is not None:
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            last = {
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "step": step,
                "seconds": trained_s,
            }
            if use_amp:
                last["scaler"] = scaler.state_dict()
            tmp = checkpoint.with_name(checkpoint.name + ".tmp")
            torch.save({"model": best_state, "last": last, "history": history.state()}, tmp)
            os.replace(tmp, checkpoint)  # never leave a half-written checkpoint behind
        if plot is not None:
            plot.update(step, loss=history["loss"][-1], miou=miou)
        if bar is not None:
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", miou=f"{miou:.3f}")

    bar = tqdm(total=total, initial=step, desc="training", unit="step") if progress else None
    run_loss, run_n, run_images, run_s = 0.0, 0, 0, 0.0
    epochs_done = 0  # only used when the loader has no len()
    model.train()
    try:
        while not history.stopped_by:
            if total is not None and step >= total:  # e.g. resumed a finished run
                history.stopped_by = "steps" if steps is not None and step >= steps else "epochs"
                break
            batches = 0
            for images, masks in train_loader:
                batches += 1
                start = time.perf_counter()
                images, masks = _to((images, masks), device)
                with _autocast(device, use_amp):
                    logits = _output(model(images))
                    if run_n == 0:
                        _check_shapes(logits, masks, num_classes)
                    loss = loss_fn(logits.float(), masks)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                value = float(loss.detach())  # waits for the device, so the timing below is honest
                elapsed = time.perf_counter() - start
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"training loss became {value} at step {step + 1}: lower the learning rate (lr={lr})"
                    )
                step += 1
                trained_s += elapsed
                run_loss, run_n, run_s = run_loss + value, run_n + 1, run_s + elapsed
                run_images += len(images)
                history["step_loss"].append(value)
                if bar is not None:
                    bar.update(1)
                if total is not None and step >= total:
                    history.stopped_by = "steps" if steps is not None and step >= steps else "epochs"
                elif time_budget_s is not None and trained_s >= time_budget_s:
                    history.stopped_by = "time budget"
                if history.stopped_by or (eval_every and step % eval_every == 0):
                    validate_and_save(run_loss, run_n, run_images, run_s)
                    run_loss, run_n, run_images, run_s = 0.0, 0, 0, 0.0
                if history.stopped_by:
                    break
            else:  # the loader is exhausted: one epoch done
                if batches == 0:
                    raise ValueError("train_loader yielded no batches")
                if per_epoch is None:
                    epochs_done += 1
                    if epochs is not None and epochs_done >= epochs:
                        history.stopped_by = "epochs"
                    if run_n and (history.stopped_by or not eval_every):
                        validate_and_save(run_loss, run_n, run_images, run_s)
                        run_loss, run_n, run_images, run_s = 0.0, 0, 0, 0.0
        return history
    except KeyboardInterrupt:
        # Jupyter's stop button: keep what was learned and recorded instead of losing the history.
        history.stopped_by = "interrupted"
        print(f"training interrupted at step {step}; the model keeps its current weights")
        return history
    finally:
        if bar is not None:
            bar.close()
        if plot is not None:
            plot.close()
        model.train()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    num_classes: int = NUM_CLASSES,
    device: torch.device | str | None = None,
    *,
    amp: bool | str = "auto",
    ignore_index: int = IGNORE_INDEX,
) -> dict:
    """Score ``model`` on every batch of ``loader``.

    Returns ``{"miou", "pixel_acc", "iou_per_class", "cm"}`` from one confusion matrix over the whole
    loader (see :mod:`helpers.metrics` for the conventions). The model's train/eval mode is restored.
    """
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    device = torch.device(device)
    model.to(device)
    use_amp = _use_amp(amp, device)
    was_training = model.training
    model.eval()
    metric = SegmentationMetric(num_classes, ignore_index)
    # Iterating a DataLoader draws a seed from the global RNG; evaluating must not change what training
    # draws next, or validating more often would change the trained weights.
    rng_state = torch.get_rng_state()
    try:
        for images, masks in loader:
            images, masks = _to((images, masks), device)
            with _autocast(device, use_amp):
                logits = _output(model(images))
            _check_shapes(logits, masks, num_classes)
            metric.update(logits.argmax(dim=1), masks)
    finally:
        model.train(was_training)
        torch.set_rng_state(rng_state)
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
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        pred = _output(model(batch.float().to(device))).argmax(dim=1).cpu()
    finally:
        model.train(was_training)
    return pred[0] if single else pred


def make_loaders(
    root: str | os.PathLike,
    batch_size: int = 32,
    crop_size: int | None = None,
    num_workers: int = 0,
    *,
    augment: bool = True,
    scale: tuple[float, float] = (0.75, 1.25),
    eval_size: int | None = None,
    train_split: str = "train",
    val_split: str = "val",
    device: torch.device | str | None = None,
    cache: bool | None = None,
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """Training and validation loaders over a VOC-layout folder (e.g. :func:`helpers.data.ensure_scenes`).

    Training: shuffled, last incomplete batch dropped, augmented with a random horizontal flip and, when
    ``crop_size`` is given, random scaling by ``scale`` then a ``crop_size`` crop (masks padded with 255).
    Validation: in order, unaugmented; pass ``eval_size`` for datasets whose images differ in size (VOC).
    Decoded samples are kept in memory when ``cache`` is True (default: for generated scenes, which carry
    a ``seglab.json``). Memory is pinned when the device is CUDA. Shuffling and augmentation draw from PyTorch's global RNG,
    so :func:`seed_everything` makes them repeatable.
    """
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not augment:
        train_tf = make_eval_transforms(eval_size)
    elif crop_size is not None:
        train_tf = make_train_transforms(crop_size, scale=scale)
    else:
        train_tf = v2.Compose(
            [
                v2.RandomHorizontalFlip(0.5),
                v2.ToDtype(
                    {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None},
                    scale=True,
                ),
            ]
        )
    if cache is None:  # generated scenes are small: keep them decoded in memory
        cache = (Path(root) / "seglab.json").is_file()
    train = SegmentationFolder(root, train_split, transforms=train_tf, cache=cache)
    val = SegmentationFolder(root, val_split, transforms=make_eval_transforms(eval_size), cache=cache)
    if len(train) < batch_size:
        raise ValueError(f"{train!r} has {len(train)} images, fewer than batch_size={batch_size}")
    device = torch.device(device) if device is not None else pick_device(verbose=False)
    pin = device.type == "cuda"
    common = {"num_workers": num_workers, "pin_memory": pin, "persistent_workers": num_workers > 0}
    return (
        torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True, **common),
        torch.utils.data.DataLoader(val, batch_size=batch_size, shuffle=False, **common),
    )
