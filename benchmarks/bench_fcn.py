"""Lab 04's FCN against torchvision's FCN-ResNet50 and the unpooling decoder, at an equal time budget.

Every model trains for the same number of seconds on the same in-memory scenes (the lab's default
dataset: 2000 training scenes of 64x64) with one recipe: Adam, batch 8, horizontal flips, peak lr 3e-3
annealed to zero along a cosine over the time budget (the step count is not known in advance), weights and
batches in the ``channels_last`` memory format (oneDNN on the CPU and cuDNN on a GPU run it faster; about
1.4x the images per CPU-second here). Then each is scored on **held-out scenes** rendered from seeds no
dataset uses (``render_scene(10_000 + i)``) and on the validation split::

    python -m benchmarks.bench_fcn                       # 90 s per model, 2 threads, all models
    python -m benchmarks.bench_fcn --seconds 20          # a quick run
    python -m benchmarks.bench_fcn --models fcn4s,baseline --seconds 60 --clock cpu --threads 1 --seed 1
    python -m benchmarks.bench_fcn --batch-size 16 --no-channels-last   # the recipe before 2026-12-01

``--clock wall`` (default) counts wall-clock seconds; ``--clock cpu`` counts the process's CPU time
(``time.process_time()``, summed over threads), so a comparison stays fair when other jobs share the
cores. With one thread, N CPU-seconds is N seconds of an idle core, a conservative stand-in for N seconds on
two cores. (CPU-seconds still stretch on a crowded machine: a core shared through hyper-threading or a
thrashed cache does less per second, so record the load with the figures.)

The course models (FCN-32s/8s/4s, the 1x1 per-pixel baseline and the unpooling decoder) are executed from
the solution notebook ``solutions/04_fcn/04_fcn.ipynb`` itself (read as plain JSON), so the benchmark always
measures the code students are graded against. This file is not shipped to students. Record figures in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from helpers.data import CLASSES, IGNORE_INDEX, NUM_CLASSES, SegmentationFolder, ensure_scenes, render_scene
from helpers.metrics import confusion_matrix, iou_per_class, mean_iou

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "04_fcn" / "04_fcn.ipynb"
# Cells of the solution notebook that define the models, by nbgrader grade_id (plus the conv_bn_relu cell).
MODEL_CELLS = ("ex1_bilinear", "ex1_fcn", "ex3_models")
HELD_OUT_FIRST_SEED = 10_000


def load_course_models(path: Path = NOTEBOOK) -> dict:
    """Execute the model-defining cells of the lab 04 solution; return its namespace (FCN, PixelBaseline, ...)."""
    if not path.is_file():
        sys.exit(f"error: {path} not found (run from a checkout of the course repository)")
    cells = json.loads(path.read_text())["cells"]  # plain JSON: nbformat need not be installed (a GPU box)
    code = {i: "".join(c["source"]) for i, c in enumerate(cells) if c["cell_type"] == "code"}
    namespace: dict = {"torch": torch, "nn": nn, "F": F, "NUM_CLASSES": NUM_CLASSES}
    sources = [source for source in code.values() if "def conv_bn_relu" in source]
    by_id = {
        c.get("metadata", {}).get("nbgrader", {}).get("grade_id"): code.get(i) for i, c in enumerate(cells)
    }
    missing = [g for g in MODEL_CELLS if g not in by_id]
    if not sources or missing:
        sys.exit(
            f"error: {path} lacks the cells defining the models ({', '.join(missing) or 'conv_bn_relu'})"
        )
    for source in sources + [by_id[g] for g in MODEL_CELLS]:
        exec(compile(source, f"{path.name}:{source.splitlines()[0][:40]}", "exec"), namespace)  # noqa: S102
    return namespace


def torchvision_fcn_resnet50() -> nn.Module:
    """torchvision's FCN with a ResNet-50 backbone, untrained (nothing is downloaded)."""
    from torchvision.models.segmentation import fcn_resnet50

    return fcn_resnet50(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split in memory: float images N x 3 x H x W in [0, 1], int64 masks N x H x W."""
    ds = SegmentationFolder(root, split)
    images, masks = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(images), torch.stack(masks)


def held_out_scenes(n: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes rendered directly (not JPEG-compressed) from seeds no generated dataset uses."""
    scenes = [render_scene(HELD_OUT_FIRST_SEED + i, size) for i in range(n)]
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    masks = torch.from_numpy(np.stack([s.mask for s in scenes])).long()
    return images, masks


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out["out"] if isinstance(out, dict) else out


@torch.no_grad()
def scores(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, device: torch.device) -> dict:
    """mIoU and per-class IoU from one confusion matrix over all images (classes absent everywhere skipped)."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    for i in range(0, len(images), 100):
        pred = logits_of(model, images[i : i + 100].to(device)).argmax(1).cpu()
        counts += confusion_matrix(pred, masks[i : i + 100], NUM_CLASSES, IGNORE_INDEX)
    model.train(was_training)
    return {"miou": mean_iou(counts), "iou": iou_per_class(counts).tolist()}


def train_for(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    seconds: float,
    *,
    lr: float,
    batch_size: int,
    schedule: str,
    device: torch.device,
    seed: int,
    clock: str = "wall",
    channels_last: bool = False,
) -> dict:
    """Adam on random flipped mini-batches until ``seconds`` of training (data included) have passed.

    ``clock`` is "wall" (time.perf_counter) or "cpu" (time.process_time of this process). ``channels_last``
    stores the weights and each batch as N x H x W x C, which oneDNN (CPU) and cuDNN (tensor cores) run faster.
    """
    now = time.process_time if clock == "cpu" else time.perf_counter
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=layout).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    gen = torch.Generator().manual_seed(seed)
    steps = 0
    start, wall_start = now(), time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        if schedule == "cosine":  # decay over the time budget: the number of steps is not known in advance
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(elapsed / seconds, 1.0)))
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        x, y = images[idx], masks[idx]
        if torch.rand((), generator=gen) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        x, y = (
            x.to(device, non_blocking=True).contiguous(memory_format=layout),
            y.to(device, non_blocking=True),
        )
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss = F.cross_entropy(logits_of(model, x).float(), y, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_value = float(loss.detach())  # waits for the device: the clock below is honest
        steps += 1
        elapsed = now() - start
    wall = time.perf_counter() - wall_start
    return {
        "steps": steps,
        "seconds": elapsed,
        "wall_s": wall,
        "images/s": steps * batch_size / elapsed,  # per second of the chosen clock
        "loss": loss_value,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="training time per model (default 90)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="what --seconds counts")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps (default cpu)")
    parser.add_argument(
        "--models",
        default="baseline,fcn32s,fcn8s,fcn4s,unpool,fcn_resnet50",
        help="comma-separated subset of: baseline, fcn32s, fcn16s, fcn8s, fcn4s, unpool, fcn_resnet50",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    parser.add_argument("--held-out", type=int, default=500, help="number of held-out scenes (default 500)")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=True,
        help="train in the channels_last memory format (default; --no-channels-last: NCHW)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    course = load_course_models()
    factories = {
        "baseline": ("1x1 baseline (lab 01)", lambda: course["PixelBaseline"]()),
        "fcn32s": ("FCN-32s (lab 04)", lambda: course["FCN"](variant="32s")),
        "fcn16s": ("FCN-16s (lab 04)", lambda: course["FCN"](variant="16s")),
        "fcn8s": ("FCN-8s (lab 04)", lambda: course["FCN"](variant="8s")),
        "fcn4s": ("FCN-4s (lab 04)", lambda: course["FCN"](variant="4s")),
        "unpool": ("unpool decoder (lab 02 style)", lambda: course["UnpoolNet"]()),
        "fcn_resnet50": ("torchvision fcn_resnet50", torchvision_fcn_resnet50),
    }
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in factories]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(factories)}")

    root = ensure_scenes(n_train=args.n_train, n_val=args.n_val, seed=args.seed, progress=False)
    train_x, train_y = load_split(root, "train")
    val_x, val_y = load_split(root, "val")
    held_x, held_y = held_out_scenes(args.held_out)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
        f"device {device}; {len(train_x)} training scenes, {len(val_x)} validation, {len(held_x)} held-out; "
        f"{args.seconds:.0f} {args.clock}-s per model, batch {args.batch_size}, lr {args.lr} ({args.schedule}), "
        f"{'channels_last' if args.channels_last else 'NCHW'}, seed {args.seed}"
    )
    rows = []
    for key in chosen:
        label, make = factories[key]
        torch.manual_seed(args.seed)
        model = make()
        params = sum(p.numel() for p in model.parameters())
        run = train_for(
            model, train_x, train_y, args.seconds, lr=args.lr, batch_size=args.batch_size,
            schedule=args.schedule, device=device, seed=args.seed, clock=args.clock,
            channels_last=args.channels_last,
        )  # fmt: skip
        held, val = scores(model, held_x, held_y, device), scores(model, val_x, val_y, device)
        rows.append((label, params, run, held, val))
        per_class = " ".join(f"{c} {v:.2f}" for c, v in zip(CLASSES, held["iou"]))
        print(
            f"{label:<30} {params:>10,} params {run['steps']:6d} steps {run['images/s']:7.0f} img/s "
            f"({run['wall_s']:.0f} s wall)  "
            f"held-out mIoU {held['miou']:.3f}  val mIoU {val['miou']:.3f}   [{per_class}]",
            flush=True,
        )

    print(f"\n| model | parameters | steps | images per {args.clock}-s | held-out mIoU | val mIoU |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, params, run, held, val in rows:
        print(
            f"| {label} | {params:,} | {run['steps']} | {run['images/s']:.0f} | {held['miou']:.3f} | "
            f"{val['miou']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
