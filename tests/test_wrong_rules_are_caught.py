"""The comparator tested with deliberately wrong backward rules.

Each wrong rule is swapped into the engine; the check must fail against every
reference and name the tensor where the rule is first applied as the first
divergence. The right rule passes on the same case, so the test can fail.
"""

from __future__ import annotations

import dataclasses

import pytest

from manual_backprop import references
from manual_backprop.checking import checker
from manual_backprop.compare.comparator import NOT_JUDGED
from manual_backprop.engine import trace as engine
from manual_backprop.kernels import ACTIVATIONS, LOSSES
from manual_backprop.kernels import linear as linear_kernels

from .helpers import case_of, with_kinks

REFS = [r for r in ("torch", "jax", "fd") if references.is_installed(r)]


def _report(case):
    return checker.check(case, against=REFS)


def _patch_activation(monkeypatch, name, backward):
    monkeypatch.setitem(ACTIVATIONS, name, dataclasses.replace(ACTIVATIONS[name], backward=backward))


def _assert_caught(report, first, fd_cannot_judge=False):
    assert not report.ok
    assert report.first_divergence == first
    for ref in REFS:
        if ref == "fd" and fd_cannot_judge:
            # a forward tensor, or a derivative at a kink (a convention, not a limit):
            # finite differences of the loss cannot judge it
            assert report.checks[first][ref].status == NOT_JUDGED
            continue
        assert not report.checks[first][ref].ok, f"{ref} did not catch the wrong rule at {first}"


RELU_NET = dict(sizes=(4, 5, 3), activations=("relu", "identity"), loss="half_mse")


def test_the_right_rules_pass_on_the_cases_used_below():
    for case in (case_of(**RELU_NET, seed=3), with_kinks(case_of(**RELU_NET, seed=3)),
                 case_of((3, 3, 3), ("sigmoid", "identity"), "half_mse", seed=1),
                 case_of((3, 4, 3), ("tanh", "softmax"), "softmax_cross_entropy", seed=2)):
        assert _report(case).ok


def test_a_dropped_relu_mask_is_caught_at_dZ1(monkeypatch):
    case = case_of(**RELU_NET, seed=3)
    assert (case.X @ case.params["W1"] + case.params["b1"] < 0).any()
    _patch_activation(monkeypatch, "relu", lambda dA, Z, A: dA)
    _assert_caught(_report(case), "dZ1")


def test_a_relu_mask_taken_as_Z_greater_or_equal_0_is_caught_at_dZ1_on_exact_zeros(monkeypatch):
    case = with_kinks(case_of(**RELU_NET, seed=3))
    assert (case.X @ case.params["W1"] + case.params["b1"] == 0).any()
    _patch_activation(monkeypatch, "relu", lambda dA, Z, A: dA * (Z >= 0))
    report = _report(case)
    _assert_caught(report, "dZ1", fd_cannot_judge=True)
    # exact zeros are the same in every run: no unit may be excused as rounding at a kink
    assert all(c.status != "kink" for c in report.checks["dZ1"].values())


def test_a_missing_1_over_N_in_half_mse_is_caught_at_dA2(monkeypatch):
    case = case_of(**RELU_NET, seed=3)
    N = case.batch
    loss = LOSSES["half_mse"]
    monkeypatch.setitem(LOSSES, "half_mse", dataclasses.replace(loss, grad=lambda Z, A, T: (A - T) * N))
    _assert_caught(_report(case), "dA2")


def test_a_missing_1_over_N_in_softmax_cross_entropy_is_caught_at_dZ2(monkeypatch):
    case = case_of((3, 4, 3), ("tanh", "softmax"), "softmax_cross_entropy", seed=2)
    N = case.batch
    loss = LOSSES["softmax_cross_entropy"]
    monkeypatch.setitem(LOSSES, "softmax_cross_entropy",
                        dataclasses.replace(loss, grad=lambda Z, A, T: (A - T) * N))
    _assert_caught(_report(case), "dZ2")


