"""The grading harness: plain-data protocol, kernel side, ``student`` proxy, per-case scoring, real-kernel transport.

Most tests connect the proxy to the kernel side in this process (a loopback transport: the same JSON both ways,
no kernel), so each rule is checked in milliseconds; one test starts a real kernel for the transport.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from helpers.checks import ForbiddenCallError
from seglabs_grading.harness import CallTimeout, KernelDied, StudentError, kernel_side, protocol
from seglabs_grading.harness.proxy import Handle, Student
from seglabs_grading.harness.runner import cell_score, run_hidden, split_test_cell
from seglabs_grading.harness.seed import SECRET_FILE, copy_secret, course_secret, seed_for


class Loopback:
    """The kernel side answering in this process, through the same JSON text a kernel would send."""

    def __init__(self, namespace: dict, tamper=None):
        self.namespace = namespace
        self.tamper = tamper  # optional: rewrites the reply text (a hostile kernel)

    def request(self, message: dict, timeout: float) -> dict:
        reply = kernel_side.reply_text(self.namespace, "loopback", protocol.dumps(message))
        return protocol.loads(self.tamper(reply) if self.tamper else reply)


class Canned:
    """A kernel that answers every request with the same (hostile) reply object."""

    def __init__(self, reply):
        self.reply = reply

    def request(self, message: dict, timeout: float):
        return self.reply


def roundtrip(value):
    return protocol.decode(protocol.loads(protocol.dumps(protocol.encode(value))))


# --- protocol ---------------------------------------------------------------------------------------
PLAIN = [
    None,
    True,
    False,
    0,
    -7,
    2**80,
    1.5,
    -0.0,
    "",
    "grüße ✓",
    [1, [2, "x"]],
    (1, (None,)),
    {"a": 1, 3: [()]},
]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_round_trip_with_their_types(value):
    got = roundtrip(value)
    assert got == value and type(got) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, got) == math.copysign(1, value)


def test_non_finite_floats_round_trip():
    got = roundtrip([math.nan, math.inf, -math.inf])
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize("dtype", sorted(protocol.DTYPES.values(), key=str), ids=str)
@pytest.mark.parametrize("shape", [(), (0, 3), (2, 3, 4)], ids=str)
def test_tensors_of_every_dtype_and_shape_round_trip(dtype, shape):
    t = (
        (torch.arange(math.prod(shape)).reshape(shape) % 2).to(dtype)
        if shape
        else torch.tensor(1, dtype=dtype)
    )
    got = roundtrip(t)
    assert type(got) is torch.Tensor and got.dtype == dtype and got.shape == t.shape and torch.equal(got, t)


def test_a_tensor_subclass_and_torch_size_arrive_as_plain_types():
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    got = roundtrip({"t": torch.ones(2).as_subclass(Liar), "s": torch.Size([2, 3])})
    assert type(got["t"]) is torch.Tensor and got["s"] == (2, 3) and type(got["s"]) is tuple


def test_int_and_str_subclasses_arrive_as_the_builtin_value():
    class Sneaky(int):
        def __eq__(self, other):
            return True

    got = roundtrip([Sneaky(3)])
    assert type(got[0]) is int and got[0] == 3 and got[0] != 4


def test_non_plain_values_are_refused_without_a_handle_maker():
    for value in (object(), {1.5: "x"}, torch.nn.Linear(1, 1)):
        with pytest.raises(protocol.NotPlainData):
            protocol.encode(value)


@pytest.mark.parametrize(
    "data",
    [
        [1, 2],  # an untagged JSON list
        {"$": "pickle", "v": "gASV"},
        {"$": "tensor", "dtype": "float32", "shape": [2], "b64": "AAAA"},  # too few bytes
        {"$": "tensor", "dtype": "object", "shape": [1], "b64": "AAAA"},
        {"$": "tensor", "dtype": "uint8", "shape": [-1], "b64": ""},
        {"$": "tensor", "dtype": "uint8", "shape": [1 << 40], "b64": ""},
        {"$": "dict", "v": [[1.5, 1]]},
        {"$": "f", "v": "1e999"},
        {"$": "handle", "id": 1},  # no handles accepted here
    ],
    ids=str,
)
def test_malformed_values_are_protocol_errors(data):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(data)


def test_sizes_and_depth_are_bounded(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_MESSAGE_BYTES", 1000)
    with pytest.raises(protocol.ProtocolError):
        protocol.dumps(protocol.encode(torch.zeros(1000)))
    with pytest.raises(protocol.ProtocolError):
        protocol.loads("[" * 600 + "]" * 600 + " " * 1000)
    deep: list = []
    for _ in range(protocol.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(protocol.ProtocolError):
        protocol.encode(deep)
    with pytest.raises(protocol.ProtocolError):
        protocol.loads("NaN")


def test_what_the_grader_accepts_from_the_kernel_per_reply_is_bounded(monkeypatch):
    # A result past the bound is refused in the kernel, and the case fails with a message that says so, even where
    # the test expects an error (a ProtocolError is a HarnessFailure, which no `except Exception` catches).
    monkeypatch.setattr(protocol, "MAX_MESSAGE_BYTES", 1000)
    student = Student(Loopback({"big": lambda: torch.zeros(1000), "deep": lambda: [[[[1]]]]}))
    block = (
        "# harness\ndef big():\n    student.big()\n"
        "def caught():\n    try:\n        student.big()\n    except Exception:\n        return\n"
        "run_cases({'big': big, 'caught': caught})\n"
    )
    verdict = run_hidden(block, student, seed=1, points=2, grade_id="t")
    assert verdict.score == 0 and not any(c.passed for c in verdict.cases), verdict
    assert "ProtocolError: the kernel's reply was refused: a tensor of 0.0 MiB is more than one message" in (
        verdict.cases[0].message
    )
    monkeypatch.setattr(protocol, "MAX_DEPTH", 2)
    with pytest.raises(protocol.ProtocolError, match="refused: nested deeper"):
        student.deep()
    # A reply too large to parse is refused before it is parsed, with the same kind of message.
    from seglabs_grading.harness.transport import _parse_reply

    text = '{"nonce": "n", "value": "' + "x" * 2000 + '"}'
    reply = _parse_reply({"data": {protocol.MIME: text}}, "n")
    with pytest.raises(protocol.ProtocolError, match="refused: a reply of 0.0 MiB is more than one message"):
        Student(Canned(reply)).square(2)
    assert _parse_reply({"data": {protocol.MIME: text}}, "other") is None  # not ours: ignored


# --- proxy and kernel side (loopback) ----------------------------------------------------------------
class _Custom(Exception):
    pass


def _namespace() -> dict:
    def square(x):
        return x * x

    def fails(kind):
        raise {"value": ValueError("bad scale"), "key": KeyError("k"), "custom": _Custom("mine")}[kind]

    def interpolates(x):
        return torch.nn.functional.interpolate(x, scale_factor=2)

    def sneaky(x):
        try:
            return torch.nn.functional.interpolate(x, scale_factor=2)
        except Exception:  # noqa: BLE001 - a student hiding the forbidden call
            return x.repeat_interleave(2, -1).repeat_interleave(2, -2)

    return {
        "square": square,
        "fails": fails,
        "interpolates": interpolates,
        "sneaky": sneaky,
        "Net": lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)),
        "CLASSES": ("a", "b"),
        "exit": lambda: exec("raise SystemExit(3)"),
    }


@pytest.fixture
def student():
    return Student(Loopback(_namespace()))


def test_calls_return_plain_data_and_references_need_no_round_trip(student):
    x = torch.randn(2, 3)
    assert torch.equal(student.square(x), x * x)
    assert student.value(student.CLASSES) == ("a", "b")
    assert student.has("square") and not student.has("nothing")
    assert repr(student.square) == "student.square"


def test_a_non_plain_result_is_a_handle_and_can_be_used(student):
    net = student.Net()
    assert isinstance(net, Handle) and net.claimed_type == "torch.nn.modules.container.Sequential"
    state = net.state_dict()
    assert set(state) == {"0.weight", "0.bias"} and all(type(t) is torch.Tensor for t in state.values())
    x = torch.randn(1, 1, 5, 5)
    reference = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    reference.load_state_dict(state)
    assert torch.allclose(net(x), reference(x))
    assert student.type_name(net[0] if False else net) == "torch.nn.modules.container.Sequential"
    children = student.list(net)
    assert len(children) == 1 and isinstance(children[0], Handle)
    assert student.value(net.training) is True
    conv = student.new("torch.nn.Conv2d", 1, 1, kernel_size=1)
    assert isinstance(conv, Handle)
    with pytest.raises(ValueError):
        student.new("os.system", "true")


def test_exceptions_come_back_as_builtin_types_or_student_error(student):
    with pytest.raises(ValueError, match="bad scale"):
        student.fails("value")
    with pytest.raises(KeyError):
        student.fails("key")
    with pytest.raises(StudentError) as info:
        student.fails("custom")
    assert info.value.type_name.endswith("_Custom") and info.value.message == "mine"
    with pytest.raises(StudentError, match="SystemExit"):
        student.exit()
    with pytest.raises(NameError, match="did its cell run"):
        student.undefined(1)


def test_a_forbidden_call_is_reported_even_when_the_student_catches_it(student):
    x = torch.ones(1, 1, 2, 2)
    with student.forbidding("torch.nn.functional.interpolate", hint="index it"):
        with pytest.raises(ForbiddenCallError, match="index it"):
            student.interpolates(x)
        with pytest.raises(ForbiddenCallError):
            student.sneaky(x)
    assert student.sneaky(x).shape == (1, 1, 4, 4)  # outside the block it is allowed
    assert torch.nn.functional.interpolate.__name__ == "interpolate"  # restored in the kernel


def test_count_torch_calls_counts_dispatched_functions(student):
    (result, count) = student.count_torch_calls(student.square, torch.ones(3))
    assert torch.equal(result, torch.ones(3)) and count >= 1


HOSTILE_REPLIES = [
    None,
    "ok",
    [],
    {},
    {"value": [1, 2]},  # untagged list
    {"value": {"$": "tensor", "dtype": "float32", "shape": [4], "b64": "AAAA"}},
    {"value": {"$": "handle", "id": "x"}},
    {"value": 1, "forbidden": "yes"},
    {"error": "everything"},
    {"error": {"module": "builtins", "type": 3, "message": "x"}},
    {"value": 1, "count": -5},
]


@pytest.mark.parametrize("reply", HOSTILE_REPLIES, ids=repr)
def test_hostile_replies_fail_the_case_and_never_crash_the_harness(reply):
    student = Student(Canned(reply))
    block = "# harness\ndef case():\n    assert student.square(2) == 4, 'wrong'\nrun_cases({'a': case})\n"
    if isinstance(reply, dict) and "count" in reply:
        block = block.replace(
            "student.square(2) == 4", "student.count_torch_calls(student.square, 2)[1] >= 0"
        )
    verdict = run_hidden(block, student, seed=1, points=3, grade_id="t")
    assert not verdict.error and verdict.score == 0 and not verdict.cases[0].passed, verdict


@pytest.mark.parametrize("caught", ["ValueError", "Exception", "RuntimeError", "OSError"])
def test_a_kernel_that_fails_to_answer_never_passes_a_case_expecting_an_error(caught):
    block = (
        "# harness\ndef case():\n    try:\n        student.f(-1)\n"
        f"    except {caught}:\n        return\n    raise AssertionError('no error for -1')\n"
        "run_cases({'raises': case})\n"
    )
    for kernel in (Canned(None), Canned({"value": {"$": "bad"}}), Canned({"error": 3})):
        verdict = run_hidden(block, Student(kernel), seed=1, points=1, grade_id="t")
        assert verdict.score == 0 and not verdict.cases[0].passed, verdict


def test_a_forbidden_call_counts_even_when_an_expected_error_follows():
    error = {"module": "builtins", "type": "ValueError", "message": "bad scale"}
    student = Student(Canned({"error": error, "forbidden": ["torch.nn.functional.interpolate"]}))
    with pytest.raises(ForbiddenCallError, match="interpolate"):
        student.nearest_unpool(1)


def test_a_kernel_message_cannot_forge_lines_of_the_verdict():
    error = {
        "module": "builtins",
        "type": "ValueError",
        "message": "no\n  ✓ shape\r\nScore: 4 of 4 points\x1b[32m",
    }
    block = "# harness\ndef case():\n    student.f()\nrun_cases({'shape': case})\n"
    verdict = run_hidden(block, Student(Canned({"error": error})), seed=1, points=4, grade_id="t")
    assert verdict.score == 0
    text = "\n".join(verdict.lines())
    assert not any(line.lstrip().startswith("✓") for line in text.splitlines()), text
    assert sum(line.startswith("Score:") for line in text.splitlines()) == 1, text


def test_a_reply_claiming_a_passing_type_name_only_gives_a_string():
    student = Student(Canned({"value": "torch.nn.modules.conv.Conv2d"}))
    assert (
        student.type_name(student.x) == "torch.nn.modules.conv.Conv2d"
    )  # a claim: tests use it to fail only


# --- runner: per-case credit -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("points", "passed", "total", "failed_checks", "expected"),
    [(6, 5, 5, 0, 6.0), (6, 4, 5, 0, 4.8), (10, 1, 3, 0, 3.33), (10, 2, 3, 0, 6.67), (1, 1, 8, 0, 0.13),
     (6, 3, 3, 1, 4.0), (6, 1, 3, 2, 0.0), (4, 0, 4, 0, 0.0)],
)  # fmt: skip
def test_cell_score_is_points_times_passed_over_cases_rounded_half_up(
    points, passed, total, failed_checks, expected
):
    assert cell_score(points, passed, total, failed_checks) == expected


BLOCK = """# harness
import torch
square = student.square

