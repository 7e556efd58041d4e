"""The fast engine gives the engine's numbers: L and every dWl, dbl, for every activation and loss."""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import engine
from manual_backprop.description.case import make_case
from manual_backprop.description.network import Network
from manual_backprop.engine import fast
from manual_backprop.errors import InputError
from manual_backprop.kernels import ACTIVATIONS
from manual_backprop.kernels.activations import Activation

# Relative to the largest entry of the engine's tensor: the two differ only in
# the order of a few sums (and of the BLAS products' accumulation).
TOL = {"float64": 1e-12, "float32": 2e-5}

# (output activation, loss) pairs the network format allows, hidden activations drawn per test.
HEADS = [
    ("identity", "half_mse"), ("identity", "mse"), ("sigmoid", "half_mse"), ("tanh", "mse"),
    ("relu", "half_mse"), ("softmax", "mse"), ("sigmoid", "bce"), ("softmax", "softmax_cross_entropy"),
]
HIDDEN = ["relu", "sigmoid", "tanh", "identity"]


def assert_same_as_engine(case, T=None, workspace=None):
    """Run both engines on ``case`` and compare L and every parameter gradient."""
    ref = engine.run(case)
    L, grads = fast.value_and_grad(case.network, case.params, case.X,
                                   case.T if T is None else T, workspace)
    tol = TOL[case.network.dtype]
    assert L.dtype == ref["L"].dtype
    np.testing.assert_allclose(L, ref["L"], rtol=tol, err_msg="L")
    assert set(grads) == set(case.params)
    for name, g in grads.items():
        want = ref[f"d{name}"]
        assert g.dtype == want.dtype and g.shape == want.shape, name
        np.testing.assert_allclose(g, want, rtol=tol, atol=tol * np.abs(want).max(),
                                   err_msg=f"d{name} ({case.network.describe()}, N={case.batch})")
    return grads


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h[0]}+{h[1]}")
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_matches_engine_for_every_activation_and_loss(head, batch, dtype):
    rng = np.random.default_rng([batch, len(head[1])])
    hidden = tuple(rng.choice(HIDDEN, size=2))
    sizes = (5, 4, 6, 3)
    net = Network(sizes, hidden + (head[0],), head[1], "mean", dtype)
    assert_same_as_engine(make_case(net, seed=batch, batch=batch))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", HIDDEN)
def test_matches_engine_for_each_hidden_activation_and_sum_reduction(act, dtype):
    net = Network((3, 8, 2), (act, "identity"), "half_mse", "sum", dtype)
    assert_same_as_engine(make_case(net, seed=3, batch=5))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_cross_entropy_takes_labels_or_probability_rows(dtype):
    net = Network((6, 5, 4), ("relu", "softmax"), "softmax_cross_entropy", "mean", dtype)
    case = make_case(net, seed=1, batch=9)
    assert case.Y.ndim == 1
    assert_same_as_engine(case, T=case.Y)  # integer labels
    rng = np.random.default_rng(0)
    P = rng.uniform(0.1, 1, (9, 4))
    P = (P / P.sum(axis=1, keepdims=True)).astype(dtype)
    assert_same_as_engine(make_case(net, X=case.X, Y=P))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_output_and_multithreaded_products(dtype):
    # K >= WIDE_OUTPUT stores the output sample-major; N * n * n >= SINGLE_THREAD_BELOW leaves BLAS threaded.
    net = Network((40, 300, 300, 70), ("relu", "tanh", "identity"), "half_mse", "mean", dtype)
    case = make_case(net, seed=2, batch=32)
    ws = fast.Workspace(net, 32)
    assert ws.output_sample_major and ws.threads is None
    assert_same_as_engine(case, workspace=ws)


def test_workspace_is_reused_and_gives_the_same_numbers_again():
    net = Network((4, 6, 2), ("sigmoid", "identity"), "half_mse")
    case = make_case(net, seed=4, batch=6)
    ws = fast.Workspace(net, 6)
    first = {k: v.copy() for k, v in assert_same_as_engine(case, workspace=ws).items()}
    again = assert_same_as_engine(case, workspace=ws)
    for name in first:
        assert again[name] is ws.grads[name]
        np.testing.assert_array_equal(again[name], first[name])


def test_inputs_are_not_modified():
    net = Network((4, 5, 3), ("relu", "softmax"), "softmax_cross_entropy")
    case = make_case(net, seed=5, batch=4)
    before = {k: v.copy() for k, v in {**case.params, "X": case.X, "T": case.T}.items()}
    T = case.T
    fast.value_and_grad(net, case.params, case.X, T)
    for name, value in {**case.params, "X": case.X, "T": T}.items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_an_activation_without_an_in_place_rule_falls_back_to_its_kernels(monkeypatch):
    softplus = Activation(
        "softplus", lambda Z: np.logaddexp(0, Z), lambda dA, Z, A: dA / (1 + np.exp(-Z)),
        lambda Z, A: 1 / (1 + np.exp(-Z)), "A = log(1 + exp(Z)); dZ = dA * sigmoid(Z)",
    )
    monkeypatch.setitem(ACTIVATIONS, "softplus", softplus)
    net = Network((3, 4, 4, 2), ("softplus", "relu", "identity"), "half_mse")
    assert_same_as_engine(make_case(net, seed=6, batch=5))


def test_wrong_inputs_are_input_errors():
    net = Network((3, 4, 2), ("relu", "identity"), "half_mse")
    case = make_case(net, seed=0, batch=3)
    with pytest.raises(InputError, match="X must be a float64"):
        fast.value_and_grad(net, case.params, case.X.astype(np.float32), case.T)
    with pytest.raises(InputError, match="parameter W2"):
        fast.value_and_grad(net, {**case.params, "W2": case.params["W2"].T}, case.X, case.T)
    with pytest.raises(InputError, match="T must be"):
        fast.value_and_grad(net, case.params, case.X, case.T[:2])
    with pytest.raises(InputError, match="workspace is for"):
        fast.value_and_grad(net, case.params, case.X, case.T, fast.Workspace(net, 4))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_row_batch_with_a_large_outer_product(dtype):
    # 800 x 800 >= PARALLEL_OUTER: dW2 is split over two threads.
    assert 800 * 800 >= fast.PARALLEL_OUTER
    net = Network((30, 800, 800, 5), ("relu", "sigmoid", "softmax"), "softmax_cross_entropy", "mean", dtype)
    assert_same_as_engine(make_case(net, seed=7, batch=1))
