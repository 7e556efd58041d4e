"""leaky_relu and softplus: added as one registry entry plus a kernel pair, and one line per framework.

These tests show each works everywhere at once: check (against torch, JAX and
finite differences), the kink convention at exactly 0, validate's diagnosis
of a left-out derivative, check_layer (tests/test_layer_check.py), the fast
engine and train.
"""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import Network, check, make_case, run, validate
from manual_backprop.description.case import Claim
from manual_backprop.engine import fast
from manual_backprop.references import jax_ref

jax = pytest.importorskip("jax")
pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("acts", [("leaky_relu", "softplus", "identity"), ("softplus", "leaky_relu", "softmax")])
def test_a_network_with_them_agrees_with_torch_jax_and_finite_differences(acts, dtype):
    loss = "softmax_cross_entropy" if acts[-1] == "softmax" else "half_mse"
    case = make_case(Network((4, 6, 5, 3), acts, loss, "mean", dtype), seed=3, batch=7)
    report = check(case, against=["torch", "jax", "fd"])
    assert report.ok, report.first_divergence
    assert report.not_judged == []


def _on_the_kink(dtype: str = "float64"):
    """Rows of X set to 0 and b1 = 0: those samples have Z1 == 0 exactly, on leaky_relu's kink."""
    net = Network((3, 4, 2), ("leaky_relu", "identity"), "half_mse", "mean", dtype)
    drawn = make_case(net, seed=1, batch=6)
    X = drawn.X.copy()
    X[::2] = 0
    params = {**drawn.params, "b1": np.zeros(4, dtype)}
    return make_case(net, params, X, drawn.Y)


def test_at_exactly_0_the_leaky_relu_derivative_is_the_slope_as_torch_takes_it():
    case = _on_the_kink()
    trace = run(case)
    on_kink = trace["Z1"] == 0
    assert on_kink.sum() == 12
    np.testing.assert_array_equal(trace["dZ1"][on_kink], 0.01 * trace["dA1"][on_kink])
    report = check(case, against=["torch", "jax"])
    assert report.ok, report.first_divergence


def test_jax_nn_leaky_relu_itself_gives_1_at_0_so_the_jax_reference_is_written_to_follow_torch():
    g = jax.grad(lambda z: jax.nn.leaky_relu(z, 0.01))(0.0)
    assert float(g) == 1.0                                   # the trap: where(x >= 0, ...)
    ours = jax.grad(lambda z: jax_ref.ACTIVATIONS["leaky_relu"](z))(0.0)
    assert float(ours) == pytest.approx(0.01, rel=0, abs=0)  # the project's (torch's) convention


@pytest.mark.parametrize("act", ["leaky_relu", "softplus"])
def test_validate_names_a_left_out_derivative(act):
    net = Network((3, 4, 2), (act, "identity"), "half_mse")
    case = make_case(net, seed=2, batch=5)
    trace = run(case)
    wrong = trace["dA1"]                                     # dZ1 = dA1: the derivative left out
    claimed = {"dZ1": Claim(wrong, np.zeros_like(wrong)), "dA1": Claim(trace["dA1"], np.zeros_like(wrong))}
    report = validate(make_case(net, case.params, case.X, case.Y, claimed=claimed))
    assert report.first_wrong == "dZ1"
    assert "derivative left out" in report.claims["dZ1"].diagnosis


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("acts", [("leaky_relu", "softplus", "sigmoid"), ("softplus", "leaky_relu", "identity")])
def test_the_fast_engine_runs_them_from_the_registry(acts, dtype):
    loss = "bce" if acts[-1] == "sigmoid" else "mse"
    case = make_case(Network((5, 7, 6, 2), acts, loss, "mean", dtype), seed=4, batch=9)
    trace = run(case)
    L, grads = fast.value_and_grad(case.network, case.params, case.X, case.T)
    rtol = 1e-12 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(L, trace["L"], rtol=rtol)
    for name, g in grads.items():
        np.testing.assert_allclose(g, trace[f"d{name}"], rtol=rtol, atol=rtol * np.abs(trace[f"d{name}"]).max())


def test_train_descends_on_a_leaky_relu_softplus_network(capsys):
    from manual_backprop.cli import main

    code = main(["train", "--sizes", "2,8,4,1", "--activations", "leaky_relu,softplus,sigmoid", "--loss", "bce",
                 "--steps", "300", "--check-every", "100", "--no-plots", "--json"])
    assert code == 0
    import json
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["check"]["checks"] == 3
    assert report["final_loss"] < 0.69                       # below a coin toss's log 2
