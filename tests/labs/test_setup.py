"""The set-up the README promises: one dependency list, exact pins in one file, `make lab` headless, `make help`."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
import tomllib
from tests.labtools import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONSTRAINTS = {
    m.group(1).lower(): m.group(2)
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M)
}


def _names(requirements: list[str]) -> list[str]:
    return [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements]


def test_pyproject_keeps_ranges_and_constraints_pin_them():
    deps = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"]
    exact = [d for d in deps if "==" in d]
    assert not exact, (
        f"pyproject.toml must keep ranges, found exact pins {exact}; put pins in constraints.txt"
    )
    unpinned = [n for n in _names(deps) if n not in CONSTRAINTS]
    assert not unpinned, f"constraints.txt has no exact pin for {unpinned}"
    assert CONSTRAINTS["torch"] == "2.14.1" and CONSTRAINTS["torchvision"] == "0.29.1"
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"


def test_installed_versions_are_the_pinned_ones():
    from importlib.metadata import version

    for name in ("torch", "torchvision", "nbgrader", "jupyterlab", "ipywidgets"):
        installed = version(name).split("+", 1)[0]
        assert installed == CONSTRAINTS[name], (
            f"{name} {installed} installed, constraints.txt pins {CONSTRAINTS[name]}"
        )


def test_environment_yml_reuses_the_same_lists():
    text = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in text
    pip_lines = re.findall(r"^\s+- (-.*)$", text, re.M)
    assert pip_lines == ["-c constraints.txt", "-e .[dev]"], (
        f"environment.yml must install `-e .[dev]` with `-c constraints.txt` and nothing else, found {pip_lines}"
    )


def test_every_make_target_is_documented_by_make_help():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY: (.*)$", makefile, re.M).group(1).split()
    documented = set(re.findall(r"^([a-z-]+):.*## ", makefile, re.M))
    assert set(phony) <= documented, (
        f"targets without a `## description` for make help: {set(phony) - documented}"
    )
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for target in ("lab", "test", "test-full", "labs"):
        assert f"make {target} " in out


def test_ci_runs_make_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "set -e" in ci


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_starts_jupyterlab_headless(tmp_path):
    """`make lab ARGS=--no-browser` starts JupyterLab on labs/ and it answers on its URL."""
    port, token = _free_port(), secrets.token_hex(8)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    args = f"--no-browser --port={port} --ServerApp.token={token} --ServerApp.ip=127.0.0.1"
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"ARGS={args}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=5
                ) as r:
                    status, listing = r.status, r.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert status == 200, (
            f"JupyterLab did not answer on port {port}:\n{proc.stdout.read() if proc.poll() else ''}"
        )
        assert "00_getting_started" in listing, "JupyterLab does not serve labs/"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_installs_beside_an_existing_torch_without_replacing_it():
    """JupyterHub/Colab path: `pip install -e .` without our pins keeps the torch that is already there."""
    import json
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"pip could not resolve the package's ranges:\n{result.stderr[-2000:]}"
    to_install = [item["metadata"]["name"].lower() for item in json.loads(result.stdout)["install"]]
    assert "torch" not in to_install and "torchvision" not in to_install, (
        f"installing the course would replace the existing torch: {to_install}"
    )
    assert "seglabs" in to_install
