"""Checking a user's own NumPy layer code against PyTorch and JAX, and the pytest helper.

The layers below are written as a user would write them (llm.c style:
``forward(x, params) -> (out, cache)``, ``backward(dout, cache) -> grads``);
the right ones pass, each deliberately wrong one fails with a message that
names the trial, the gradient and its worst element.
"""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import InputError, check_layer, references
from manual_backprop.compare import layer_error_scales, tolerance
from manual_backprop.testing import assert_layer_matches
from manual_backprop.testing.layers import LAYERS, make_trials

# asked without importing them: torch and JAX are imported by the first check that runs
pytestmark = pytest.mark.skipif(not (references.is_installed("torch") and references.is_installed("jax")),
                                reason="checking a layer needs torch and jax")


# --- a user's layers ------------------------------------------------------------------------------

def linear_forward(x, params):
    out = x @ params["W"] + params["b"]               # (N, n_in) @ (n_in, n_out) + (n_out,)
    return out, (x, params["W"])


def linear_backward(dout, cache):
    x, W = cache
    return {"x": dout @ W.T, "W": x.T @ dout, "b": dout.sum(axis=0)}


def relu_forward(x, params):
    return np.maximum(x, 0), x


def relu_backward(dout, x):
    return {"x": dout * (x > 0)}


def sigmoid_forward(x, params):
    s = 1 / (1 + np.exp(-x))
    return s, (x, s)


def sigmoid_backward(dout, cache):
    x, s = cache
    return {"x": dout * s * (1 - s)}


def tanh_forward(x, params):
    t = np.tanh(x)
    return t, t


def tanh_backward(dout, t):
    return dout * (1 - t**2)                          # dx alone: the layer has no parameters


def softmax_forward(x, params):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return p, p


def softmax_backward(dout, p):
    return {"dx": p * (dout - (dout * p).sum(axis=1, keepdims=True))}


ACTIVATION_LAYERS = {"relu": (relu_forward, relu_backward), "sigmoid": (sigmoid_forward, sigmoid_backward),
                     "tanh": (tanh_forward, tanh_backward), "softmax": (softmax_forward, softmax_backward)}


def linear_then(act):
    """A Linear layer followed by an activation, composed as a user would: (dx, dW, db) as a tuple."""
    act_forward, act_backward = ACTIVATION_LAYERS[act]

    def forward(x, params):
        z, lin_cache = linear_forward(x, params)
        out, act_cache = act_forward(z, {})
        return out, (lin_cache, act_cache)

    def backward(dout, cache):
        lin_cache, act_cache = cache
        dz = act_backward(dout, act_cache)
        dz = dz["x"] if isinstance(dz, dict) and "x" in dz else dz["dx"] if isinstance(dz, dict) else dz
        g = linear_backward(dz, lin_cache)
        return g["x"], g["W"], g["b"]

    return forward, backward


RIGHT = {"linear": (linear_forward, linear_backward), **ACTIVATION_LAYERS,
         **{f"linear+{a}": linear_then(a) for a in ACTIVATION_LAYERS}}


# --- right layers pass -----------------------------------------------------------------------------

def test_every_layer_the_checker_knows_has_a_right_implementation_here():
    assert set(RIGHT) == set(LAYERS)


@pytest.mark.parametrize("layer", sorted(RIGHT))
def test_a_right_layer_passes_against_torch_and_jax(layer):
    report = assert_layer_matches(*RIGHT[layer], layer=layer)
    assert report.ok and report.references == ["torch", "jax"]
    expected_trials = ["random", "kink"] if "relu" in layer else ["random"]
    assert report.trials == expected_trials


def test_the_kink_trial_puts_pre_activations_exactly_on_zero():
    relu, linear_relu = make_trials(LAYERS["relu"], 5, 4, 4, 0, np.dtype("float64")), \
        make_trials(LAYERS["linear+relu"], 5, 4, 3, 0, np.dtype("float64"))
    assert (relu[1].x == 0).sum() == 7                # every third of 20 elements: 0, 3, ..., 18
    kink = linear_relu[1]
    Z = kink.x @ kink.params["W"] + kink.params["b"]
    np.testing.assert_array_equal(Z[0, ::2], [0.0, 0.0])


# --- wrong layers fail, naming the gradient and its worst element ------------------------------------------

def test_a_relu_with_mask_x_greater_or_equal_0_passes_random_inputs_but_fails_on_the_kink():
    report = check_layer(relu_forward, lambda dout, x: {"x": dout * (x >= 0)}, "relu")
    assert {(c.extra["trial"], c.name) for c in report.failures} == {("kink", "dx")}
    first = report.failures[0]
    kink = make_trials(LAYERS["relu"], 5, 4, 4, 0, np.dtype("float64"))[1]
    on_zero = np.where(kink.x == 0, np.abs(kink.dout), -1)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(on_zero), on_zero.shape))
    assert first.worst.index == worst
    assert (first.worst.engine, first.worst.reference) == (kink.dout[worst], 0.0)
    with pytest.raises(AssertionError, match=rf"relu layer, kink trial: dx\[{worst[0]}, {worst[1]}\] disagrees "
                                             r"with torch: yours .*, torch 0, \|Δ\| .* \(up to .* allowed\); "
                                             r".*x there is exactly 0, the ReLU kink"):
        assert_layer_matches(relu_forward, lambda dout, x: {"x": dout * (x >= 0)}, layer="relu")


