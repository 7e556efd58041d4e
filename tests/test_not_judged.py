"""Not judged is never agreement: a tensor no reference could judge says so, and keeps the check from passing.

Finite differences cannot judge every tensor: forward values (they
differentiate the engine's own forward), a direction that moves a ReLU unit
sitting exactly at its kink (no step crosses none), per-sample gradients and
the descent step. Such a tensor is ``not judged`` -- neither ``ok`` nor
``fail`` -- and a gradient judged by no reference makes ``report.ok`` False
(exit 1) without being a divergence: ``first_divergence`` names only a tensor
some reference disagrees with.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from manual_backprop import Network, make_case
from manual_backprop.checking.checker import check
from manual_backprop.cli import main
from manual_backprop.cli.check import render
from manual_backprop.compare import PASSING, TensorCheck
from manual_backprop.compare.comparator import NOT_JUDGED
from manual_backprop.engine import trace as engine

from .helpers import case_of


def cancelling_case(dtype: str = "float64"):
    """relu 4-5-3: Z1[:, 0] = x1 * 0.5 + x2 * (-0.5) with x1 == x2, b1[0] = 0: exactly 0 in every row.

    Every direction of W1, b1, Z1 or X moves those units off the kink, so no
    step crosses none: finite differences cannot judge dZ1, dW1, db1, dX.
    """
    case = case_of((4, 5, 3), ("relu", "identity"), "half_mse", seed=4, dtype=dtype)
    X = case.X.copy()
    X[:, 1] = X[:, 0] = np.round(X[:, 0], 3)
    params = dict(case.params)
    W1, b1 = params["W1"].copy(), params["b1"].copy()
    W1[:, 0] = [0.5, -0.5, 0.0, 0.0]
    b1[0] = 0.0
    params.update(W1=W1, b1=b1)
    return make_case(case.network, params, X, case.Y)


AT_THE_KINK = ["dZ1", "dW1", "db1", "dX"]


def _cli(capsys, monkeypatch, case, *argv):
    import manual_backprop.cli.check as command

    monkeypatch.setattr(command, "case_from_args", lambda args: case)
    code = main(["check", *argv])
    return code, capsys.readouterr().out


# --- the status ------------------------------------------------------------------------------------

def test_not_judged_is_neither_agreement_nor_failure():
    c = TensorCheck("dW1", "fd", NOT_JUDGED, note="every direction crosses a kink")
    assert NOT_JUDGED not in PASSING and "n/a" not in PASSING
    assert c.ok is None and not c.judged and not c.failed
    assert c.to_json()["ok"] is None and c.to_json()["status"] == "not judged"
    assert TensorCheck("dW1", "fd", "ok").ok is True and TensorCheck("dW1", "fd", "fail").failed


# --- the report ------------------------------------------------------------------------------------

def test_a_gradient_no_reference_judged_keeps_the_report_from_passing_without_being_a_divergence():
    report = check(cancelling_case(), against=["fd"])
    assert report.trace["Z1"][:, 0].tolist() == [0.0] * report.case.batch
    assert report.not_judged == AT_THE_KINK
    for name in AT_THE_KINK:
        assert report.checks[name]["fd"].status == NOT_JUDGED
        assert "crossed a ReLU kink" in report.checks[name]["fd"].note
    assert report.first_divergence is None  # nothing disagrees...
    assert not report.ok                    # ...but nothing agreed on those four either
    out = report.to_json()
    assert out["ok"] is False and out["first_divergence"] is None and out["not_judged"] == AT_THE_KINK
    assert out["tensors"]["dW1"]["checks"]["fd"]["ok"] is None
    json.dumps(out)


def test_the_same_tensors_judged_by_a_framework_pass():
    pytest.importorskip("torch")
    report = check(cancelling_case(), against=["torch", "fd"])
    assert report.ok and report.not_judged == [] and report.forward_not_judged == []
    assert report.checks["dW1"]["fd"].status == NOT_JUDGED and report.checks["dW1"]["torch"].ok


def test_the_command_exits_1_and_says_loudly_which_tensors_were_not_judged(capsys, monkeypatch):
    code, out = _cli(capsys, monkeypatch, cancelling_case(), "--against", "fd")
    assert code == 1
    assert "4 tensor(s) were not judged by any reference: dZ1, dW1, db1, dX; " in out
    assert "to judge them" in out
    assert "All " not in out and "First divergence" not in out
    assert "NOT JUDGED" in out


def test_the_json_of_the_command_lists_what_was_not_judged(capsys, monkeypatch):
    code, out = _cli(capsys, monkeypatch, cancelling_case(), "--against", "fd", "--json")
    out = json.loads(out)
    assert code == 1 and out["ok"] is False and out["first_divergence"] is None
    assert out["not_judged"] == AT_THE_KINK


def test_a_float32_check_that_only_could_not_judge_asks_no_float64_verdict():
    report = check(cancelling_case("float32"), against=["fd"])
    assert not report.ok and report.first_divergence is None and report.float32_failure is None


def test_forward_tensors_against_finite_differences_alone_are_not_judged_but_do_not_fail(capsys, monkeypatch):
    case = case_of((2, 3, 1), ("tanh", "identity"), "half_mse", seed=5)
    report = check(case, against=["fd"])
    assert report.ok and report.not_judged == []
    assert report.forward_not_judged == ["Z1", "A1", "Z2", "A2", "L"]
    assert all(report.checks[n]["fd"].status == NOT_JUDGED for n in report.forward_not_judged)
    code, out = _cli(capsys, monkeypatch, case, "--against", "fd")
    assert code == 0
    assert "All 9 gradients agree with fd" in out and "All 14 tensors" not in out
    lines = [line for line in out.splitlines() if "(forward values) were not judged" in line]
    assert len(lines) == 1 and lines[0].startswith("Z1, A1, Z2, A2, L (forward values)")


@pytest.mark.parametrize("argv, names", [
    (["--lr", "0.1"], ["W1_next", "b1_next", "W2_next", "b2_next"]),
    (["--per-sample"], ["dW1_per_sample", "db1_per_sample", "dW2_per_sample", "db2_per_sample"]),
], ids=["lr", "per-sample"])
def test_the_descent_step_and_per_sample_gradients_need_a_framework(capsys, monkeypatch, argv, names):
    case = case_of((2, 3, 1), ("tanh", "identity"), "half_mse", seed=5)
    code, out = _cli(capsys, monkeypatch, case, "--against", "fd", *argv)
    assert code == 1
    assert f"{len(names)} tensor(s) were not judged by any reference: {', '.join(names)}" in out
    assert "need torch or JAX" in out
    report = check(case, against=["fd"], per_sample="--per-sample" in argv,
                   learning_rate=0.1 if "--lr" in argv else None)
    assert report.not_judged == names and not report.ok and report.first_divergence is None
    assert all(report.checks[n]["fd"].status == NOT_JUDGED for n in names)


def test_an_ascent_step_is_not_passed_by_finite_differences(monkeypatch):
    """W + lr dW for W - lr dW: nothing that could judge it ran, so it must not pass."""
    from manual_backprop.checking import checker
    from manual_backprop.engine import sgd

    real = sgd.next_parameters
    def ascent(case, lr=None, trace=None):  # W + lr dW = 2 W - (W - lr dW)
        return {n: 2 * case.params[n.removesuffix("_next")] - v for n, v in real(case, lr, trace).items()}

    monkeypatch.setattr(sgd, "next_parameters", ascent)
    report = checker.check(case_of((2, 3, 1), ("tanh", "identity"), "half_mse", seed=5), against=["fd"],
                           learning_rate=0.1)
    assert not report.ok and "W1_next" in report.not_judged


# --- the table --------------------------------------------------------------------------------------

def test_the_table_renders_a_finite_difference_divergence_whose_step_before_has_the_same_shape(monkeypatch):
    """fd's worst index is a direction number, not an element: it must not index the step before."""
    case = make_case(Network((4, 5, 3), ("tanh", "identity"), "half_mse"), seed=1, batch=4)
    real, W1 = engine.linear_backward, case.params["W1"]

    def doubled_dW1(dZ, A_prev, W):
        dA, dW, db = real(dZ, A_prev, W)
        return (dA, 2 * dW, db) if W is W1 else (dA, dW, db)

    monkeypatch.setattr(engine, "linear_backward", doubled_dW1)
    report = check(case, against=["fd"])
    assert report.first_divergence == "dW1" and report.step_before("dW1") == "dZ1"
    assert np.shape(report.trace["dW1"]) == np.shape(report.trace["dZ1"]) == (4, 5)
    out = io.StringIO()
    render(report, file=out)
    text = out.getvalue()
    assert "First divergence: dW1" in text and "worst element <dW1, v" in text
    assert "step before: dZ1 agrees with every reference that judged it" in text
    assert "dZ1[" not in text  # no element of dZ1 named by a direction number
