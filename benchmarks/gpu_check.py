"""GPU check: what only a GPU can prove, in one run of at most 6 minutes, on a machine with nothing installed.

Run from the repository root (it imports ``helpers`` from the work tree: no install step)::

    python -m benchmarks.gpu_check                      # CUDA if there is one, else a short CPU dry run
    python -m benchmarks.gpu_check --out /tmp/gpu.json  # where the summary JSON goes (default runs/gpu_check.json)
    make gpu-check

Needs only torch, torchvision, numpy, pillow, matplotlib and tqdm: no Jupyter, IPython, ipywidgets, nbformat or
nbgrader (the lent GPU machine has none of them). Steps:

1. ``lab04-graded-run``: lab 04's solution, its code cells read as plain JSON and executed as plain Python from the
   imports through the graded training run (``SEGLAB_BUDGET=full``: 4x the steps and batch on a GPU, AMP,
   pinned memory, ``non_blocking`` copies: the lab's own code), magics and hidden tests left out;
2. ``lab04-quality``: the trained FCN-4s scored on 200 held-out scenes per bar (seeds 10 000+ and 20 000+, in no
   dataset) against the lab's own bars (``budget(full=..., ci=...)`` in its quality test cells), by an
   evaluation written here;
3. ``throughput``: FCN-4s training images/s with and without AMP and ``channels_last`` (batches already on the
   device, so the GPU is measured, not the data loader);
4. ``transposed-conv``: ``bench_transposed_conv`` on the device (correctness, then timings against the built-in).

Each step reports ``ok``, ``failed`` (with the error) or ``skipped`` (with why). Without CUDA the script says so
and runs every step small on the CPU (``SEGLAB_BUDGET=ci``); exit status 0 when no step failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "04_fcn" / "04_fcn.ipynb"
LAST_TRAINING_CELL = "ex2_train"
QUALITY_CELLS = ("ex2_quality_low_tests", "ex2_quality_high_tests")
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.S)
OPTIONAL = ("IPython", "ipywidgets", "ipykernel", "nbformat", "nbgrader", "jupyterlab")
TIME_LIMIT_S = 360
HELD_OUT_SCENES = 200  # as many as the lab's quality tests score, rendered from seeds no dataset uses
HELD_OUT_SEEDS = (10_000, 20_000)  # one fresh set per quality bar


class Step:
    """One line of the summary: name, status, seconds, what it measured, and why it failed or was skipped."""

    def __init__(self, name: str):
        self.name, self.status, self.seconds, self.detail, self.metrics = name, "skipped", 0.0, "", {}

    def as_dict(self) -> dict:
        return {"step": self.name, "status": self.status, "seconds": round(self.seconds, 1),
                "detail": self.detail, **self.metrics}  # fmt: skip


@contextlib.contextmanager
def running(step: Step):
    """Time the step; an exception marks it failed with the error's last line instead of stopping the run."""
    start = time.perf_counter()
    try:
        yield step
        step.status = "ok"
    except Exception as exc:  # noqa: BLE001  (every failure is reported, the other steps still run)
        step.status = "failed"
        step.detail = f"{type(exc).__name__}: {exc}"[:500]
        traceback.print_exc()
    finally:
        step.seconds = time.perf_counter() - start


def installed(name: str) -> bool:
    """Whether ``name`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def lab_cells(path: Path = NOTEBOOK) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The code cells to run (label, plain source), from the imports through the graded run, and every cell's
    raw source by grade_id. The header and the setup cell are left out (on a bare machine it would %pip)."""
    cells = json.loads(path.read_text())["cells"]
    run, by_id = [], {}
    for index, cell in enumerate(cells):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        collecting = LAST_TRAINING_CELL not in by_id
        by_id[grade_id] = source
        if collecting and index >= 2 and cell["cell_type"] == "code":
            run.append((f"cell {index} ({grade_id or 'given code'})", plain_python(source)))
    missing = [g for g in (LAST_TRAINING_CELL, *QUALITY_CELLS) if g not in by_id]
    if missing:
        raise ValueError(f"{path} has no cell with grade_id {', '.join(missing)}")
    return run, by_id


def plain_python(source: str) -> str:
    """A cell without IPython magics (``%matplotlib inline``) and without its hidden tests."""
    source = HIDDEN.sub("", source)
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def quality_bars(by_id: dict[str, str], level: str) -> list[tuple[str, float]]:
    """(cell, bar) of each quality test, as the lab's test cells state them: ``budget(full=..., ci=...)``."""
    bars = []
    for grade_id in QUALITY_CELLS:
        found = re.search(r"budget\(full=([\d.]+), ci=([\d.]+)\)", by_id[grade_id])
        if not found:
            raise ValueError(f"{grade_id}: no `budget(full=..., ci=...)` bar found in the cell")
        bars.append((grade_id, float(found.group(1 if level == "full" else 2))))
    return bars


