"""Rounding or bug: a failed float32 check is re-run in float64, and the report says which.

A wrong rule is wrong at every precision, so its disagreement survives in
float64. Rounding shrinks by 2**29 and disappears. Both are produced here on
purpose: a wrong sigmoid rule swapped into the engine, and a float32
tolerance made too tight (by pretending float32 had 40 bits) so that honest
float32 rounding fails it. A float32 disagreement within a reference's flush
range is never a bug, even when the float64 re-run fails too (for a float64
subnormal of its own).
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

from manual_backprop import Network, make_case
from manual_backprop.checking.checker import check
from manual_backprop.checking.rounding import explain_float32_failure, needs_explaining
from manual_backprop.cli.check import render
from manual_backprop.compare import UNIT_ROUNDOFF
from manual_backprop.compare.tolerance import FLUSH
from manual_backprop.description.case import as_float64
from manual_backprop.kernels import ACTIVATIONS

from .helpers import case_of

REFS = ["torch", "jax"]


def _patch_activation(monkeypatch, name, backward):
    monkeypatch.setitem(ACTIVATIONS, name, dataclasses.replace(ACTIVATIONS[name], backward=backward))


def sigmoid_case(dtype="float32"):
    return case_of((3, 4, 3), ("sigmoid", "identity"), "half_mse", dtype=dtype, seed=1)


def tanh_case():
    """Wide enough that float32 results differ between NumPy, torch and JAX by a few units in the last place."""
    return case_of((16, 32, 4), ("tanh", "identity"), "half_mse", dtype="float32", batch=32, seed=1)


def _render(report) -> str:
    out = io.StringIO()
    render(report, file=out)
    return out.getvalue()


def test_a_wrong_rule_in_float32_is_called_a_bug_because_float64_disagrees_too(monkeypatch):
    _patch_activation(monkeypatch, "sigmoid", lambda dA, Z, A: dA * Z * (1 - Z))
    report = check(sigmoid_case(), against=REFS)
    assert report.first_divergence == "dZ1"
    verdict = report.float32_failure
    assert verdict.cause == "bug"
    assert verdict.tensor == "dZ1" and verdict.float64_first_divergence == "dZ1"
    assert verdict.float64_margin > 1e6  # far beyond float64 rounding: the error does not depend on precision
    assert report.to_json()["float32_failure"]["cause"] == "bug"
    assert "rounding or bug? re-run in float64: a bug, not rounding" in _render(report)


def test_a_float32_failure_that_vanishes_in_float64_is_called_rounding_and_says_by_how_much(monkeypatch):
    monkeypatch.setitem(UNIT_ROUNDOFF, "float32", 2.0**-40)  # a float32 tolerance 65536 times too tight
    case = tanh_case()
    report = check(case, against=REFS)
    assert not report.ok
    verdict = report.float32_failure
    assert verdict.cause == "rounding"
    assert verdict.float64_first_divergence is None
    assert verdict.tensor == report.first_divergence
    worst = report.checks[verdict.tensor][verdict.reference]
    assert verdict.margin == worst.margin > 1  # missed by this factor...
    assert verdict.margin < 2.0**16  # ...which the real float32 tolerance would have absorbed
    assert verdict.float64_margin <= 1
    as_json = report.to_json()["float32_failure"]
    assert as_json["cause"] == "rounding" and as_json["margin"] == verdict.margin
    assert "missed its tolerance by a factor of" in as_json["explanation"]
    text = _render(report)
    assert "rounding or bug? re-run in float64: float32 rounding, not a bug" in text


def test_a_float32_result_of_the_wrong_dtype_is_a_bug_even_though_float64_passes(monkeypatch):
    _patch_activation(monkeypatch, "tanh", lambda dA, Z, A: (dA * (1 - A * A)).astype(np.float64))
    report = check(tanh_case(), against=REFS)
    verdict = report.float32_failure
    assert verdict.status == "dtype"
    assert verdict.cause == "bug"


def test_the_float64_rerun_uses_exactly_the_same_numbers():
    case = tanh_case()
    wide = as_float64(case)
    assert wide.network.dtype == "float64"
    for name, value in case.params.items():
        np.testing.assert_array_equal(wide.params[name].astype(np.float32), value)
    np.testing.assert_array_equal(wide.X.astype(np.float32), case.X)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_passing_check_and_a_float64_failure_carry_no_float32_verdict(monkeypatch, dtype):
    assert check(sigmoid_case(dtype), against=["torch"]).float32_failure is None
    _patch_activation(monkeypatch, "sigmoid", lambda dA, Z, A: dA * Z * (1 - Z))
    report = check(sigmoid_case("float64"), against=["torch"])
    assert not report.ok and report.float32_failure is None
    assert report.to_json()["float32_failure"] is None
    assert not needs_explaining(report)


def flushed_softmax_case():
    """A 1-1-2 float32 identity/softmax network with cross-entropy, where only flushing differs, in both dtypes.

    X = 1e-40 is a float32 subnormal, which JAX reads as 0: its Z1 is 0 for the engine's 1e-10, and every
    value after it moves by what that times the weights is (Z2 by 1). In float64 X is normal, but the
    logits 360 and -361 are spread so far that the loser's probability e**-721 is a float64 subnormal,
    which JAX flushes: dA1 = -1e10 times it, 7.5e-304, where JAX has 0.
    """
    net = Network((1, 1, 2), ("identity", "softmax"), "softmax_cross_entropy", "sum", "float32")
    f32 = lambda a: np.array(a, np.float32)  # noqa: E731
    params = {"W1": f32([[1e30]]), "b1": f32([0.0]), "W2": f32([[0.0, -1e10]]), "b2": f32([360.0, -360.0])}
    return make_case(net, params, f32([[1e-40]]), np.array([0]))


def test_a_network_whose_references_only_flush_passes_in_float32_and_in_float64():
    case = flushed_softmax_case()
    assert check(case, against=REFS).ok
    assert check(as_float64(case), against=REFS).ok


def test_a_float32_disagreement_within_the_flush_range_is_never_a_bug_though_float64_fails_too(monkeypatch):
    case = flushed_softmax_case()
    with monkeypatch.context() as m:  # a tolerance without the flush range: both dtypes fail against JAX
        for dtype in list(FLUSH):
            m.setitem(FLUSH, dtype, 0.0)
        report = check(case, against=REFS)
        report64 = check(as_float64(case), against=REFS)
    assert report.first_divergence == "Z1" and report.checks["Z1"]["jax"].worst.reference == 0.0
    assert report64.first_divergence == "dA1" and report64.checks["dA1"]["jax"].worst.reference == 0.0
    # what the float64 re-run alone concludes: "a bug, not rounding" (the verdict made inside the check)
    assert report.float32_failure.cause == "bug"
    verdict = explain_float32_failure(report, report64)  # with the reference's real flush range
    assert verdict.cause == "rounding"
    assert 0 < verdict.flush_margin <= 1
    assert verdict.float64_first_divergence == "dA1"  # the evidence float64 gave is kept, not hidden
    assert "within jax's flush range" in verdict.sentence and verdict.headline == "float32 rounding, not a bug"
    assert report.to_json()["float32_failure"]["cause"] == "bug"  # (the report itself is unchanged)
    assert verdict.to_json()["flush_margin"] == verdict.flush_margin


def test_the_flush_range_does_not_excuse_a_wrong_rule(monkeypatch):
    _patch_activation(monkeypatch, "sigmoid", lambda dA, Z, A: dA * Z * (1 - Z))
    report = check(sigmoid_case(), against=REFS)
    verdict = report.float32_failure
    assert verdict.cause == "bug" and verdict.flush_margin is None