def test_softmax_cross_entropy_without_subtracting_Y_is_caught_at_dZ2(monkeypatch):
    case = case_of((3, 4, 3), ("tanh", "softmax"), "softmax_cross_entropy", seed=2)
    loss = LOSSES["softmax_cross_entropy"]
    monkeypatch.setitem(LOSSES, "softmax_cross_entropy", dataclasses.replace(loss, grad=lambda Z, A, T: A))
    _assert_caught(_report(case), "dZ2")


def test_a_transposed_product_dZ_at_W_is_caught_at_dA1(monkeypatch):
    # square layers, so that dZ @ W runs (with the wrong values) instead of raising
    case = case_of((3, 3, 3), ("sigmoid", "identity"), "half_mse", seed=1)
    monkeypatch.setattr(engine, "linear_backward",
                        lambda dZ, A_prev, W: (dZ @ W, linear_kernels.linear_dW(A_prev, dZ), linear_kernels.linear_db(dZ)))
    _assert_caught(_report(case), "dA1")


def test_a_transposed_weight_gradient_dZ_T_at_A_is_caught_at_dW2(monkeypatch):
    case = case_of((3, 3, 3), ("sigmoid", "identity"), "half_mse", seed=1)
    monkeypatch.setattr(engine, "linear_backward",
                        lambda dZ, A_prev, W: (dZ @ W.T, dZ.T @ A_prev, linear_kernels.linear_db(dZ)))
    _assert_caught(_report(case), "dW2")


def test_db_summed_over_the_wrong_axis_is_caught(monkeypatch):
    # With N == n_out the wrong axis still gives a vector of the right shape.
    case = case_of((3, 4, 4), ("sigmoid", "identity"), "half_mse", batch=4, seed=5)
    monkeypatch.setattr(engine, "linear_backward",
                        lambda dZ, A_prev, W: (dZ @ W.T, A_prev.T @ dZ, dZ.sum(axis=1)))
    _assert_caught(_report(case), "db2")


def test_a_sigmoid_derivative_taken_from_Z_instead_of_A_is_caught_at_dZ1(monkeypatch):
    case = case_of((3, 3, 3), ("sigmoid", "identity"), "half_mse", seed=1)
    _patch_activation(monkeypatch, "sigmoid", lambda dA, Z, A: dA * Z * (1 - Z))
    _assert_caught(_report(case), "dZ1")


def test_a_flipped_sign_in_the_loss_gradient_is_caught_at_dA2(monkeypatch):
    case = case_of(**RELU_NET, seed=3)
    loss = LOSSES["half_mse"]
    monkeypatch.setitem(LOSSES, "half_mse", dataclasses.replace(loss, grad=lambda Z, A, T: T - A))
    _assert_caught(_report(case), "dA2")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_wrong_forward_weight_is_caught_at_Z1_before_any_gradient(monkeypatch, dtype):
    case = case_of(**RELU_NET, seed=3, dtype=dtype)
    real = engine.linear_forward
    monkeypatch.setattr(engine, "linear_forward", lambda A, W, b: real(A, W * 1.01, b))
    _assert_caught(_report(case), "Z1", fd_cannot_judge=True)


def test_the_failure_names_the_worst_element_and_both_values(monkeypatch):
    case = case_of(**RELU_NET, seed=3)
    _patch_activation(monkeypatch, "relu", lambda dA, Z, A: dA)
    report = _report(case)
    check = report.checks["dZ1"]["torch" if "torch" in REFS else REFS[0]]
    w = check.worst
    trace = report.trace
    if check.reference != "fd":
        Z1 = trace["Z1"]
        assert Z1[w.index] <= 0  # the worst element is a unit the mask should have zeroed
        assert w.engine == trace["dZ1"][w.index]
        assert w.reference == 0.0
    assert report.step_before("dZ1") == "dA1"
    assert report.checks["dA1"][REFS[0]].ok