def run_lab(step: Step, workdir: Path) -> dict:
    """Execute lab 04's cells in one namespace (cwd: a scratch folder for runs/); return the namespace."""
    cells, _ = lab_cells()
    namespace: dict = {"__name__": "__lab04__"}
    previous = os.getcwd()
    os.chdir(workdir)
    try:
        for label, source in cells:
            step.detail = f"running {label}"
            print(f"[gpu_check] lab 04 {label}", flush=True)
            exec(compile(source, f"{NOTEBOOK.name}:{label}", "exec"), namespace)  # noqa: S102
        results = json.loads((workdir / "runs" / "results.json").read_text())
    finally:
        os.chdir(previous)
    run = results["graded_run"]
    step.detail = ""
    step.metrics = {"device": results["device"], "budget": results["budget"], "steps": run["steps"],
                    "batch_size": namespace["PLAN"]["batch_size"], "val_miou": round(run["miou"], 4),
                    "train_seconds": round(run["seconds"], 1), "images_per_s": round(run["images_per_s"])}  # fmt: skip
    return namespace


def held_out_miou(model, first_seed: int, n: int) -> float:
    """mIoU of ``model`` on ``n`` scenes rendered from ``first_seed`` on (never in a dataset), one confusion matrix."""
    import numpy as np
    import torch

    from helpers.data import IGNORE_INDEX, NUM_CLASSES, render_scene
    from helpers.metrics import confusion_matrix, mean_iou

    device = next(model.parameters()).device
    counts = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(first_seed, first_seed + n, 50):
            scenes = [render_scene(seed, size=64) for seed in range(start, min(start + 50, first_seed + n))]
            x = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
            pred = model(x.to(device)).argmax(1).cpu()
            truth = torch.from_numpy(np.stack([s.mask for s in scenes])).long()
            counts += confusion_matrix(pred, truth, NUM_CLASSES, IGNORE_INDEX)
    model.train(was_training)
    return mean_iou(counts)


def check_quality(step: Step, namespace: dict, level: str) -> None:
    """The trained ``fcn`` against each of the lab's quality bars; fails if any bar is missed."""
    _, by_id = lab_cells()
    missed = []
    for (grade_id, bar), first_seed in zip(quality_bars(by_id, level), HELD_OUT_SEEDS):
        miou = held_out_miou(namespace["fcn"], first_seed, HELD_OUT_SCENES)
        step.metrics[f"{grade_id}_miou"] = round(miou, 4)
        step.metrics[f"{grade_id}_bar"] = bar
        if miou < bar:
            missed.append(f"{grade_id}: held-out mIoU {miou:.3f} < bar {bar}")
    if missed:
        raise AssertionError("; ".join(missed))


def train_rate(make_model, device, *, amp: bool, channels_last: bool, batch: int, seconds: float) -> float:
    """Training images/s of one model on batches already on ``device`` (after a warm-up), device-synchronised."""
    import torch
    import torch.nn.functional as F

    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = make_model().to(device, memory_format=layout).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 64, 64, generator=gen).to(device).contiguous(memory_format=layout)
    y = torch.randint(0, 5, (batch, 64, 64), generator=gen).to(device)

    def one_step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(5):
        one_step()
    sync()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        for _ in range(5):
            one_step()
        steps += 5
        sync()
    return steps * batch / (time.perf_counter() - start)


def check_throughput(step: Step, namespace: dict, device, seconds: float, batches: tuple[int, ...]) -> None:
    """images/s for fp32 / AMP x contiguous / channels_last (AMP only on CUDA), as a table in ``metrics``."""
    import torch

    make = lambda: namespace["FCN"](variant="4s")
    rates = {}
    # The lab's seed_everything asks cuDNN for deterministic kernels; a speed measurement lets it pick the fastest.
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    try:
        for batch in batches:
            for amp in (False, True) if device.type == "cuda" else (False,):
                for channels_last in (False, True):
                    key = f"batch {batch}, {'AMP' if amp else 'fp32'}, {'channels_last' if channels_last else 'NCHW'}"
                    rates[key] = round(train_rate(make, device, amp=amp, channels_last=channels_last, batch=batch,
                                                  seconds=seconds))  # fmt: skip
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved
    if device.type != "cuda":
        step.detail = "AMP is CUDA-only: fp32 rows only;"
    step.metrics["images_per_s"] = rates


