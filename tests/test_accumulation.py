"""Gradient accumulation: adding micro-batch gradients with += gives the full-batch gradient (seed 001)."""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import InputError, Network, make_case
from manual_backprop.engine.accumulate import accumulate, full_batch_gradient, micro_batches
from manual_backprop.engine.trace import backward, forward, run

from .helpers import jax_ref, torch_ref

NETWORKS = {
    "relu-relu-bce": ((3, 4, 4, 1), ("relu", "relu", "sigmoid"), "bce"),
    "tanh-softmax-cross_entropy": ((3, 4, 2), ("tanh", "softmax"), "softmax_cross_entropy"),
    "sigmoid-identity-half_mse": ((3, 4, 2), ("sigmoid", "identity"), "half_mse"),
    "tanh-sigmoid-mse": ((3, 4, 2), ("tanh", "sigmoid"), "mse"),
}
N = 12
RTOL, ATOL = 1e-12, 1e-14  # the same sums in another order: rounding only


def case_for(name: str, reduction: str):
    sizes, acts, loss = NETWORKS[name]
    return make_case(Network(sizes, acts, loss, reduction), seed=5, batch=N)


def params_grads(trace: dict) -> dict:
    return {k: v for k, v in trace.items() if k.startswith(("dW", "db"))}


def assert_same(ours: dict, ref: dict, scale: float = 1.0) -> None:
    assert sorted(ours) == sorted(ref)
    for name in ref:
        np.testing.assert_allclose(ours[name], scale * ref[name], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("size", [1, 3, 5, 12])  # 5 leaves a short last micro-batch (5 + 5 + 2)
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_under_sum_accumulated_micro_batches_equal_the_full_batch_gradient(net, size):
    tt = torch_ref()
    case = case_for(net, "sum")
    assert_same(accumulate(case, size), tt.gradients(case))


@pytest.mark.parametrize("size", [2, 3, 4, 6])
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_under_mean_equal_micro_batches_accumulate_N_over_size_times_the_full_batch_gradient(net, size):
    # Each micro-batch divides by its own size n (or n*K): m = N/n of them add up to m * dL.
    tt = torch_ref()
    case = case_for(net, "mean")
    assert_same(accumulate(case, size), tt.gradients(case), scale=N / size)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_summing_micro_batches_then_normalising_once_gives_the_full_batch_gradient(net, reduction):
    tt = torch_ref()
    case = case_for(net, reduction)
    assert_same(full_batch_gradient(case, 5), tt.gradients(case))  # unequal micro-batches 5, 5, 2


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_accumulation_matches_torch_grad_across_several_backward_calls(net, reduction):
    tt = torch_ref()
    case = case_for(net, reduction)
    assert_same(accumulate(case, 5), tt.accumulated_gradients(case, 5))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_accumulation_matches_the_sum_of_jax_grads_over_micro_batches(reduction):
    jt = jax_ref()
    case = case_for("relu-relu-bce", reduction)
    assert_same(accumulate(case, 6), jt.accumulated_gradients(case, 6))


def test_overwriting_instead_of_adding_keeps_only_the_last_micro_batch():
    # Seed 001's question: with "=" the buffer ends as the last micro-batch's gradient alone.
    tt = torch_ref()
    case = case_for("relu-relu-bce", "sum")
    full = tt.gradients(case)
    last = make_case(case.network, case.params, case.X[8:], case.Y[8:])
    overwritten = params_grads(run(last))
    assert_same(overwritten, tt.gradients(last))
    assert not np.allclose(overwritten["dW1"], full["dW1"])


def test_buffers_are_updated_in_place_and_returned_in_the_trace():
    case = case_for("tanh-sigmoid-mse", "sum")
    buffers = {name: np.zeros(shape) for name, shape in case.network.parameter_shapes().items()}
    buffers = {f"d{k}": v for k, v in buffers.items()}
    originals = dict(buffers)
    fwd = forward(case.network, case.params, case.X, case.Y, case.T)
    trace = backward(case.network, case.params, fwd, case.T, accumulate_into=buffers)
    for name, buf in originals.items():
        assert buffers[name] is buf and trace[name] is buf  # the same arrays, added into
        assert not np.all(buf == 0)


def test_backward_without_buffers_is_unchanged_and_a_first_buffer_is_a_copy():
    case = case_for("relu-relu-bce", "mean")
    fwd = forward(case.network, case.params, case.X, case.Y, case.T)
    plain = backward(case.network, case.params, fwd, case.T)
    buffers: dict = {}
    accumulated = backward(case.network, case.params, fwd, case.T, accumulate_into=buffers)
    for name in plain:
        np.testing.assert_array_equal(accumulated[name], plain[name])
    backward(case.network, case.params, fwd, case.T, accumulate_into=buffers)
    np.testing.assert_array_equal(buffers["dW1"], 2 * plain["dW1"])  # x + x is exact
    np.testing.assert_array_equal(plain["dW1"], backward(case.network, case.params, fwd, case.T)["dW1"])


def test_a_buffer_of_the_wrong_shape_is_an_input_error():
    case = case_for("relu-relu-bce", "sum")
    fwd = forward(case.network, case.params, case.X, case.Y, case.T)
    with pytest.raises(InputError, match="dW1 has shape"):
        backward(case.network, case.params, fwd, case.T, accumulate_into={"dW1": np.zeros((4, 3))})


def test_micro_batches_cover_every_row_once():
    assert micro_batches(12, 5) == [slice(0, 5), slice(5, 10), slice(10, 12)]
    with pytest.raises(InputError):
        micro_batches(12, 0)
