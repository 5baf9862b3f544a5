"""Lab 05: what pretraining on crop labels buys an FCN, and U-Net concatenation vs FCN addition at equal CPU time.

1. **Pretrained vs scratch.** Lab 05's crop classifier is trained on multi-label 24×24 crops, convolutionalised
   and fine-tuned as the lab's ``ConvFCN``; the same architecture is trained from random weights for the same
   number of steps. Both are scored on held-out scenes (``render_scene(90_000 + i)``) along the way. The scratch
   run then continues for as many extra steps as the classifier's training cost in CPU time, so the table also
   answers "is pretraining worth its own compute?".
2. **U-Net vs FCN at equal time.** The lab's ``UNet`` (decoder of ``UpBlock`` concatenations) and ``ConvFCN`` from
   random weights each train for the same number of CPU-seconds; parameters, images per CPU-second and held-out
   mIoU are reported.

The models and helpers are executed from the solution notebook ``solutions/05_classifier_to_fcn`` itself (its
answer and given cells, read as plain JSON), so the benchmark measures the code students are graded against.
Training: Adam, lr 3e-3, batch 16, random horizontal flips, in-memory scenes, ``--threads`` torch threads (default
1), CPU time by ``time.process_time()`` so a shared machine stays fair (record the load with the figures)::

    python -m benchmarks.bench_lab05                       # defaults of the lab's full budget
    python -m benchmarks.bench_lab05 --steps 300 --seconds 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from helpers.data import ensure_scenes, render_scene

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "05_classifier_to_fcn" / "05_classifier_to_fcn.ipynb"
# Answer cells by grade_id; the given cells are found by what they define.
CELLS = ("ex2_labels", "ex3_convolutionalize", "ex5_upblock")
GIVEN = ("def make_classifier", "class ConvFCN", "class UNet")
HELD_OUT_FIRST_SEED = 90_000


def load_lab(path: Path = NOTEBOOK) -> dict:
    """Execute the lab's model-defining cells (given and solution); return their namespace."""
    if not path.is_file():
        sys.exit(f"error: {path} not found (run from a checkout of the course repository)")
    cells = json.loads(path.read_text())["cells"]
    sources = []
    for cell in cells:
        source = "".join(cell["source"])
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell["cell_type"] == "code" and (grade_id in CELLS or any(g in source for g in GIVEN)):
            for tail in ("\n# Same scenes as Labs 01 and 04", "\nFT_PLAN = "):  # not the data-loading tails
                source = source.split(tail)[0]
            sources.append(source)
    from helpers.data import IGNORE_INDEX, NUM_CLASSES, SegmentationFolder

    namespace = {"torch": torch, "nn": torch.nn, "F": F, "np": np, "math": __import__("math"),
                 "copy": __import__("copy"), "NUM_CLASSES": NUM_CLASSES, "IGNORE_INDEX": IGNORE_INDEX,
                 "SegmentationFolder": SegmentationFolder}  # fmt: skip
    for source in sources:
        exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the course's own notebook
    return namespace


