"""helpers.config: the SEGLAB_BUDGET setting, and every SEGLAB_* variable in one table read by setting()."""

import re
import subprocess
from pathlib import Path

import pytest

from helpers.config import ENV_VAR, SETTINGS, budget, budget_level, setting, settings_table


@pytest.mark.parametrize(
    "value, level", [(None, "full"), ("", "full"), ("full", "full"), ("ci", "ci"), (" CI ", "ci")]
)
def test_levels(monkeypatch, value, level):
    if value is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, value)
    assert budget_level() == level
    assert budget(full=600, ci=20) == (20 if level == "ci" else 600)


def test_budget_returns_the_objects_given(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "ci")
    small, large = {"steps": 2}, {"steps": 2000}
    assert budget(full=large, ci=small) is small


def test_typo_is_an_error_not_a_silent_ci_budget(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cii")
    with pytest.raises(ValueError, match=r"SEGLAB_BUDGET='cii' is not a budget level; use one of full, ci"):
        budget(full=1, ci=0)


# ------------------------------------------------------------------------------------------------
# every SEGLAB_* variable: one table, one function
# ------------------------------------------------------------------------------------------------
def test_setting_reads_defaults_types_and_names_the_variable(monkeypatch):
    default = int(SETTINGS["SEGLAB_CELL_TIMEOUT"].default)  # the one home of the default (120 s)
    monkeypatch.delenv("SEGLAB_CELL_TIMEOUT", raising=False)
    assert setting("SEGLAB_CELL_TIMEOUT", int) == default
    monkeypatch.setenv("SEGLAB_CELL_TIMEOUT", " 900 ")
    assert setting("SEGLAB_CELL_TIMEOUT", int) == 900
    monkeypatch.setenv("SEGLAB_CELL_TIMEOUT", "")
    assert setting("SEGLAB_CELL_TIMEOUT", int) == default, "an empty variable counts as unset"
    monkeypatch.setenv("SEGLAB_CELL_TIMEOUT", "ten")
    with pytest.raises(ValueError, match=r"SEGLAB_CELL_TIMEOUT='ten' is not a valid int \(seconds"):
        setting("SEGLAB_CELL_TIMEOUT", int)
    monkeypatch.delenv("SEGLAB_DATA", raising=False)
    assert setting("SEGLAB_DATA") is None
    with pytest.raises(KeyError, match="SEGLAB_BUDGT is not a course setting; known: SEGLAB_BUDGET"):
        setting("SEGLAB_BUDGT")


def _names_used_in_the_repository() -> dict[str, list[str]]:
    """Every SEGLAB_* name in the files git tracks (code, notebooks, docs, Makefile), with where it appears."""
    root = Path(__file__).resolve().parents[2]
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    found: dict[str, list[str]] = {}
    for name in files.split():
        if name == "tests/helpers/test_config.py":  # its misspelt names are on purpose
            continue
        path = root / name
        if path.suffix in (".py", ".ipynb", ".md", ".toml", ".cfg") or path.name == "Makefile":
            text = path.read_text(errors="replace") if path.is_file() else ""
            for var in set(re.findall(r"\bSEGLAB_[A-Z][A-Z_]*[A-Z]\b", text)):
                found.setdefault(var, []).append(name)
    return found


def test_every_seglab_variable_in_the_repository_is_in_the_table():
    used = _names_used_in_the_repository()
    assert "SEGLAB_BUDGET" in used, "the scan found nothing: it is broken"
    missing = {name: where[:3] for name, where in used.items() if name not in SETTINGS}
    assert not missing, f"add these to helpers.config.SETTINGS (with default, meaning, readers): {missing}"
    # helpers/config.py names every setting in its own table: a variable only it mentions is read by nothing.
    unused = {name for name in SETTINGS if set(used.get(name, [])) <= {"helpers/config.py"}}
    assert not unused, f"SETTINGS lists variables nothing reads any more: {sorted(unused)}"


def test_the_table_prints_every_setting():
    table = settings_table()
    assert all(f"| `{name}` |" in table for name in SETTINGS)
    assert "| `SEGLAB_BUDGET` | `full` |" in table and "| `SEGLAB_DATA` | unset |" in table