def check_transposed_conv(step: Step, device, min_run_time: float) -> None:
    """benchmarks.bench_transposed_conv on ``device``: it exits on a wrong result, else prints its timings."""
    from benchmarks import bench_transposed_conv

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            bench_transposed_conv.main(["--device", device.type, "--min-run-time", str(min_run_time)])
        except SystemExit as exc:
            raise AssertionError(f"bench_transposed_conv: {exc.code}") from None
    lines = out.getvalue().splitlines()
    step.metrics["timings"] = [line.strip() for line in lines if " ms" in line]
    ratios = [float(m) for m in re.findall(r"ratio\s+([\d.]+)x", out.getvalue())]
    if not ratios:
        raise AssertionError(f"bench_transposed_conv printed no ratios:\n{out.getvalue()}")
    step.metrics["best_ratio"] = min(ratios)


def environment(cuda: bool) -> dict:
    import torch
    import torchvision

    info = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "cuda": cuda, "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "absent": [m for m in OPTIONAL if not installed(m)]}  # fmt: skip
    if cuda:
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return info


def run_all(cuda: bool, notes: list[str]) -> list[Step]:
    """The four steps in order; a later step that needs an earlier one's model is skipped with the reason."""
    import torch

    device = torch.device("cuda" if cuda else "cpu")
    steps = [Step(n) for n in ("lab04-graded-run", "lab04-quality", "throughput", "transposed-conv")]
    namespace: dict = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as workdir, running(steps[0]):
        namespace = run_lab(steps[0], Path(workdir))
    if "fcn" in namespace:
        with running(steps[1]):
            check_quality(steps[1], namespace, "full" if cuda else "ci")
    else:
        steps[1].detail = steps[2].detail = "needs the lab's FCN: the graded run did not finish"
    if "FCN" in namespace:
        with running(steps[2]):
            check_throughput(steps[2], namespace, device, 3.0 if cuda else 0.3, (64, 256) if cuda else (8,))
    with running(steps[3]):
        check_transposed_conv(steps[3], device, 1.0 if cuda else 0.05)
    return steps


def summary(env: dict, steps: list[Step], notes: list[str], wall: float) -> str:
    """The one summary table (and the notes) as text."""
    lines = [f"GPU check on {env['device']} (torch {env['torch']}, torchvision {env['torchvision']}, "
             f"CUDA {'yes' if env['cuda'] else 'no: CPU dry run'}), {wall:.0f} s"]  # fmt: skip
    lines += [f"note: {n}" for n in notes]
    lines.append(f"| {'step':<17} | {'status':<7} | {'s':>5} | result |")
    lines.append(f"|{'-' * 19}|{'-' * 9}|{'-' * 7}|---|")
    for s in steps:
        shown = {k: v for k, v in s.metrics.items() if k != "timings"}
        rates = shown.pop("images_per_s", None) if isinstance(shown.get("images_per_s"), dict) else None
        result = ", ".join(f"{k} {v}" for k, v in shown.items())
        if rates:
            result += "images/s: " + "; ".join(f"{a}: {b}" for a, b in rates.items())
        lines.append(
            f"| {s.name:<17} | {s.status:<7} | {s.seconds:5.0f} | {(s.detail + ' ' + result).strip()} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "runs" / "gpu_check.json", help="summary JSON file"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="the short CPU run even when CUDA is available"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("TQDM_MININTERVAL", "10")  # a progress line every 10 s, not a screenful per second
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # also hides the GPU from the lab's pick_device()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # helpers and benchmarks from this work tree, whatever the cwd
    start = time.perf_counter()
    import torch

    notes: list[str] = []

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda:
        notes.append("no CUDA device" + (" used (--dry-run)" if torch.cuda.is_available() else " found") +
                     ": short CPU dry run of the same steps (SEGLAB_BUDGET=ci, 1 thread)")  # fmt: skip
        torch.set_num_threads(1)
    os.environ["SEGLAB_BUDGET"] = "full" if cuda else "ci"
    env = environment(cuda)
    steps = run_all(cuda, notes)
    wall = time.perf_counter() - start
    if wall > TIME_LIMIT_S:
        notes.append(f"took {wall:.0f} s, over the {TIME_LIMIT_S} s this check is sized for")
    table = summary(env, steps, notes, wall)
    print("\n" + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "environment": env,
        "notes": notes,
        "wall_s": round(wall, 1),
        "steps": [s.as_dict() for s in steps],
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {args.out}")
    return 1 if any(s.status == "failed" for s in steps) else 0


if __name__ == "__main__":
    sys.exit(main())
