"""helpers.checks: forbidden built-ins are caught and restored, hidden cases report without leaking, checks fail."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.checks import (
    CheckFailed,
    ForbiddenCallError,
    HiddenTestFailure,
    check_close,
    check_equal,
    check_shape,
    forbidden,
    rel_error,
    require,
    run_cases,
)

X = torch.arange(4.0).reshape(1, 1, 2, 2)


def test_forbidden_catches_module_attribute_alias_and_class_then_restores():
    namespace = {"interpolate": F.interpolate}
    original = F.interpolate
    with forbidden(
        "torch.nn.functional.interpolate", "torch.nn.Upsample", namespace=namespace, hint="use indexing"
    ):
        with pytest.raises(ForbiddenCallError, match="interpolate.*use indexing"):
            F.interpolate(X, scale_factor=2)
        with pytest.raises(ForbiddenCallError):
            namespace["interpolate"](X, scale_factor=2)
        with pytest.raises(ForbiddenCallError):
            nn.Upsample(scale_factor=2)(X)
    assert F.interpolate is original and namespace["interpolate"] is original
    assert nn.Upsample(scale_factor=2)(X).shape == (1, 1, 4, 4)


def test_forbidden_parent_class_before_subclass_restores_both():
    with forbidden("torch.nn.Upsample", "torch.nn.UpsamplingNearest2d"):
        with pytest.raises(ForbiddenCallError):
            nn.UpsamplingNearest2d(scale_factor=2)(X)
    assert "forward" not in nn.UpsamplingNearest2d.__dict__
    assert nn.UpsamplingNearest2d(scale_factor=2)(X).shape == (1, 1, 4, 4)


def test_forbidden_restores_after_an_exception_and_rejects_unknown_names():
    with pytest.raises(RuntimeError, match="student bug"):
        with forbidden("torch.nn.functional.max_unpool2d"):
            raise RuntimeError("student bug")
    assert F.max_unpool2d.__name__ == "max_unpool2d"
    with pytest.raises(ValueError, match="cannot resolve"):
        with forbidden("nosuchmodule.thing"):
            pass


def test_run_cases_names_failing_cases_and_hides_test_source(capsys):
    def wrong():
        raise AssertionError("wrong shape for a non-square input")

    def crash():
        raise TypeError("bad argument")

    with pytest.raises(HiddenTestFailure) as info:
        run_cases({"fine": lambda: None, "non-square": wrong, "crash": crash})
    message = str(info.value)
    assert "1/3 hidden cases passed" in message
    assert "non-square: wrong shape for a non-square input" in message
    assert "crash: your code raised TypeError: bad argument" in message
    # IPython renders only the message: no cell source can be quoted in feedback.
    rendered = info.value._render_traceback_()
    assert rendered[0].startswith("HiddenTestFailure: 1/3") and "def wrong" not in "\n".join(rendered)
    run_cases([("a", lambda: None)])
    assert "all 1 hidden cases passed" in capsys.readouterr().out


def test_visible_checks_pass_print_and_fail_loudly(capsys):
    assert check_close("same", X, X.clone())
    assert check_equal("ints", X.long(), X.long()) and check_equal("list", [1, 2], [1, 2])
    assert check_shape("shape", X, (1, 1, 2, 2))
    assert capsys.readouterr().out.count("✓") == 4
    with pytest.raises(CheckFailed):
        check_close("off", X, X + 1, hint="add nothing")
    out = capsys.readouterr().out
    assert "✗ off" in out and "first mismatch at index (0, 0, 0, 0)" in out and "hint: add nothing" in out
    with pytest.raises(CheckFailed):
        check_equal("dtype", X.int(), X.long())
    with pytest.raises(CheckFailed):
        check_shape("not a tensor", [1, 2], (2,))
    assert not check_equal("lenient", 1, 2, strict=False)


def test_rel_error():
    assert rel_error(X, X) == 0.0
    assert rel_error(torch.tensor([1.0]), torch.tensor([3.0])) == pytest.approx(0.5)


def test_require_names_the_missing_answer():
    defined_here = 1  # noqa: F841 - require looks names up in the caller's globals, not locals
    require("torch", exercise=1)
    with pytest.raises(NotImplementedError, match="finish Exercise 6 first: pixel_model not defined yet"):
        require("torch", "pixel_model", exercise=6)


def test_nan_where_nan_is_expected_says_both_nan(capsys):
    assert check_close("all NaN", torch.full((2, 2), float("nan")), torch.full((2, 2), float("nan")))
    assert "both NaN" in capsys.readouterr().out
    mixed = torch.tensor([1.0, float("nan"), 3.0])
    assert check_close("some NaN", mixed, mixed.clone())
    out = capsys.readouterr().out
    assert "relative error nan" not in out and "1 position both NaN" in out
    assert rel_error(mixed, mixed.clone()) == 0.0
    assert not check_close("NaN against a number", mixed, torch.tensor([1.0, 2.0, 3.0]), strict=False)


def test_infinities_and_nan_against_numbers_are_said_plainly(capsys):
    inf, nan = float("inf"), float("nan")
    same = torch.tensor([inf, 1.0, -inf])
    assert rel_error(same, same.clone()) == 0.0, "the same infinity where it is expected agrees"
    assert check_close("infinities where expected", same, same.clone())
    out = capsys.readouterr().out
    assert "nan" not in out and "1 position inf where inf was expected (fine)" in out, out
    assert "1 position -inf where -inf was expected (fine)" in out, out
    got, expected = torch.tensor([1.0, nan, 3.0]), torch.tensor([1.0, 1.5, 3.0])
    assert rel_error(got, expected) == inf
    assert not check_close("NaN against a number", got, expected, strict=False)
    out = capsys.readouterr().out
    assert "relative error nan" not in out and "got nan at index (1,) where 1.5 expected" in out, out
    assert not check_close(
        "inf against a number", torch.tensor([inf, 2.0]), torch.tensor([1.5, 2.0]), strict=False
    )
    assert "got inf at index (0,) where 1.5 expected" in capsys.readouterr().out
    assert not check_close("opposite infinities", torch.tensor([-inf]), torch.tensor([inf]), strict=False)
    assert "got -inf at index (0,) where inf expected" in capsys.readouterr().out
    mixed = torch.tensor([inf, 2.0])
    assert rel_error(mixed, torch.tensor([inf, 1.5])) == pytest.approx(0.5 / 3.5)
    assert not check_close(
        "a number off next to a matching inf", mixed, torch.tensor([inf, 1.5]), strict=False
    )
    out = capsys.readouterr().out
    assert "relative error 1.43e-01" in out and "got 2, expected 1.5" in out and "nan" not in out, out