def held_out(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    scenes = [render_scene(HELD_OUT_FIRST_SEED + i) for i in range(n)]
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    return images, torch.from_numpy(np.stack([s.mask for s in scenes])).long()


@torch.no_grad()
def miou(model, images, masks) -> float:
    """Mean IoU over the classes present, from one confusion matrix (255 ignored)."""
    model.eval()
    pred = torch.cat([model(images[k : k + 100]).argmax(1) for k in range(0, len(images), 100)])
    model.train()
    keep = masks != 255
    counts = torch.bincount(masks[keep] * 5 + pred[keep], minlength=25).reshape(5, 5).double()
    inter = counts.diag()
    union = counts.sum(0) + counts.sum(1) - inter
    return float((inter[union > 0] / union[union > 0]).mean())


class Trainer:
    """Adam, cross-entropy with 255 ignored, random batches with flips; counts CPU-seconds of training only."""

    def __init__(self, model, images, masks, seed: int, batch: int = 16, lr: float = 3e-3):
        self.model, self.images, self.masks, self.batch = model, images, masks, batch
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps, self.cpu_s = 0, 0.0

    def run(self, steps: int | None = None, cpu_seconds: float | None = None) -> None:
        done = 0
        while (steps is None or done < steps) and (cpu_seconds is None or self.cpu_s < cpu_seconds):
            start = time.process_time()
            pick = torch.randint(0, len(self.images), (self.batch,), generator=self.generator)
            x, y = self.images[pick], self.masks[pick]
            flip = torch.rand(self.batch, generator=self.generator) < 0.5
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            loss = F.cross_entropy(self.model(x), y, ignore_index=255)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.cpu_s += time.process_time() - start
            self.steps += 1
            done += 1


def train_classifier(lab: dict, images, masks, steps: int) -> tuple[torch.nn.Module, float]:
    """The lab's graded classifier run (crops labelled by crop_labels, BCE, Adam); returns it and its CPU-s."""
    crops, crop_masks = lab["random_crops"](
        images, masks, 20_000, lab["CROP"], torch.Generator().manual_seed(1)
    )
    labels = lab["crop_labels"](crop_masks)
    torch.manual_seed(0)
    classifier = lab["make_classifier"]()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(0)
    start = time.process_time()
    for _ in range(steps):
        batch = torch.randint(0, len(crops), (64,), generator=order)
        loss = F.binary_cross_entropy_with_logits(classifier(crops[batch]), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return classifier.eval(), time.process_time() - start


def curves(lab, classifier, clf_cpu_s, images, masks, test, steps: int, every: int) -> dict:
    """mIoU against steps for the pretrained and the scratch FCN; then scratch continued by clf_cpu_s."""
    out = {}
    for name in ("pretrained", "scratch"):
        torch.manual_seed(0)
        source = classifier if name == "pretrained" else lab["make_classifier"]()
        model = lab["ConvFCN"](lab["convolutionalize"](source))
        trainer = Trainer(model, images, masks, seed=0)
        points = [(0, 0.0, miou(model, *test))]
        while trainer.steps < steps:
            trainer.run(steps=every)
            points.append((trainer.steps, trainer.cpu_s, miou(model, *test)))
        if name == "scratch":  # pay back the classifier's compute: train on for its CPU time
            trainer.run(cpu_seconds=trainer.cpu_s + clf_cpu_s)
            points.append((trainer.steps, trainer.cpu_s, miou(model, *test)))
        out[name] = points
        print(f"{name:>10}: " + "  ".join(f"{s}:{m:.3f}" for s, _, m in points), flush=True)
    return out


def equal_time(lab, images, masks, test, seconds: float) -> dict:
    out = {}
    for name, make in (("FCN (addition)", lambda: lab["ConvFCN"](lab["convolutionalize"](lab["make_classifier"]()))),
                       ("U-Net (concatenation)", lab["UNet"])):  # fmt: skip
        torch.manual_seed(0)
        model = make()
        trainer = Trainer(model, images, masks, seed=0)
        trainer.run(cpu_seconds=seconds)
        out[name] = {"params": sum(p.numel() for p in model.parameters()), "steps": trainer.steps,
                     "images_per_cpu_s": trainer.steps * trainer.batch / trainer.cpu_s,
                     "miou": miou(model, *test)}  # fmt: skip
        print(f"{name:>22}: {out[name]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clf-steps", type=int, default=1500, help="classifier steps (the lab's full budget)"
    )
    parser.add_argument(
        "--steps", type=int, default=900, help="fine-tuning steps per run (the lab's full budget)"
    )
    parser.add_argument("--every", type=int, default=75, help="evaluate every this many steps")
    parser.add_argument(
        "--seconds", type=float, default=60, help="CPU-seconds per model in the equal-time race"
    )
    parser.add_argument("--held-out", type=int, default=300, help="held-out scenes for every mIoU")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lab = load_lab()
    images, masks = lab["load_split"](ensure_scenes(n_train=2000, n_val=500), "train")
    test = held_out(args.held_out)
    classifier, clf_cpu_s = train_classifier(lab, images, masks, args.clf_steps)
    print(f"classifier: {args.clf_steps} steps in {clf_cpu_s:.1f} CPU-s", flush=True)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch {torch.__version__}",
        "args": {k: str(v) for k, v in vars(args).items()},
        "classifier_cpu_s": clf_cpu_s,
        "curves": curves(lab, classifier, clf_cpu_s, images, masks, test, args.steps, args.every),
        "equal_time": equal_time(lab, images, masks, test, args.seconds),
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
