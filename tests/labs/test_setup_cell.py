"""The standard first cell of every lab (tests/setup_cell.py) installs the course on Colab and is silent at home.

The cell runs in a real IPython shell in a subprocess of the project's Python. For the Colab case the course
package is made invisible there (its editable-install finder removed, the checkout off ``sys.path``), so
``importlib.util.find_spec("helpers")`` really is None, and ``%pip`` is replaced by a recorder: the test sees the
exact line IPython would hand to pip, without installing anything.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap

import tomllib
from tests.labtools import ROOT
from packaging.requirements import Requirement
from tests.setup_cell import SETUP_CELL

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

RUNNER = textwrap.dedent(
    """
    import importlib.util, json, sys

    if sys.argv[1] == "hide":  # Colab: the course package is not installed
        # pip's editable install puts a finder on sys.meta_path (or, in compat mode, the checkout on sys.path)
        sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(getattr(f, "__module__", ""))]
        sys.path[:] = [p for p in sys.path if p.rstrip("/") != sys.argv[2]]
        importlib.invalidate_caches()

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    calls = []
    shell.register_magic_function(lambda line: calls.append(line), magic_kind="line", magic_name="pip")
    result = shell.run_cell(sys.stdin.read())
    print(json.dumps({
        "helpers_visible": importlib.util.find_spec("helpers") is not None,
        "success": result.success,
        "error": repr(result.error_in_exec or result.error_before_exec),
        "pip_calls": calls,
    }))
    """
)


def _run_setup_cell(hide_helpers: bool, tmp_path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, "hide" if hide_helpers else "keep", str(ROOT)],
        input=SETUP_CELL,
        cwd=tmp_path,  # not the checkout: `helpers` must not be found as a folder of the working directory
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"the setup cell's runner failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_installs_the_course_package_when_helpers_is_missing(tmp_path):
    got = _run_setup_cell(hide_helpers=True, tmp_path=tmp_path)
    assert not got["helpers_visible"], "the simulation failed: `helpers` is still importable"
    assert got["success"], f"the setup cell failed when helpers is missing: {got['error']}"
    assert len(got["pip_calls"]) == 1, f"expected exactly one %pip call, got {got['pip_calls']}"
    args = shlex.split(got["pip_calls"][0])
    assert args[0] == "install", f"%pip {got['pip_calls'][0]!r} does not install"
    specs = [a for a in args[1:] if not a.startswith("-")]
    assert len(specs) == 1, f"expected one package spec in %pip {got['pip_calls'][0]!r}, got {specs}"
    requirement = Requirement(specs[0])
    assert requirement.name == PYPROJECT["project"]["name"], (
        f"the setup cell installs {requirement.name!r}, but this project is {PYPROJECT['project']['name']!r}"
    )
    assert requirement.url and requirement.url.startswith(("git+https://", "https://")), (
        f"the setup cell must install from a public URL (Colab has no copy of the course), got {specs[0]!r}"
    )


def test_does_nothing_when_helpers_is_installed(tmp_path):
    got = _run_setup_cell(hide_helpers=False, tmp_path=tmp_path)
    assert got["helpers_visible"], "`helpers` should be importable in the project's environment"
    assert got["success"], f"the setup cell failed in the course's environment: {got['error']}"
    assert got["pip_calls"] == [], (
        f"the setup cell ran %pip although helpers is installed: {got['pip_calls']}"
    )


def test_the_installed_package_provides_helpers():
    """What the cell installs is this pyproject's package, and that package is the `helpers` the labs import."""
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "helpers*" in include or "helpers" in include, f"pyproject installs {include}, not helpers"


def test_magics_are_only_reached_when_helpers_is_missing():
    """A magic line outside the `if` would run (and reinstall) on every machine, not only on Colab."""
    magics = [line for line in SETUP_CELL.splitlines() if line.strip().startswith("%")]
    assert magics, "the setup cell has no %pip line"
    outside = [line for line in magics if not line.startswith((" ", "\t"))]
    assert not outside, f"{outside} not inside the `if importlib.util.find_spec('helpers') is None:` block"
