"""No function in ``helpers/`` or ``seglabs_grading/`` is longer than a screen (60 lines).

Length counts every line from the ``def`` (or its first decorator) to the function's last line, docstring
included; a nested function counts towards its parent too, and is also checked on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60


def long_functions(package: Path, limit: int = MAX_LINES, root: Path = ROOT) -> list[str]:
    """``file:line name (N lines)`` (paths relative to ``root``) for every function in ``package`` longer than
    ``limit`` lines."""
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > limit:
                    found.append(f"{path.relative_to(root)}:{start} {node.name} ({length} lines)")
    return found


def test_the_counter_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\n@decorated\ndef long():\n{body}\n")
    assert long_functions(tmp_path, root=tmp_path) == ["m.py:5 long (62 lines)"]
    assert long_functions(tmp_path, limit=62, root=tmp_path) == []


@pytest.mark.parametrize("package", ["helpers", "seglabs_grading"])
def test_no_function_is_longer_than_a_screen(package):
    offenders = long_functions(ROOT / package)
    assert not offenders, f"functions over {MAX_LINES} lines (split them):\n" + "\n".join(offenders)