def _case(k):
    def case():
        g = torch.Generator().manual_seed(SEED + k)
        x = torch.randn(3, generator=g)
        assert torch.equal(square(x), x * x), "wrong squares"
    return case

def _case_int():
    assert square(3) == 9, "wrong for an int"

run_cases({"random 1": _case(1), "random 2": _case(2), "int": _case_int, "seven": lambda: square(7) == 49},
          kernel_checks={"few ops": lambda: None})
"""


def test_one_failed_case_of_k_scores_p_times_k_minus_1_over_k():
    namespace = _namespace()
    verdict = run_hidden(BLOCK, Student(Loopback(namespace)), seed=5, points=6, grade_id="ex")
    assert [c.passed for c in verdict.cases] == [True] * 4 and verdict.score == 6
    namespace["square"] = lambda x: x * x if not isinstance(x, int) else 0  # wrong for ints only
    verdict = run_hidden(BLOCK, Student(Loopback(namespace)), seed=5, points=6, grade_id="ex")
    assert [c.name for c in verdict.cases if not c.passed] == ["int"]
    assert verdict.score == cell_score(6, 3, 4) == 4.5
    assert "✗ int: wrong for an int" in "\n".join(verdict.lines())


def test_kernel_checks_only_lower_the_score():
    block = BLOCK.replace(
        '{"few ops": lambda: None}', '{"few ops": lambda: (_ for _ in ()).throw(AssertionError("too many"))}'
    )
    verdict = run_hidden(block, Student(Loopback(_namespace())), seed=5, points=6, grade_id="ex")
    assert verdict.score == 4.5 and not verdict.checks[0].passed
    good = run_hidden(BLOCK, Student(Loopback(_namespace())), seed=5, points=6, grade_id="ex")
    assert good.score == 6  # a passing check adds nothing beyond the cases


def test_a_broken_block_or_one_without_cases_scores_zero_with_a_message():
    student = Student(Loopback(_namespace()))
    assert run_hidden("# harness\nraise ValueError('typo')\n", student, seed=0, points=2, grade_id="g").error
    verdict = run_hidden("# harness\nx = 1\n", student, seed=0, points=2, grade_id="g")
    assert verdict.score == 0 and "no cases" in verdict.error


def test_split_test_cell_finds_harness_blocks_only():
    cell = "check(1)\n\n### BEGIN HIDDEN TESTS\n# harness\nrun_cases({})\n### END HIDDEN TESTS\n"
    visible, hidden = split_test_cell(cell)
    assert visible == "check(1)\n" and hidden.startswith("# harness\n") and "check" not in hidden
    assert split_test_cell(cell.replace("# harness\n", "")) is None
    assert split_test_cell("check(1)\n") is None


def test_one_rule_says_which_cells_are_test_and_answer_cells():
    import nbformat

    from seglabs_grading.cells import is_answer_cell, is_test_cell

    def cell(kind, **flags):
        new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        node = new("x = 1")
        node.metadata["nbgrader"] = {"grade_id": "g", **flags}
        return node

    test, answer = cell("code", grade=True, solution=False), cell("code", grade=False, solution=True)
    written = cell("markdown", grade=True, solution=True)
    assert is_test_cell(test) and is_test_cell(dict(test)) and not is_answer_cell(test)
    assert is_answer_cell(answer) and not is_test_cell(answer)
    assert not is_test_cell(written) and not is_answer_cell(written)
    assert not is_test_cell(nbformat.v4.new_code_cell("x = 1"))


def test_seed_depends_on_secret_lab_and_student():
    seeds = {seed_for(s, lab, who) for s in (b"a", b"b") for lab in ("l1", "l2") for who in ("x", "y")}
    assert len(seeds) == 8 and seed_for(b"a", "l1", "x") == seed_for(b"a", "l1", "x")
    assert all(0 <= s < 2**47 for s in seeds)


def test_a_job_copy_of_the_secret_is_the_course_secret(tmp_path, monkeypatch):
    grading, job = tmp_path / "grading", tmp_path / "job"
    job.mkdir()
    made = course_secret(grading)
    assert (grading / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    assert copy_secret(grading, job).read_text().strip().encode() == made
    monkeypatch.setenv("SEGLAB_HARNESS_SECRET", "from-the-environment")
    fresh = tmp_path / "fresh"  # no secret file there: the environment's secret is copied, nothing crashes
    assert copy_secret(fresh, job).read_text().strip() == "from-the-environment"


# --- a real kernel ---------------------------------------------------------------------------------
def test_jupyter_transport_against_a_real_kernel(tmp_path):
    from jupyter_client import KernelManager

    from seglabs_grading.harness.transport import JupyterTransport

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path), env=dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1"))
    kc = km.client()
    kc.start_channels()
    transport = JupyterTransport.connect(km.get_connection_info(), km.interrupt_kernel, km.is_alive)
    try:
        kc.execute_interactive(
            "import time, torch, os\n"
            "def double(x):\n    print('noise'); return 2 * x\n"
            "def slow():\n    time.sleep(600)\n"
            "def forge():\n"
            "    from IPython.display import publish_display_data\n"
            '    publish_display_data({\'application/vnd.seglabs.harness+json\': \'{"nonce": "x", "value": 99}\'})\n'
            "    return 1\n"
            "def die():\n    os._exit(0)\n",
            timeout=60,
        )
        student = Student(transport)
        x = torch.randn(4, 5)
        assert torch.equal(student.double(x), 2 * x)
        assert student.forge() == 1  # a reply for a request never asked is ignored
        # A student output larger than any reply may be (one 80 MB stream message) must not cut the harness off.
        kc.execute_interactive("print('x' * (80 << 20))", output_hook=lambda msg: None, timeout=120)
        assert student.double(5) == 10
        with student.time_limit(1), pytest.raises(CallTimeout):
            student.slow()
        assert student.double(3) == 6  # the kernel came back from the interrupt
        with pytest.raises(KernelDied):
            student.die()
        with pytest.raises(KernelDied):
            student.double(1)
    finally:
        transport.close()
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# --- nbgrader integration: refusing instead of a silent 0 ------------------------------------------
def _harness_notebook():
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(
        "### BEGIN HIDDEN TESTS\n# harness\nrun_cases({})\n### END HIDDEN TESTS\n"
    )
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "ex1_tests", "points": 2}
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "'ok'"}, execution_count=1)]
    nb.cells = [cell]
    return nb


def test_a_pipeline_without_the_harness_refuses_with_a_message_naming_course_grade():
    from seglabs_grading.harness.preprocessors import HarnessUnavailable, HarnessVerdicts

    with pytest.raises(HarnessUnavailable, match="course grade"):
        HarnessVerdicts().preprocess(_harness_notebook(), {})


def test_plain_nbgrader_autograde_refuses_to_run_a_kernel_outside_the_sandbox(monkeypatch):
    from seglabs_grading.harness.preprocessors import HarnessExecute, HarnessUnavailable

    monkeypatch.delenv("SEGLAB_UNSANDBOXED_GRADING", raising=False)
    with pytest.raises(HarnessUnavailable, match="outside the sandbox.*course grade"):
        HarnessExecute().preprocess(_harness_notebook(), {})


def test_verdict_outputs_replace_whatever_the_kernel_wrote():
    from seglabs_grading.harness.preprocessors import STATE, HarnessVerdicts
    from seglabs_grading.harness.runner import CaseResult, Verdict

    nb = _harness_notebook()
    nb.cells[0].metadata["tags"] = ["skip-execution"]
    verdict = Verdict("ex1_tests", 2.0, [CaseResult("a", True), CaseResult("b", False, "wrong")], score=1.0)
    record = {"verdict": verdict.to_dict(), "visible": "✓ visible\nValueError: boom\n"}
    resources = {STATE: {"records": {"ex1_tests": record}, "seed": 7, "cells": ["ex1_tests"]}}
    nb, _ = HarnessVerdicts().preprocess(nb, resources)
    outputs = nb.cells[0].outputs
    assert [o["output_type"] for o in outputs] == ["stream", "stream", "execute_result"]
    assert all(o.get("name", "stdout") == "stdout" for o in outputs)
    assert outputs[-1]["data"]["text/plain"] == "1" and "✗ b: wrong" in outputs[0]["text"]
    assert outputs[1]["text"].startswith("--- what this cell's visible checks printed")  # after, and labelled
    from nbgrader.utils import determine_grade

    assert determine_grade(nb.cells[0]) == (1.0, 2.0)