def test_a_linear_layer_with_dout_T_at_x_fails_on_the_shape_of_dW():
    wrong = lambda dout, c: {"x": dout @ c[1].T, "W": dout.T @ c[0], "b": dout.sum(axis=0)}  # noqa: E731
    with pytest.raises(AssertionError, match=r"linear layer, random trial: dW: shape \(3, 4\), expected "
                                             r"\(4, 3\) \(the transposed layout"):
        assert_layer_matches(linear_forward, wrong, layer="linear")


def test_a_sigmoid_derivative_taken_from_x_fails_at_the_worst_element_of_dx():
    report = check_layer(sigmoid_forward, lambda dout, c: {"x": dout * c[0] * (1 - c[0])}, "sigmoid")
    assert {c.name for c in report.failures} == {"dx"}
    first = report.failures[0]
    trial = make_trials(LAYERS["sigmoid"], 5, 4, 4, 0, np.dtype("float64"))[0]
    s = 1 / (1 + np.exp(-trial.x))
    mine, right = trial.dout * trial.x * (1 - trial.x), trial.dout * s * (1 - s)
    E = layer_error_scales("sigmoid", trial.x, {}, {"Z": trial.x, "out": s, "dout": trial.dout, "dZ": right},
                           "float64")["dx"]
    ratio = np.abs(mine - right) / tolerance(E, "float64")  # the worst element against the policy's tolerance
    w = first.worst
    assert w.index == tuple(int(i) for i in np.unravel_index(np.argmax(ratio), ratio.shape))
    assert w.engine == pytest.approx(mine[w.index], rel=1e-15)
    assert w.reference == pytest.approx(right[w.index], rel=1e-14)
    assert w.tolerance == pytest.approx(tolerance(E, "float64")[w.index], rel=1e-12)
    assert first.reference == "torch" and report.failures[1].reference == "jax"
    assert report.message().startswith(f"sigmoid layer, random trial: dx[{w.index[0]}, {w.index[1]}] disagrees "
                                       f"with torch: yours {w.engine:.10g}, torch {w.reference:.10g}, |Δ| ")


def test_a_softmax_differentiated_elementwise_fails():
    report = check_layer(softmax_forward, lambda dout, p: dout * p * (1 - p), "softmax")
    assert {c.name for c in report.failures} == {"dx"}


def test_a_linear_relu_without_the_mask_fails_on_dx_dW_and_db():
    forward, _ = linear_then("relu")
    lin_forward = forward

    def backward(dout, cache):
        g = linear_backward(dout, cache[0])              # the mask left out
        return g["x"], g["W"], g["b"]

    report = check_layer(lin_forward, backward, "linear+relu")
    assert {c.name for c in report.failures} == {"dx", "dW", "db"}
    assert report.message().startswith("linear+relu layer, random trial: dx[")


def test_a_gradient_in_float32_for_float64_inputs_is_a_dtype_failure():
    report = check_layer(relu_forward, lambda dout, x: (dout * (x > 0)).astype(np.float32), "relu")
    assert {c.status for c in report.failures} == {"dtype"}
    assert "dx: dtype float32, expected float64" in report.message()


def test_a_missing_gradient_is_named():
    report = check_layer(linear_forward, lambda dout, c: {"x": dout @ c[1].T, "W": c[0].T @ dout}, "linear")
    assert [c.name for c in report.failures] == ["db", "db"]
    assert "db: backward returned no db" in report.message()


def test_an_unknown_layer_is_an_input_error():
    with pytest.raises(InputError, match="unknown layer 'conv'"):
        check_layer(relu_forward, relu_backward, "conv")


# --- the tolerance is the policy's, in both dtypes, at a real batch size --------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", ["linear", "linear+relu", "linear+sigmoid", "linear+tanh", "linear+softmax"])
def test_a_right_linear_layer_passes_in_float32_and_float64_at_batch_64(layer, dtype):
    report = assert_layer_matches(*RIGHT[layer], layer=layer, batch=64, n_in=32, n_out=16, dtype=dtype)
    margins = [c.margin for c in report.checks]
    assert all(c.status == "ok" for c in report.checks) and max(margins) <= 1


def test_a_dW_off_by_one_part_in_a_million_fails_in_float64():
    def off_by_1e_6(dout, cache):
        x, W = cache
        return {"x": dout @ W.T, "W": (x.T @ dout) * (1 + 1e-6), "b": dout.sum(axis=0)}

    report = check_layer(linear_forward, off_by_1e_6, "linear", batch=64, n_in=32, n_out=16)
    assert {c.name for c in report.failures} == {"dW"}
    first = report.failures[0]
    assert first.margin > 1e3  # far outside float64 rounding
    assert report.message().startswith("linear layer, random trial: dW[")
    assert "(up to " in report.message() and " allowed)" in report.message()


def test_the_layer_tolerance_is_K_times_the_policys_error_scale_plus_the_floor():
    from manual_backprop.compare import FLOOR, K

    report = check_layer(linear_forward, linear_backward, "linear", batch=64, n_in=32, n_out=16)
    trial = make_trials(LAYERS["linear"], 64, 32, 16, 0, np.dtype("float64"))[0]
    Z = trial.x @ trial.params["W"] + trial.params["b"]
    E = layer_error_scales("identity", trial.x, trial.params,
                           {"Z": Z, "out": Z, "dout": trial.dout, "dZ": trial.dout}, "float64")
    for c in report.checks:
        assert c.worst.tolerance == pytest.approx(K * E[c.name][c.worst.index] + FLOOR["float64"], rel=1e-12)
