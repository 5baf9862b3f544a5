"""helpers.config: the one SEGLAB_BUDGET setting."""

import pytest

from helpers.config import ENV_VAR, budget, budget_level


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
