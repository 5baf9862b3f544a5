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
STUDENT_KERNEL = ROOT / "tests" / "student_kernel"
CONSTRAINTS = {
    m.group(1).lower(): m.group(2)
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M)
}


PROJECT = PYPROJECT["project"]["name"]
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
# What a student's kernel must never need: a Jupyter server or the instructors' grading stack.
NOT_FOR_STUDENTS = {"jupyterlab", "jupyter-server", "notebook", "nbclassic", "nbgrader", "jupyter", "voila"}
STUDENT_RUNTIME = {"torch", "torchvision", "numpy", "pillow", "matplotlib", "tqdm", "ipywidgets"}


def _names(requirements: list[str]) -> list[str]:
    return [re.split(r"[<>=!~\[; @]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements]


def test_pyproject_keeps_ranges_and_constraints_pin_them():
    deps = PYPROJECT["project"]["dependencies"] + [r for extra in EXTRAS.values() for r in extra]
    exact = [d for d in deps if "==" in d]
    assert not exact, (
        f"pyproject.toml must keep ranges, found exact pins {exact}; put pins in constraints.txt"
    )
    pins = {name.replace("_", "-") for name in CONSTRAINTS}
    unpinned = [n for n in _names(deps) if n not in pins and n != PROJECT]
    assert not unpinned, f"constraints.txt has no exact pin for {unpinned}"
    assert CONSTRAINTS["torch"] == "2.14.1" and CONSTRAINTS["torchvision"] == "0.29.1"
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"


def test_student_runtime_is_light_and_extras_hold_the_rest():
    """`pip install seglabs` gives a student's kernel what it runs; JupyterLab and grading are extras."""
    runtime = set(_names(PYPROJECT["project"]["dependencies"]))
    assert runtime == STUDENT_RUNTIME, (
        f"runtime requirements {sorted(runtime)}, expected {sorted(STUDENT_RUNTIME)}"
    )
    assert {"jupyterlab", "ipykernel"} <= set(_names(EXTRAS["lab"])), f"the lab extra is {EXTRAS['lab']}"
    assert "nbgrader" in _names(EXTRAS["grading"]), f"the grading extra is {EXTRAS['grading']}"
    dev = EXTRAS["dev"]
    assert any(r.replace(" ", "").startswith(f"{PROJECT}[") and "lab" in r and "grading" in r for r in dev), (
        f"the dev extra must include the lab and grading extras, got {dev}"
    )


def _installed_runtime_closure() -> tuple[list[str], set[str]]:
    """The installed course's runtime requirements (no extras) and every package they pull in, transitively."""
    from importlib import metadata

    # The dist-info of the installed package (a stale build's seglabs.egg-info in the checkout may shadow it).
    dist = next((d for d in metadata.distributions(name=PROJECT) if d.read_text("METADATA")), None)
    assert dist is not None, f"{PROJECT} is not installed: make install"
    direct = [r for r in dist.requires or [] if "extra ==" not in r]
    seen, todo = set(), _names(direct)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # e.g. a platform-only dependency not installed here
        todo += _names([r for r in requires if "extra ==" not in r])
    return direct, seen


def test_installed_runtime_needs_no_jupyter_server_and_no_grading_package():
    direct, closure = _installed_runtime_closure()
    assert set(_names(direct)) == set(_names(PYPROJECT["project"]["dependencies"])), (
        f"the installed metadata {direct} is not pyproject.toml's: reinstall (make install)"
    )
    assert not closure & NOT_FOR_STUDENTS, (
        f"a student's install would pull in {sorted(closure & NOT_FOR_STUDENTS)} (via {sorted(closure)})"
    )


def test_course_without_the_grading_extra_says_how_to_get_it(tmp_path):
    """The `course` entry point in an environment without nbgrader: the install line, not a traceback."""
    import sys

    env = dict(os.environ, SEGLAB_BLOCK_IMPORTS="nbgrader", PYTHONPATH=str(STUDENT_KERNEL))
    script = PYPROJECT["project"]["scripts"]["course"]
    module, func = script.split(":")
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}(['export']))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "nbgrader" in result.stderr and ".[grading]" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


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


def _student_kernel_env() -> dict:
    """The environment `make test` gives the solutions' nbval run (the Makefile's STUDENT_KERNEL)."""
    makefile = (ROOT / "Makefile").read_text()
    nbval_lines = [line for line in makefile.splitlines() if " solutions " in line and "pytest" in line]
    assert nbval_lines and all("$(STUDENT_KERNEL)" in line for line in nbval_lines), (
        f"every nbval run of the solutions must use $(STUDENT_KERNEL): {nbval_lines}"
    )
    setting = re.search(r"^STUDENT_KERNEL := (.*)$", makefile, re.M).group(1)
    pairs = dict(item.split("=", 1) for item in setting.replace("$(CURDIR)", str(ROOT)).split())
    assert set(pairs["SEGLAB_BLOCK_IMPORTS"].split(",")) >= {
        "nbgrader",
        "jupyterlab",
        "jupyter_server",
        "notebook",
    }
    return pairs


@pytest.mark.slow
def test_solutions_run_in_a_kernel_without_jupyter_server_and_grading(tmp_path):
    """nbval with the Makefile's STUDENT_KERNEL: the kernel imports helpers but none of the blocked packages."""
    import sys

    import nbformat

    blocked = _student_kernel_env()["SEGLAB_BLOCK_IMPORTS"].split(",")
    probe = "import importlib, sys\n" + "".join(
        f"try:\n    importlib.import_module({name!r})\nexcept ModuleNotFoundError:\n    pass\n"
        f"else:\n    sys.exit('{name} was importable')\n"
        for name in blocked
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import helpers.train, tqdm.auto"),
                                         nbformat.v4.new_code_cell(probe)])  # fmt: skip
    nbformat.write(nb, tmp_path / "probe.ipynb")
    env = dict(os.environ, **_student_kernel_env())
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "--rootdir", str(tmp_path), str(tmp_path / "probe.ipynb")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and "2 passed" in result.stdout, (
        result.stdout[-3000:] + result.stderr[-2000:]
    )
