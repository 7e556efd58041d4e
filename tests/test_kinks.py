"""Kinks: ReLU pre-activations exactly 0, made on purpose, and the convention ReLU'(0) = 0.

Random data never lands on a kink, so these tests put it there: rows of X that
are zero with b1 = 0, or weights whose products cancel exactly. At Z == 0 the
engine's mask ``Z > 0`` gives 0, as ``torch.relu`` and ``jax.nn.relu`` do. A
reference written with ``maximum(Z, 0)`` instead gives 1/2 there (the
derivative of max splits a tie evenly, in torch and in JAX), and the
comparator fails it at dZ1. In float32 a pre-activation within rounding of 0
may take the other sign in a framework; that is reported as ``kink``, not as
a failure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from manual_backprop import Network, make_case, references
from manual_backprop.checking.checker import check
from manual_backprop.compare import compare_traces, compared_names, error_scales
from manual_backprop.engine.trace import run
from manual_backprop.kernels.activations import sigmoid_forward

from .helpers import case_of, with_kinks

RELU_NET = dict(sizes=(4, 5, 3), activations=("relu", "identity"), loss="half_mse")


def zero_rows_case():
    """Rows 0 and 1 of X are zero and b1 = 0: every unit of Z1 is exactly 0 there."""
    return with_kinks(case_of(**RELU_NET, seed=3))


def cancelling_weights_case():
    """Z1[:, 0] = x1 * 0.5 + x2 * (-0.5) with x1 == x2: exactly 0 (each product is exact), b1[0] = 0."""
    case = case_of(**RELU_NET, seed=4)
    X = case.X.copy()
    X[:, 1] = X[:, 0] = np.round(X[:, 0], 3)
    params = dict(case.params)
    W1 = params["W1"].copy()
    W1[:, 0] = [0.5, -0.5, 0.0, 0.0]
    b1 = params["b1"].copy()
    b1[0] = 0.0
    params.update(W1=W1, b1=b1)
    return make_case(case.network, params, X, case.Y)


KINK_CASES = {"zero_rows_and_zero_bias": zero_rows_case, "cancelling_weights": cancelling_weights_case}


def test_relu_gradient_at_exactly_zero_is_zero_in_torch_and_jax():
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    torch.relu(z).sum().backward()
    assert z.grad.tolist() == [0.0, 0.0, 0.0]
    assert float(jax.grad(lambda x: jax.nn.relu(x).sum())(jnp.zeros(3))[0]) == 0.0


def test_maximum_x_0_has_gradient_one_half_at_zero_in_torch_and_jax():
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    torch.maximum(z, torch.zeros_like(z)).sum().backward()
    assert z.grad.tolist() == [0.5, 0.5, 0.5]
    assert float(jax.grad(lambda x: jnp.maximum(x, 0.0).sum())(jnp.zeros(3))[0]) == 0.5


@pytest.mark.parametrize("make", KINK_CASES.values(), ids=KINK_CASES.keys())
def test_pre_activations_exactly_zero_get_gradient_zero_and_torch_and_jax_agree(make):
    case = make()
    trace = run(case)
    at_kink = trace["Z1"] == 0
    assert at_kink.sum() >= 2 and (trace["dA1"][at_kink] != 0).all()  # the mask, not dA1, makes dZ1 zero
    assert (trace["dZ1"][at_kink] == 0).all()
    report = check(case, against=["torch", "jax"])
    assert report.ok
    for name in ("dZ1", "dW1", "db1", "dX"):
        for ref in ("torch", "jax"):
            assert report.checks[name][ref].status == "ok"  # exact zeros are zeros everywhere: no kink excuse


def _maximum_reference(monkeypatch, framework: str, case):
    """The trace of ``case`` from the torch or JAX reference with ReLU written as ``maximum(Z, 0)``."""
    module = references.load(framework)
    if framework == "torch":
        monkeypatch.setitem(module.ACTIVATIONS, "relu", lambda Z: torch.maximum(Z, torch.zeros_like(Z)))
        return module.run(case)
    monkeypatch.setitem(module.ACTIVATIONS, "relu", lambda Z: jnp.maximum(Z, 0.0))
    module._grad_fn.cache_clear()  # JAX's functions are compiled once per network: drop the real one...
    try:
        return module.run(case)
    finally:
        module._grad_fn.cache_clear()  # ...and the maximum one, so no later test meets it


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("make", KINK_CASES.values(), ids=KINK_CASES.keys())
def test_a_reference_built_with_maximum_x_0_disagrees_at_dZ1_where_Z1_is_zero(monkeypatch, framework, make):
    case = make()
    engine = run(case)
    ref = _maximum_reference(monkeypatch, framework, case)
    at_kink = engine["Z1"] == 0
    np.testing.assert_array_equal(ref["dZ1"][at_kink], 0.5 * ref["dA1"][at_kink])  # the tie split in half
    E = error_scales(case.network, case.params, engine, case.T)
    checks = compare_traces(case.network, case.params, engine, ref, f"{framework} maximum", E)
    failing = [n for n in compared_names(case.network) if not checks[n].ok]
    assert failing[0] == "dZ1"
    assert checks["dZ1"].status == "fail"  # not excused as a kink: Z1 is exactly 0 in both runs
    assert at_kink[checks["dZ1"].worst.index]
    assert all(checks[n].ok for n in compared_names(case.network)[: compared_names(case.network).index("dZ1")])


def _flip_case(z: np.float32, a_engine: np.float32):
    """float32 1-1-1-1: A1 = sigmoid(z), Z2 = A1 - a_engine (relu), so the engine's Z2[0] is exactly 0.

    A framework whose sigmoid(z) is one unit in the last place above the engine's
    gets Z2[0] = +1 ulp: the same unit is off in the engine and on in the framework.
    Row 1 is an ordinary sample far from the kink.
    """
    net = Network((1, 1, 1, 1), ("sigmoid", "relu", "identity"), "half_mse", "mean", "float32")
    f32 = lambda a: np.array(a, np.float32)  # noqa: E731
    params = {"W1": f32([[1.0]]), "b1": f32([0.0]), "W2": f32([[1.0]]), "b2": f32([-a_engine]),
              "W3": f32([[1.5]]), "b3": f32([0.25])}
    return make_case(net, params, f32([[z], [3.0]]), f32([[1.0], [-1.0]]))


def _find_flip():
    """The first z on a fixed grid for which torch's and JAX's float32 sigmoid lie above the engine's."""
    z = np.linspace(-4, 4, 801).astype(np.float32)
    mine = sigmoid_forward(z)
    above = torch.sigmoid(torch.from_numpy(z)).numpy() > mine
    for i in np.flatnonzero(above)[:40]:
        case = _flip_case(z[i], mine[i])
        traces = {r: references.load(r).run(case) for r in ("torch", "jax")}
        if all(t["Z2"][0, 0] > 0 for t in traces.values()):
            return case
    pytest.skip("no grid point where both frameworks' sigmoid rounds above NumPy's")  # pragma: no cover


