"""Every import of ``helpers`` in the solution notebooks resolves: splitting a module must keep its names."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(ROOT.glob("solutions/*/*.ipynb"))
FROM_IMPORT = re.compile(r"^\s*from (helpers[\w.]*) import \(?([^)#\n]*)\)?", re.M)
MODULE_ATTR = re.compile(r"(?<![\w.])(data|viz|train|metrics|checks|config)\.([A-Za-z_]\w*)")


def _code(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _uses(notebook: Path) -> set[tuple[str, str]]:
    """(module, name) for each ``from helpers.x import name`` and, after ``from helpers import x``, ``x.name``."""
    code, uses, modules = _code(notebook), set(), set()
    for module, names in FROM_IMPORT.findall(code):
        for name in (n.strip().split(" as ")[0] for n in names.split(",")):
            if module == "helpers":  # a module of the package: it must import
                modules.add(name)
                uses.add((f"helpers.{name}", ""))
            elif name:
                uses.add((module, name))
    uses |= {(f"helpers.{m}", name) for m, name in MODULE_ATTR.findall(code) if m in modules}
    return uses


def test_the_scan_finds_the_imports():
    found = set().union(*(_uses(nb) for nb in NOTEBOOKS))
    assert ("helpers.data", "render_scene") in found and ("helpers.viz", "transposed_conv_stepper") in found
    assert ("helpers.train", "fit") in found, "lab 01 uses train.fit after `from helpers import train`"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_helpers_import_of_the_notebook_resolves(notebook):
    missing = [
        f"{m}.{n}" for m, n in sorted(_uses(notebook)) if n and not hasattr(importlib.import_module(m), n)
    ]
    assert not missing, f"{notebook.relative_to(ROOT)} imports names helpers no longer has: {missing}"
