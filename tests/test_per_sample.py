"""Per-sample gradients: d l_i / dWl for every sample at once, against torch.func and jax.vmap."""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import Network, make_case
from manual_backprop.description.catalog import load_example
from manual_backprop.engine.per_sample import (
    per_sample_gradients,
    per_sample_rows,
    reduce_per_sample,
)
from manual_backprop.engine.trace import run

from .helpers import jax_ref, torch_ref

# Every activation (hidden and output) and every loss appears at least once.
NETWORKS = {  # widths kept to a few shapes: JAX compiles each op once per shape
    "identity-half_mse": ((3, 4, 2), ("identity", "identity"), "half_mse"),
    "sigmoid-tanh-mse": ((3, 4, 4, 2), ("sigmoid", "tanh", "tanh"), "mse"),
    "relu-relu-bce": ((3, 4, 4, 1), ("relu", "relu", "sigmoid"), "bce"),
    "tanh-softmax-cross_entropy": ((3, 4, 2), ("tanh", "softmax"), "softmax_cross_entropy"),
    "relu-softmax-half_mse": ((3, 4, 2), ("relu", "softmax"), "half_mse"),  # softmax not fused
    "sigmoid-sigmoid-mse": ((3, 4, 2), ("sigmoid", "sigmoid"), "mse"),
}
REDUCTIONS = ("mean", "sum")
# Same float64 arithmetic, summed in another order: a few units of rounding.
RTOL, ATOL = 1e-12, 1e-14


def case_for(name: str, reduction: str, dtype: str = "float64", batch: int = 6):
    sizes, acts, loss = NETWORKS[name]
    return make_case(Network(sizes, acts, loss, reduction, dtype), seed=3, batch=batch)


def assert_same(ours: dict, ref: dict, rtol=RTOL, atol=ATOL) -> None:
    assert set(ref) <= set(ours)
    for name in ref:
        assert ours[name].shape == ref[name].shape, name
        np.testing.assert_allclose(ours[name], ref[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_per_sample_gradients_match_torch_func_vmap_of_grad(net, reduction):
    tt = torch_ref()
    case = case_for(net, reduction)
    assert_same(per_sample_gradients(case), tt.per_sample_gradients(case))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_per_sample_gradients_match_jax_vmap_of_grad(net, reduction):
    jt = jax_ref()
    case = case_for(net, reduction)
    assert_same(per_sample_gradients(case), jt.per_sample_gradients(case))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_c_times_the_sum_of_per_sample_gradients_is_torchs_batch_gradient(net, reduction):
    tt = torch_ref()
    case = case_for(net, reduction)
    assert_same(reduce_per_sample(case.network, per_sample_gradients(case)), tt.gradients(case))


@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_per_sample_gradients_do_not_depend_on_the_reduction(net):
    # l_i is the term before normalisation: "mean" and "sum" differ only in c.
    mean, total = per_sample_gradients(case_for(net, "mean")), per_sample_gradients(case_for(net, "sum"))
    assert_same(mean, total, rtol=1e-13, atol=1e-15)


def test_per_sample_gradient_of_a_linear_layer_is_x_outer_the_residual():
    # One identity layer with half-MSE: l_i = ½‖x_i W + b − y_i‖², so by hand
    # d l_i/dW = outer(x_i, x_i W + b − y_i) and d l_i/db = x_i W + b − y_i (no 1/N: that is c's).
    W = np.array([[0.5, -1.0], [2.0, 0.25]])
    b = np.array([0.1, -0.2])
    X = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]])
    Y = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    case = make_case(Network((2, 2), ("identity",), "half_mse"), {"W1": W, "b1": b}, X, Y)
    residual = np.array([[4.6, -1.7], [-0.4, 0.925], [4.1, -1.45]])  # X @ W + b - Y, worked by hand
    g = per_sample_gradients(case)
    np.testing.assert_allclose(g["db1_per_sample"], residual, rtol=1e-14, atol=1e-14)
    for i in range(3):
        np.testing.assert_allclose(g["dW1_per_sample"][i], np.outer(X[i], residual[i]), rtol=1e-14, atol=1e-14)


def test_per_sample_names_and_shapes_are_the_products():
    case = case_for("sigmoid-tanh-mse", "mean", batch=5)
    g = per_sample_gradients(case)
    expected = [n for n in case.network.extra_names() if n.endswith("_per_sample")]
    assert list(g) == expected
    shapes = case.network.tensor_shapes(5)
    assert {n: a.shape for n, a in g.items()} == {n: shapes[n] for n in expected}
    assert g["dW3_per_sample"].shape == (5, 4, 2)  # (N, n_2, n_3)


def test_float32_per_sample_gradients_stay_float32():
    g = per_sample_gradients(case_for("relu-relu-bce", "mean", dtype="float32"))
    assert {a.dtype for a in g.values()} == {np.dtype(np.float32)}


def test_seed_000_rows_give_each_sample_its_own_gradients():
    # Seed 000 (half-MSE summed): both samples are x = [0, 0] with y = [1, 0], so every row is
    # the same, and dW1 = outer(x, dZ1) = 0 because x = 0.
    case = load_example("seed-000")
    rows = per_sample_rows(case.network, run(case))
    assert len(rows) == 2
    assert list(rows[0]) == case.network.backward_names()
    np.testing.assert_array_equal(rows[0]["dW1"], np.zeros((2, 2)))
    for name in rows[0]:
        np.testing.assert_array_equal(rows[0][name], rows[1][name])
    # Under "sum" (c = 1) a sample's dZ2 row is the batch row: z2 - y, with z2 = [0.25, 0.05]
    # since h = sigmoid(0) = 0.5 and z2 = 0.5*(0.3+0.2), 0.5*(-0.1+0.2).
    np.testing.assert_allclose(rows[0]["dZ2"], [0.25 - 1.0, 0.05 - 0.0], rtol=1e-15)


def test_seed_000_rows_match_torch_per_sample_gradients():
    tt = torch_ref()
    case = load_example("seed-000")
    rows = per_sample_rows(case.network, run(case))
    ref = tt.per_sample_gradients(case)
    for i, row in enumerate(rows):
        for l in (1, 2):
            np.testing.assert_allclose(row[f"dW{l}"], ref[f"dW{l}_per_sample"][i], rtol=RTOL, atol=ATOL)
            np.testing.assert_allclose(row[f"db{l}"], ref[f"db{l}_per_sample"][i], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_per_sample_error_scales_let_the_comparator_accept_torch_and_reject_a_missing_c(net, dtype):
    from manual_backprop.compare.comparator import compare_arrays
    from manual_backprop.compare.tolerance import error_scales, per_sample_error_scales

    tt = torch_ref()
    case = case_for(net, "mean", dtype=dtype, batch=16)
    trace = run(case)
    E = per_sample_error_scales(case.network, trace, error_scales(case.network, case.params, trace, case.T))
    ours, ref = per_sample_gradients(case, trace), tt.per_sample_gradients(case)
    for name in ours:
        assert compare_arrays(name, "torch", ours[name], ref[name], E[name], dtype).ok, name
    # The classic slip: the batch row taken as sample i's gradient, i.e. c left in (a factor 1/16 or 1/32).
    wrong = ours["db1_per_sample"] * ours["db1_per_sample"].dtype.type(1 / 16)
    assert not compare_arrays("db1_per_sample", "torch", wrong, ref["db1_per_sample"],
                              E["db1_per_sample"], dtype).ok
