"""The training loop for the labs: seeding, ``fit`` and its parts (``TrainState``, ``train_step``, ``should_stop``).

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

The number of classes is the model's: ``fit`` and ``evaluate`` read it from the scores the model returns
(N x C x H x W) and check it against ``num_classes`` when given and against the dataset's class names.

On CUDA, ``fit`` uses mixed precision (``torch.autocast`` + ``torch.amp.GradScaler``) and asynchronous
host-to-device copies from pinned memory; on MPS and CPU it runs in float32. Devices live in
:mod:`helpers.device`, checkpoints in :mod:`helpers.checkpoint`, loaders in :mod:`helpers.loaders`,
``evaluate`` and ``predict`` in :mod:`helpers.evaluate` (all re-exported here).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from helpers.checkpoint import cpu_state, load_checkpoint, read_checkpoint, save_checkpoint
from helpers.device import autocast, pick_device, resolve_device, to_device, use_amp
from helpers.evaluate import class_count, evaluate, loader_dataset, model_output, predict
from helpers.labels import IGNORE_INDEX
from helpers.loaders import make_loaders

__all__ = [
    "pick_device",
    "seed_everything",
    "History",
    "TrainState",
    "TrainPlan",
    "TrainRun",
    "fit",
    "train_step",
    "should_stop",
    "evaluate",
    "predict",
    "make_loaders",
    "save_checkpoint",
    "load_checkpoint",
]


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


@dataclass
class TrainPlan:
    """When ``fit`` stops and validates, from its arguments and the loader's length (checked here)."""

    epochs: int | None
    steps: int | None
    time_budget_s: float | None
    per_epoch: int | None  # batches per epoch; None for a loader without len()
    total: int | None  # steps to stop at; None: until the time budget (or epochs of an unsized loader)
    eval_every: int | None  # None: at the end of each epoch of an unsized loader