def test_a_float32_unit_that_rounding_puts_on_the_other_side_of_the_kink_is_reported_as_kink_not_fail():
    case = _find_flip()
    report = check(case, against=["torch", "jax"])
    assert report.trace["Z2"][0, 0] == 0  # off in the engine
    assert report.ok
    for ref in ("torch", "jax"):
        check_dZ2 = report.checks["dZ2"][ref]
        assert check_dZ2.status == "kink"
        assert check_dZ2.margin > 1  # beyond rounding: only the flipped unit excuses it
        assert "1 unit(s) of Z2" in check_dZ2.note
        assert report.checks["Z2"][ref].status == "ok"  # the pre-activations themselves agree within rounding


def test_the_training_re_check_allows_for_a_float32_unit_that_rounding_puts_on_the_other_side_of_the_kink():
    """train --check-every sees only the reference's gradients: the units within rounding of 0 may flip."""
    from manual_backprop.compare import compare_arrays, error_scales
    from manual_backprop.engine import fast
    from manual_backprop.training.train import compare_gradients

    case = _find_flip()
    _, g = fast.value_and_grad(case.network, case.params, case.X, case.T)
    ours = {f"d{name}": value for name, value in g.items()}
    trace = run(case)
    E = error_scales(case.network, case.params, trace, case.T)
    for ref_name in ("torch", "jax"):
        ref = references.load(ref_name).run(case)
        assert trace["Z2"][0, 0] == 0 < ref["Z2"][0, 0]  # off here, on in the reference
        plain = {n: compare_arrays(n, ref_name, ours[n], ref[n], E[n], "float32").status
                 for n in ("dW2", "db2", "dW1", "db1")}
        assert set(plain.values()) == {"fail"}  # beyond rounding: only the flipped unit excuses it
        assert compare_gradients(case, ours, ref, ref_name, step=0) is None


def test_the_training_re_check_still_fails_a_wrong_mask_where_Z_is_exactly_0_without_rounding():
    """A unit whose Z is 0 with nothing to round (a zero input row, zero bias) cannot flip."""
    from manual_backprop.training.train import compare_gradients

    case = zero_rows_case()
    trace = run(case)
    at_kink = trace["Z1"] == 0
    wrong = {n: trace[n].copy() for n in ("dW1", "db1", "dW2", "db2")}
    dZ1 = np.where(at_kink, trace["dA1"], trace["dZ1"])  # Z >= 0 instead of Z > 0
    wrong["dW1"], wrong["db1"] = case.X.T @ dZ1, dZ1.sum(axis=0)
    ref = references.load("torch").run(case)
    mismatch = compare_gradients(case, wrong, ref, "torch", step=7)
    assert mismatch is not None and mismatch.name == "db1" and mismatch.status == "fail"  # dW1: x is 0 there
    assert at_kink[:, mismatch.worst.index[0]].any() and mismatch.worst.reference == 0.0
    assert mismatch.extra["step"] == 7
