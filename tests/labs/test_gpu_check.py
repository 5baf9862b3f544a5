"""benchmarks/gpu_check.py's CPU dry run, on a simulated GPU machine: no IPython, ipywidgets, nbformat or nbgrader.

The lent GPU machine has only torch, torchvision, numpy, pillow, matplotlib and tqdm; the dry run is the same
script with the same steps, small, so a change that would break the GPU run breaks here first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import gpu_check
from tests.labtools import ROOT

ABSENT_ON_THE_GPU_MACHINE = (
    "IPython,ipywidgets,ipykernel,nbformat,nbgrader,nbclient,nbconvert,jupyter_client,jupyter_server,jupyterlab,"
    "notebook,comm"
)


@pytest.mark.slow
def test_dry_run_runs_every_step_without_the_jupyter_stack(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(
        os.environ,
        SEGLAB_BLOCK_IMPORTS=ABSENT_ON_THE_GPU_MACHINE,
        PYTHONPATH=str(ROOT / "tests" / "student_kernel"),
        OMP_NUM_THREADS="1",
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"exit {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    report = json.loads(out.read_text())
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["lab04-graded-run", "lab04-quality", "throughput", "transposed-conv"]
    assert all(s["status"] == "ok" for s in steps.values()), report["steps"]
    assert any("no CUDA" in n for n in report["notes"]), report["notes"]
    assert {"IPython", "ipywidgets", "nbformat", "nbgrader"} <= set(report["environment"]["absent"])
    run = steps["lab04-graded-run"]
    assert run["budget"] == "ci" and run["steps"] == 60 and run["device"] == "cpu", run
    quality = steps["lab04-quality"]
    assert quality["ex2_quality_low_tests_bar"] == 0.35 and quality["ex2_quality_high_tests_bar"] == 0.5, (
        quality
    )
    assert quality["ex2_quality_high_tests_miou"] >= 0.5, quality
    rates = steps["throughput"]["images_per_s"]
    assert set(rates) == {"batch 8, fp32, NCHW", "batch 8, fp32, channels_last"} and min(rates.values()) > 0
    assert steps["transposed-conv"]["best_ratio"] > 0
    for name in steps:
        assert f"| {name}" in result.stdout, f"the summary table lacks {name}:\n{result.stdout[-2000:]}"


def test_a_failing_step_is_reported_and_the_run_goes_on():
    step = gpu_check.Step("example")
    with gpu_check.running(step):
        raise RuntimeError("CUDA error: out of memory")
    assert step.status == "failed" and "out of memory" in step.detail, step.as_dict()
    fine = gpu_check.Step("next")
    with gpu_check.running(fine):
        pass
    assert fine.status == "ok"


def test_the_lab_cells_run_stop_at_the_graded_run_and_drop_magics_and_hidden_tests():
    cells, by_id = gpu_check.lab_cells()
    labels = [label for label, _ in cells]
    assert labels[-1].endswith(f"({gpu_check.LAST_TRAINING_CELL})"), labels
    code = "\n".join(source for _, source in cells)
    assert "%matplotlib" not in code and "BEGIN HIDDEN TESTS" not in code and "%pip" not in code
    assert [bar for _, bar in gpu_check.quality_bars(by_id, "full")] == [0.60, 0.85]
