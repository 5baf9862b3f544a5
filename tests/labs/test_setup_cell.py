"""The standard setup cell (tests/setup_cell.py): silent at home, the right kernel locally, an install on Colab.

The cell runs in a real IPython shell in a subprocess of the project's Python. Where `helpers` must be missing,
the course package is made invisible there (its editable-install finder removed, the checkout off ``sys.path``),
so ``importlib.util.find_spec("helpers")`` really is None. ``%pip`` is replaced by a recorder: the test sees the
exact line IPython would hand to pip, and nothing is installed. Colab is a stub ``google.colab`` package
imported before the cell, as Colab's kernel imports the real one at start-up.

The install source reaches the released cell through the release step (seglabs_grading.install_source): one
test releases a lab with a source configured and checks that only the setup cell's source line changed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap

import pytest
import tomllib
from packaging.requirements import Requirement
from traitlets.config import PyFileConfigLoader

from seglabs_grading.install_source import PLACEHOLDER, pip_arguments, stamp
from tests.labtools import (
    ROOT,
    lab_names,
    make_course,
    nbgrader,
    nbgrader_env,
    normalised,
    read,
    release_path,
)
from tests.setup_cell import SETUP_CELL

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SOURCE = "git+https://git.example.org/teacher/seglabs-course@2026"  # never contacted: %pip is a recorder

RUNNER = textwrap.dedent(
    """
    import contextlib, importlib.util, io, json, sys

    hide, root, colab_stub = sys.argv[1] == "hide", sys.argv[2], sys.argv[3]
    if hide:  # the course package is not installed in this kernel
        # pip's editable install puts a finder on sys.meta_path (or, in compat mode, the checkout on sys.path)
        sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(getattr(f, "__module__", ""))]
        sys.path[:] = [p for p in sys.path if p.rstrip("/") != root]
        importlib.invalidate_caches()
    if colab_stub:  # Colab's kernel has google.colab imported before the first cell runs
        sys.path.insert(0, colab_stub)
        import google.colab  # noqa: F401

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    calls = []
    shell.register_magic_function(lambda line: calls.append(line), magic_kind="line", magic_name="pip")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = shell.run_cell(sys.stdin.read())
    print(json.dumps({
        "helpers_visible": importlib.util.find_spec("helpers") is not None,
        "success": result.success,
        "error": repr(result.error_in_exec or result.error_before_exec),
        "pip_calls": calls,
        "printed": out.getvalue(),
    }))
    """
)


def _run(cell: str, tmp_path, *, hide_helpers: bool, colab: bool = False, opt_in: bool = False) -> dict:
    stub = ""
    if colab:
        (tmp_path / "stub" / "google" / "colab").mkdir(parents=True)
        (tmp_path / "stub" / "google" / "__init__.py").write_text("")
        (tmp_path / "stub" / "google" / "colab" / "__init__.py").write_text('"""stand-in for Colab"""\n')
        stub = str(tmp_path / "stub")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)} | ({"SEGLAB_INSTALL": "1"} if opt_in else {})
    proc = subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, "hide" if hide_helpers else "keep", str(ROOT), stub],
        input=cell,
        cwd=tmp_path,  # not the checkout: `helpers` must not be found as a folder of the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"the setup cell's runner failed:\n{proc.stderr[-3000:]}"
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["helpers_visible"] != hide_helpers, "the simulation failed: `helpers` visibility is wrong"
    assert got["success"], f"the setup cell raised: {got['error']}\n{got['printed']}"
    return got


def _installed_requirement(pip_line: str) -> Requirement:
    args = shlex.split(pip_line)
    assert args[0] == "install", f"%pip {pip_line!r} does not install"
    specs = [a for a in args[1:] if not a.startswith("-")]
    assert len(specs) == 1, f"expected one package spec in %pip {pip_line!r}, got {specs}"
    return Requirement(specs[0])


def test_colab_installs_from_the_released_source(tmp_path):
    got = _run(stamp(SETUP_CELL, SOURCE), tmp_path, hide_helpers=True, colab=True)
    assert len(got["pip_calls"]) == 1, f"expected exactly one %pip call, got {got['pip_calls']}"
    requirement = _installed_requirement(got["pip_calls"][0])
    assert requirement.name == PYPROJECT["project"]["name"], f"the setup cell installs {requirement.name!r}"
    assert requirement.url == SOURCE, f"installs from {requirement.url!r}, the release said {SOURCE!r}"


def test_colab_without_a_source_says_what_to_ask_for(tmp_path):
    got = _run(SETUP_CELL, tmp_path, hide_helpers=True, colab=True)
    assert got["pip_calls"] == [], f"no source is set, yet the cell ran %pip {got['pip_calls']}"
    assert "instructor" in got["printed"] and "pip install" in got["printed"], got["printed"]


def test_local_kernel_without_helpers_names_the_course_kernel_and_installs_nothing(tmp_path):
    got = _run(stamp(SETUP_CELL, SOURCE), tmp_path, hide_helpers=True)
    assert got["pip_calls"] == [], f"a local kernel got %pip {got['pip_calls']} without opting in"
    assert '"Python (seglabs)"' in got["printed"] and "Change Kernel" in got["printed"], got["printed"]
    assert "SEGLAB_INSTALL=1" in got["printed"], "the message must say how to opt in to an install"


def test_local_kernel_installs_when_the_student_opts_in(tmp_path):
    got = _run(stamp(SETUP_CELL, SOURCE), tmp_path, hide_helpers=True, opt_in=True)
    assert len(got["pip_calls"]) == 1, f"opted in: expected one %pip call, got {got['pip_calls']}"
    assert _installed_requirement(got["pip_calls"][0]).url == SOURCE


@pytest.mark.parametrize("colab", [False, True])
def test_does_nothing_when_helpers_is_installed(tmp_path, colab):
    got = _run(stamp(SETUP_CELL, SOURCE), tmp_path, hide_helpers=False, colab=colab)
    assert got["pip_calls"] == [], (
        f"the setup cell ran %pip although helpers is installed: {got['pip_calls']}"
    )
    assert got["printed"] == "", f"the setup cell printed in the course's environment: {got['printed']!r}"


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


@pytest.mark.parametrize(
    "source, expected",
    [
        ("", ""),
        ("git+https://h.org/t/c@v1", "seglabs@git+https://h.org/t/c@v1"),
        (
            "https://h.org/seglabs-0.1.0-py3-none-any.whl",
            "seglabs@https://h.org/seglabs-0.1.0-py3-none-any.whl",
        ),
        ("seglabs==0.1.0", "seglabs==0.1.0"),
        ("--extra-index-url https://h.org/simple", "--extra-index-url https://h.org/simple seglabs"),
        ("--index-url https://h.org/simple seglabs==0.1", "--index-url https://h.org/simple seglabs==0.1"),
        ("git+https://h.org/t/c#subdirectory=pkg", "'seglabs@git+https://h.org/t/c#subdirectory=pkg'"),
    ],
)
def test_install_sources_become_pip_arguments(source, expected):
    assert pip_arguments(source) == expected


@pytest.mark.parametrize("source", ["numpy", "https://h.org/course-page", "two words"])
def test_a_bad_install_source_is_refused_with_its_value(source):
    with pytest.raises(ValueError, match="StampInstallSource.source"):
        pip_arguments(source)


def test_stamp_writes_only_the_source_line():
    stamped = stamp(SETUP_CELL, SOURCE).splitlines()
    original = SETUP_CELL.splitlines()
    changed = [(a, b) for a, b in zip(original, stamped) if a != b]
    assert len(stamped) == len(original) and changed == [
        (PLACEHOLDER, f"SEGLABS_SOURCE = {pip_arguments(SOURCE)!r}")
    ], changed
    with pytest.raises(ValueError, match="SEGLABS_SOURCE"):
        stamp("print('a cell without the placeholder')", SOURCE)


def _configured_source() -> str:
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    return config.StampInstallSource.get("source", "")


@pytest.mark.parametrize("lab", lab_names())
def test_every_released_setup_cell_carries_the_configured_source(lab):
    if not release_path(lab).exists():
        pytest.fail(f"labs/{lab} is missing: run `make labs`")
    cell = read(release_path(lab)).cells[1]
    assert cell.source == stamp(SETUP_CELL, _configured_source()).strip("\n"), (
        f"labs/{lab}: the setup cell is not the standard one with nbgrader_config.py's install source: run `make labs`"
    )


@pytest.mark.slow
def test_release_writes_the_configured_source_into_the_setup_cell(tmp_path):
    """nbgrader's own generate_assignment, with a source in nbgrader_config.py: only that line differs."""
    lab = lab_names()[0]
    course = make_course(tmp_path, [lab])
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + f"\nc.StampInstallSource.source = {SOURCE!r}\n")
    result = nbgrader(
        ["generate_assignment", lab, "--force"],
        cwd=course,
        env=nbgrader_env(tmp_path / "grading"),
        timeout=300,
    )
    assert result.returncode == 0, f"generate_assignment failed:\n{result.stdout}\n{result.stderr}"
    released = normalised(course / "labs" / lab / f"{lab}.ipynb")
    committed = normalised(release_path(lab))
    setup = "".join(released["cells"][1]["source"])
    assert setup == stamp(SETUP_CELL, SOURCE).strip("\n"), f"released setup cell:\n{setup}"
    for cells in (released["cells"], committed["cells"]):
        cells[1]["source"] = cells[1]["metadata"] = None  # the setup cell (and its checksum) may differ
    assert released == committed, f"the install source changed more than the setup cell of {lab}"
