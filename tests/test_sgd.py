"""One descent step, W_next = W - lr * dW, against torch.optim.SGD and the same step in JAX."""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import InputError, Network, make_case, parse_case
from manual_backprop.engine.sgd import next_parameters, sgd_step

from .helpers import jax_ref, torch_ref

NETWORKS = {
    "relu-relu-bce": ((3, 4, 4, 1), ("relu", "relu", "sigmoid"), "bce"),
    "tanh-softmax-cross_entropy": ((3, 4, 2), ("tanh", "softmax"), "softmax_cross_entropy"),
    "sigmoid-identity-half_mse": ((3, 4, 2), ("sigmoid", "identity"), "half_mse"),
    "tanh-sigmoid-mse": ((3, 4, 2), ("tanh", "sigmoid"), "mse"),
}
TOLERANCE = {"float64": (1e-13, 1e-15), "float32": (1e-5, 1e-6)}  # (rtol, atol)


def case_for(name: str, reduction: str = "mean", dtype: str = "float64", lr: float = 0.3):
    sizes, acts, loss = NETWORKS[name]
    return make_case(Network(sizes, acts, loss, reduction, dtype), seed=7, batch=6, learning_rate=lr)


def assert_same(ours: dict, ref: dict, dtype: str) -> None:
    rtol, atol = TOLERANCE[dtype]
    assert list(ours) == list(ref)
    for name in ref:
        assert ours[name].dtype == np.dtype(dtype), name
        np.testing.assert_allclose(ours[name], ref[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_one_step_matches_torch_optim_sgd(net, reduction, dtype):
    tt = torch_ref()
    case = case_for(net, reduction, dtype)
    assert_same(next_parameters(case), tt.next_parameters(case), dtype)


# The step is the same two lines for every network (torch covers them all above); JAX
# compiles every new shape, so it checks seed 004's network under each reduction and dtype.
@pytest.mark.parametrize("reduction, dtype", [("mean", "float64"), ("sum", "float64"), ("mean", "float32")])
def test_one_step_matches_the_same_step_in_jax(reduction, dtype):
    jt = jax_ref()
    case = case_for("relu-relu-bce", reduction, dtype)
    assert_same(next_parameters(case), jt.next_parameters(case), dtype)


def test_the_step_is_w_minus_lr_times_dw_by_hand():
    net = Network((2, 1), ("identity",), "half_mse")
    params = {"W1": np.array([[1.0], [-2.0]]), "b1": np.array([0.5])}
    grads = {"dW1": np.array([[0.25], [-1.0]]), "db1": np.array([2.0])}
    new = sgd_step(net, params, grads, 0.5)
    np.testing.assert_array_equal(new["W1"], [[0.875], [-1.5]])  # 1 - 0.5*0.25, -2 - 0.5*(-1)
    np.testing.assert_array_equal(new["b1"], [-0.5])  # 0.5 - 0.5*2
    np.testing.assert_array_equal(params["W1"], [[1.0], [-2.0]])  # the old parameters are kept


def test_the_sgd_table_gives_the_learning_rate_and_the_names_are_wl_next_bl_next():
    tt = torch_ref()
    case = parse_case("""
        [network]
        sizes = [2, 3, 1]
        activations = ["sigmoid", "identity"]
        loss = "half_mse"
        [sgd]
        learning_rate = 0.5
    """)
    assert case.learning_rate == 0.5
    ours = next_parameters(case)
    assert list(ours) == [n for n in case.network.extra_names() if n.endswith("_next") and n[0] in "Wb"]
    assert_same(ours, tt.next_parameters(case, 0.5), "float64")


def test_an_explicit_lr_overrides_the_file():
    tt = torch_ref()
    case = case_for("relu-relu-bce", lr=0.3)
    assert_same(next_parameters(case, lr=0.05), tt.next_parameters(case, lr=0.05), "float64")


def test_a_step_without_a_learning_rate_is_an_input_error():
    case = make_case(Network((2, 1), ("identity",), "half_mse"))
    with pytest.raises(InputError, match="learning rate"):
        next_parameters(case)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf"), True, "0.1"])
def test_a_learning_rate_that_is_not_positive_and_finite_is_an_input_error(lr):
    with pytest.raises(InputError):
        next_parameters(case_for("relu-relu-bce"), lr=lr)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_next_error_scales_let_the_comparator_accept_torch_and_reject_a_plus_sign(net, dtype):
    from manual_backprop.compare.comparator import compare_arrays
    from manual_backprop.compare.tolerance import error_scales, next_error_scales
    from manual_backprop.engine.trace import run

    tt = torch_ref()
    case = case_for(net, "mean", dtype)
    trace = run(case)
    E = next_error_scales(case.network, case.params, trace,
                          error_scales(case.network, case.params, trace, case.T), 0.3)
    ours, ref = next_parameters(case, trace=trace), tt.next_parameters(case)
    for name in ours:
        assert compare_arrays(name, "torch", ours[name], ref[name], E[name], dtype).ok, name
    L = case.network.depth  # the output layer's bias always has a gradient (a ReLU unit may not)
    b = case.params[f"b{L}"]
    wrong = b + b.dtype.type(0.3) * trace[f"db{L}"]  # b + lr*db: a sign slip
    assert not compare_arrays(f"b{L}_next", "torch", wrong, ref[f"b{L}_next"], E[f"b{L}_next"], dtype).ok
