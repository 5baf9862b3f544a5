"""Benchmark of the embedded dataset: how fast scenes are made, and how much they need context.

Prints
1. scene-generation throughput (render only, and render + write in the VOC layout);
2. validation mIoU of a per-pixel colour classifier (a 1x1-convolution MLP: it sees one pixel at a time)
   and of a small fully-convolutional network, each trained for the same CPU time (process time,
   summed over threads; validation not counted). The gap is what the scenes are calibrated for: the
   per-pixel model plateaus near 0.65 mIoU while the small FCN passes 0.90.

    python benchmarks/bench_data.py                  # 60 CPU-s per model, 1 thread
    python benchmarks/bench_data.py --seconds 20     # quicker, smaller gap

CPU time rather than wall-clock time keeps the comparison fair on a shared machine; on an idle
2-core machine with 2 threads, N CPU-s take roughly N / 1.7 s of wall-clock time.

The FCN here is the benchmark's own (a small U-Net-like encoder/decoder); the course's FCN is built by
students in lab 04. Record measured figures in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from helpers.data import CLASSES, NUM_CLASSES, SegmentationFolder, ensure_scenes, make_scenes, render_scene
from helpers.metrics import SegmentationMetric


def per_pixel_mlp(width: int = 64) -> nn.Module:
    """A classifier of single pixels: every layer is 1x1, so no pixel sees its neighbours."""
    return nn.Sequential(
        nn.Conv2d(3, width, 1),
        nn.ReLU(),
        nn.Conv2d(width, width, 1),
        nn.ReLU(),
        nn.Conv2d(width, width, 1),
        nn.ReLU(),
        nn.Conv2d(width, NUM_CLASSES, 1),
    )


def conv_block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallFCN(nn.Module):
    """Encoder 64 -> 8 px (three stride-2 stages), decoder with skip connections back to 64 px."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.enc1 = nn.Sequential(conv_block(3, c), conv_block(c, c))
        self.enc2 = nn.Sequential(conv_block(c, 2 * c), conv_block(2 * c, 2 * c))
        self.enc3 = nn.Sequential(conv_block(2 * c, 4 * c), conv_block(4 * c, 4 * c))
        self.mid = nn.Sequential(conv_block(4 * c, 4 * c), conv_block(4 * c, 4 * c, dilation=2))
        self.dec3 = conv_block(8 * c, 2 * c)
        self.dec2 = conv_block(4 * c, c)
        self.dec1 = conv_block(2 * c, c)
        self.head = nn.Conv2d(c, NUM_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)  # 64
        e2 = self.enc2(F.max_pool2d(e1, 2))  # 32
        e3 = self.enc3(F.max_pool2d(e2, 2))  # 16
        m = self.mid(F.max_pool2d(e3, 2))  # 8
        d3 = self.dec3(torch.cat([F.interpolate(m, scale_factor=2.0), e3], 1))
        d2 = self.dec2(torch.cat([F.interpolate(d3, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        return self.head(d1)


def load_all(root, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ds = SegmentationFolder(root, split)
    images, masks = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(images), torch.stack(masks)


@torch.no_grad()
def miou_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[float]]:
    model.eval()
    metric = SegmentationMetric(NUM_CLASSES)
    for i in range(0, len(x), 256):
        metric.update(model(x[i : i + 256]).argmax(1), y[i : i + 256])
    model.train()
    out = metric.compute()
    return out["miou"], out["iou_per_class"]


def train_for(model, xtr, ytr, xva, yva, seconds: float, lr: float, *, pixels: bool, evals: int = 6) -> dict:
    """Adam with a cosine learning-rate decay until ``seconds`` of CPU time (this process, all threads) are
    spent on training steps; validation is not counted.

    ``pixels=True`` (the per-pixel model) trains on batches of 8192 random labelled pixels: the same
    1x1-conv network, fed far more varied batches per step than whole images would give it, so its
    plateau is reached well within the budget. Otherwise batches of 32 random images, randomly flipped.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    g = torch.Generator().manual_seed(0)
    if pixels:
        flat_x = xtr.permute(0, 2, 3, 1).reshape(-1, 3)
        flat_y = ytr.reshape(-1)
        keep = flat_y != 255
        flat_x, flat_y = flat_x[keep], flat_y[keep]
    used, wall, steps, images, curve = 0.0, 0.0, 0, 0.0, []
    next_eval = seconds / evals
    while used < seconds:
        c0, w0 = time.process_time(), time.perf_counter()
        for group in opt.param_groups:  # cosine decay over the budget, measured in CPU time
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(used / seconds, 1.0)))
        if pixels:
            idx = torch.randint(0, len(flat_x), (8192,), generator=g)
            xb, yb = flat_x[idx].T.reshape(1, 3, -1, 1), flat_y[idx].reshape(1, -1, 1)
            images += 8192 / (xtr.shape[-1] * xtr.shape[-2])
        else:
            idx = torch.randint(0, len(xtr), (32,), generator=g)
            xb, yb = xtr[idx], ytr[idx]
            if torch.rand((), generator=g) < 0.5:
                xb, yb = xb.flip(-1), yb.flip(-1)
            images += 32
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        used += time.process_time() - c0
        wall += time.perf_counter() - w0
        steps += 1
        if used >= next_eval or used >= seconds:
            miou, _ = miou_of(model, xva, yva)
            curve.append((round(used), round(miou, 3)))
            next_eval += seconds / evals
    miou, per_class = miou_of(model, xva, yva)
    return {
        "miou": miou,
        "per_class": per_class,
        "steps": steps,
        "cpu_s": used,
        "wall_s": wall,
        "images/cpu_s": images / used,
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="training budget per model in CPU seconds (default 60)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see README)")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=16, help="FCN base width (default 16)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--only", choices=["mlp", "fcn"], default=None, help="train only one of the models")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if not args.skip_throughput:
        n = 1000
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            render_scene(i)
        render = (time.perf_counter() - w0, time.process_time() - c0)
        with tempfile.TemporaryDirectory() as tmp:
            w0, c0 = time.perf_counter(), time.process_time()
            make_scenes(tmp, n, 0, progress=False)
            write = (time.perf_counter() - w0, time.process_time() - c0)
        print(
            f"generation (64x64, one process): {n / render[1]:.0f} scenes per CPU-s rendered, "
            f"{n / write[1]:.0f} rendered + written; wall clock here: {n / render[0]:.0f} and {n / write[0]:.0f} scenes/s"
        )

    root = ensure_scenes(n_train=args.n_train, n_val=args.n_val, seed=args.seed, progress=False)
    xtr, ytr = load_all(root, "train")
    xva, yva = load_all(root, "val")
    print(
        f"data: {root} ({len(xtr)} train / {len(xva)} val); {args.threads} thread(s), "
        f"{args.seconds:.0f} CPU-s of training per model"
    )

    results = {}
    for name, make, lr, pixels in (
        ("per-pixel MLP (1x1 convs)", per_pixel_mlp, 3e-3, True),
        (f"small FCN (width {args.width})", lambda: SmallFCN(args.width), 3e-3, False),
    ):
        if args.only and (args.only == "mlp") != name.startswith("per-pixel"):
            continue
        torch.manual_seed(args.seed)
        model = make()
        params = sum(p.numel() for p in model.parameters())
        r = train_for(model, xtr, ytr, xva, yva, args.seconds, lr, pixels=pixels)
        results[name] = r
        per_class = ", ".join(f"{c} {v:.2f}" for c, v in zip(CLASSES, r["per_class"]))
        print(
            f"{name}: {params} params, {r['steps']} steps in {r['cpu_s']:.0f} CPU-s ({r['wall_s']:.0f} s wall), "
            f"{r['images/cpu_s']:.0f} images per CPU-s -> val mIoU {r['miou']:.3f}"
        )
        print(f"    per class: {per_class}")
        print(f"    curve (CPU-s, mIoU): {r['curve']}")
    if len(results) == 2:
        a, b = (r["miou"] for r in results.values())
        print(f"gap: {b - a:+.3f} mIoU in favour of the FCN at equal training time")


if __name__ == "__main__":
    main()