def _plan(loader: Iterable, epochs: Any, steps: Any, time_budget_s: Any, eval_every: Any) -> TrainPlan:
    if epochs is None and steps is None and time_budget_s is None:
        raise ValueError("fit needs epochs=, steps= or time_budget_s= to know when to stop")
    for name, value in (("epochs", epochs), ("steps", steps), ("eval_every", eval_every)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        per_epoch = len(loader)  # type: ignore[arg-type]
    except TypeError:
        per_epoch = None
    if per_epoch == 0:
        raise ValueError("train_loader is empty (no batches): check the dataset and batch_size/drop_last")
    by_steps = [n for n in (steps, epochs * per_epoch if epochs and per_epoch else None) if n]
    total = min(by_steps) if by_steps else None
    if eval_every is None and (epochs is not None or steps is None):
        eval_every = per_epoch  # end of each epoch
    elif eval_every is None:
        eval_every = max(1, total // 10)
    return TrainPlan(epochs, steps, time_budget_s, per_epoch, total, eval_every)


@dataclass
class TrainState:
    """Everything ``fit`` changes while it trains: counters, the history, the best weights, and the running
    sums since the last validation point (cleared by :meth:`start_interval`)."""

    history: History = field(default_factory=History)
    step: int = 0
    seconds: float = 0.0
    epochs_done: int = 0  # counted only for loaders without len()
    best: dict[str, torch.Tensor] | None = None
    loss_sum: float = 0.0
    batches: int = 0
    images: int = 0
    interval_s: float = 0.0

    def record(self, loss: float, images: int, seconds: float) -> None:
        """One optimizer step done."""
        self.step += 1
        self.seconds += seconds
        self.loss_sum, self.batches = self.loss_sum + loss, self.batches + 1
        self.images, self.interval_s = self.images + images, self.interval_s + seconds
        self.history["step_loss"].append(loss)

    def start_interval(self) -> None:
        """Clear the running sums after a validation point."""
        self.loss_sum, self.batches, self.images, self.interval_s = 0.0, 0, 0, 0.0


def should_stop(plan: TrainPlan, state: TrainState) -> str:
    """Why training ends now ("steps", "epochs", "time budget"), or "" to go on. The one stopping rule."""
    if plan.total is not None and state.step >= plan.total:
        return "steps" if plan.steps is not None and state.step >= plan.steps else "epochs"
    if plan.epochs is not None and plan.per_epoch is None and state.epochs_done >= plan.epochs:
        return "epochs"
    if plan.time_budget_s is not None and state.seconds >= plan.time_budget_s:
        return "time budget"
    return ""


@dataclass
class TrainRun:
    """What ``fit`` trains with; fixed for the whole run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: bool
    lr: float
    num_classes: int | None
    dataset: Any
    val_loader: Iterable | None
    checkpoint: Path | None
    plot: Any = None
    bar: Any = None
    checked: bool = False  # the first batch's scores were checked (shape, number of classes)


def train_step(run: TrainRun, images: torch.Tensor, masks: torch.Tensor, step: int) -> tuple[float, float]:
    """One optimizer step on one batch; returns (loss, seconds). The first batch fixes the class count."""
    start = time.perf_counter()
    images, masks = to_device((images, masks), run.device)
    with autocast(run.device, run.amp):
        logits = model_output(run.model(images))
        if not run.checked:
            run.num_classes, run.checked = class_count(logits, masks, run.num_classes, run.dataset), True
        loss = run.loss_fn(logits.float(), masks)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    value = float(loss.detach())  # waits for the device, so the timing is honest
    if not math.isfinite(value):
        raise FloatingPointError(
            f"training loss became {value} at step {step + 1}: lower the learning rate (lr={run.lr})"
        )
    return value, time.perf_counter() - start


def _validation_point(run: TrainRun, plan: TrainPlan, state: TrainState) -> None:
    """Validate, record a history point, keep the best weights, save the checkpoint, update the displays."""
    history = state.history
    miou = acc = math.nan
    if run.val_loader is not None:
        metrics = evaluate(run.model, run.val_loader, run.num_classes, run.device, amp=run.amp)
        miou, acc = metrics["miou"], metrics["pixel_acc"]
    point = {
        "step": state.step,
        "epoch": state.step / plan.per_epoch if plan.per_epoch else math.nan,
        "loss": state.loss_sum / max(state.batches, 1),
        "miou": miou,
        "pixel_acc": acc,
        "seconds": state.seconds,
        "images/s": state.images / state.interval_s if state.interval_s > 0 else math.nan,
    }
    for key, value in point.items():
        history[key].append(value)
    if run.val_loader is None or (not math.isnan(miou) and miou > history.best_miou):
        history.best_miou, history.best_step = (miou if run.val_loader is not None else -math.inf), state.step
        if run.checkpoint is not None:
            state.best = cpu_state(run.model, clone=True)
    if run.checkpoint is not None:
        save_checkpoint(
            run.checkpoint,
            run.model,
            run.optimizer,
            step=state.step,
            seconds=state.seconds,
            best=state.best,
            history=history.state(),
            scaler=run.scaler if run.amp else None,
        )
    if run.plot is not None:
        run.plot.update(state.step, loss=point["loss"], miou=miou)
    if run.bar is not None:
        run.bar.set_postfix(loss=f"{point['loss']:.3f}", miou=f"{miou:.3f}")
    state.start_interval()


def _resume(run: TrainRun, path: Path) -> TrainState:
    """The training state saved in ``path``, loaded into the model, optimizer and RNG."""
    saved = read_checkpoint(path)
    last = saved["last"]
    run.model.load_state_dict(last["model"])
    run.optimizer.load_state_dict(last["optimizer"])
    if run.amp and "scaler" in last:
        run.scaler.load_state_dict(last["scaler"])
    torch.set_rng_state(last["rng"])
    history = History(saved["history"])
    state = TrainState(history, int(last["step"]), float(last["seconds"]), best=saved["model"])
    print(f"resumed from {path} at step {state.step} (best mIoU so far {history.best_miou:.4f})")
    return state


def _train(run: TrainRun, plan: TrainPlan, loader: Iterable, state: TrainState) -> None:
    """Train until :func:`should_stop` says why; ``state.history.stopped_by`` records it."""
    while not (reason := should_stop(plan, state)):
        batches = 0
        for images, masks in loader:
            batches += 1
            loss, seconds = train_step(run, images, masks, state.step)
            state.record(loss, len(images), seconds)
            if run.bar is not None:
                run.bar.update(1)
            reason = should_stop(plan, state)
            if reason or (plan.eval_every and state.step % plan.eval_every == 0):
                state.history.stopped_by = reason
                _validation_point(run, plan, state)
            if reason:
                return
        if batches == 0:
            raise ValueError("train_loader yielded no batches")
        if plan.per_epoch is None:  # an unsized loader: an epoch ends when it is exhausted
            state.epochs_done += 1
            reason = should_stop(plan, state)
            if state.batches and (reason or not plan.eval_every):
                state.history.stopped_by = reason
                _validation_point(run, plan, state)
    state.history.stopped_by = reason  # e.g. resumed a finished run


def _start(
    model,
    train_loader,
    val_loader,
    optimizer,
    loss_fn,
    amp,
    device,
    checkpoint,
    lr,
    weight_decay,
    num_classes,
):
    device = resolve_device(device)
    model.to(device)
    amp = use_amp(amp, device)
    return TrainRun(
        model=model,
        optimizer=optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay),
        loss_fn=loss_fn or nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX),
        scaler=torch.amp.GradScaler("cuda", enabled=amp),
        device=device,
        amp=amp,
        lr=lr,
        num_classes=num_classes,
        dataset=loader_dataset(train_loader),
        val_loader=val_loader,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
    )


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
    num_classes: int | None = None,
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
        num_classes: default: the model's (the C of its N x C x H x W output); when given, it must agree.
        eval_every: validate every this many steps (default: at the end of each epoch, or 10 times
            over a run given in ``steps`` only).
        progress: show a tqdm progress bar.

    The model is left in training mode with the *latest* weights; load the best ones with
    :func:`load_checkpoint`.
    """
    plan = _plan(train_loader, epochs, steps, time_budget_s, eval_every)
    args = (optimizer, loss_fn, amp, device, checkpoint, lr, weight_decay, num_classes)
    run = _start(model, train_loader, val_loader, *args)
    resuming = resume and run.checkpoint is not None and run.checkpoint.is_file()
    state = _resume(run, run.checkpoint) if resuming else TrainState()
    _open_displays(run, plan, state, live_plot, progress)
    _train_until_stopped(run, plan, train_loader, state)
    return state.history


def _train_until_stopped(run: TrainRun, plan: TrainPlan, loader: Iterable, state: TrainState) -> None:
    """:func:`_train`, stopped cleanly by Jupyter's stop button; closes the displays, leaves the model training."""
    run.model.train()
    try:
        _train(run, plan, loader, state)
    except KeyboardInterrupt:
        # Jupyter's stop button: keep what was learned and recorded instead of losing the history.
        state.history.stopped_by = "interrupted"
        print(f"training interrupted at step {state.step}; the model keeps its current weights")
    finally:
        for display in (run.bar, run.plot):
            if display is not None:
                display.close()
        run.model.train()


def _open_displays(
    run: TrainRun, plan: TrainPlan, state: TrainState, live_plot: bool, progress: bool
) -> None:
    """The live plot (with the points of a resumed run) and the progress bar, as asked."""
    from tqdm.auto import tqdm

    from helpers.widgets import LivePlot

    if live_plot:
        run.plot = LivePlot(title=f"training on {run.device}")
        run.plot.extend(state.history)
    if progress:
        run.bar = tqdm(total=plan.total, initial=state.step, desc="training", unit="step")
