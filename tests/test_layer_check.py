"""Checking a user's own NumPy layer code against PyTorch and JAX, and the pytest helper.

The layers below are written as a user would write them (llm.c style:
``forward(x, params) -> (out, cache)``, ``backward(dout, cache) -> grads``);
the right ones pass, each deliberately wrong one fails with a message that
names the trial, the gradient and its worst element.
"""

from __future__ import annotations

import re

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


def leaky_relu_forward(x, params):
    return np.where(x > 0, x, 0.01 * x), x


def leaky_relu_backward(dout, x):
    return dout * np.where(x > 0, 1.0, 0.01)         # the slope 0.01 at x == 0, as torch takes it


def softplus_forward(x, params):
    return np.logaddexp(x, 0.0), x


def softplus_backward(dout, x):
    return dout / (1 + np.exp(-x))                   # d/dx log(1 + e^x) = sigmoid(x)


ACTIVATION_LAYERS = {"relu": (relu_forward, relu_backward), "sigmoid": (sigmoid_forward, sigmoid_backward),
                     "tanh": (tanh_forward, tanh_backward), "softmax": (softmax_forward, softmax_backward),
                     "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
                     "softplus": (softplus_forward, softplus_backward)}


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


def norm_layer(axis, linear=False):
    """Batch norm (axis 0) or layer norm (axis 1), optionally after a Linear part and before a ReLU, the
    backward in the compact form (tests/test_norms.py checks the course's staged one)."""
    def forward(x, params):
        z = x @ params["W"] + params["b"] if linear else x
        mu, var = z.mean(axis=axis, keepdims=True), z.var(axis=axis, keepdims=True)
        xhat = (z - mu) / np.sqrt(var + 1e-5)
        s = params["gamma"] * xhat + params["beta"]
        return (np.maximum(s, 0) if linear else s), (x, params, xhat, var, s)

    def backward(dout, cache):
        x, params, xhat, var, s = cache
        ds = dout * (s > 0) if linear else dout
        m = x.shape[0] if axis == 0 else xhat.shape[1]
        dxhat = ds * params["gamma"]
        dz = (m * dxhat - dxhat.sum(axis=axis, keepdims=True)
              - xhat * (dxhat * xhat).sum(axis=axis, keepdims=True)) / (m * np.sqrt(var + 1e-5))
        grads = {"gamma": (ds * xhat).sum(axis=0), "beta": ds.sum(axis=0)}
        if linear:
            grads.update(x=dz @ params["W"].T, W=x.T @ dz, b=dz.sum(axis=0))
        else:
            grads["x"] = dz
        return grads

    return forward, backward


RIGHT = {"linear": (linear_forward, linear_backward), **ACTIVATION_LAYERS,
         **{f"linear+{a}": linear_then(a) for a in ACTIVATION_LAYERS},
         "batchnorm": norm_layer(0), "layernorm": norm_layer(1),
         "linear+batchnorm+relu": norm_layer(0, linear=True), "linear+layernorm+relu": norm_layer(1, linear=True)}


# --- right layers pass -----------------------------------------------------------------------------

def test_every_layer_the_checker_knows_has_a_right_implementation_here():
    assert set(RIGHT) == set(LAYERS)


@pytest.mark.parametrize("layer", sorted(RIGHT))
def test_a_right_layer_passes_against_torch_and_jax(layer):
    report = assert_layer_matches(*RIGHT[layer], layer=layer)
    assert report.ok and report.references == ["torch", "jax"]
    expected_trials = ["random", "kink"] if "relu" in layer and "norm" not in layer else ["random"]  # a norm: no kink trial
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
                                             r".*x there is exactly on the relu kink \(Z == 0\), where the derivative is taken as 0"):
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


# --- user code is untrusted: what it returns or raises is a failing check, never a traceback ---------

def _only_error(report, function=None):
    """The report fails, first on an ``error`` check; its message is one line naming what was wrong."""
    assert not report.ok
    first = report.failures[0]
    assert first.status == "error" and not first.ok
    if function is not None:
        assert first.name == function
    message = report.message()
    assert "\n" not in message and first.note in message
    return first


@pytest.mark.parametrize("returned, expected", [
    (None, r"forward returned None; it must return \(out, cache\)"),
    ("out", r"forward returned a str; it must return \(out, cache\)"),
    (np.zeros((5, 4)), r"forward returned an array of shape \(5, 4\), not a pair; it must return \(out, cache\)"),
    ((np.zeros((5, 4)),), r"forward returned a tuple of 1 value; it must return \(out, cache\)"),
    ((1, 2, 3), r"forward returned a tuple of 3 values; it must return \(out, cache\)"),
])
def test_a_forward_that_does_not_return_a_pair_fails_with_one_line(returned, expected):
    report = check_layer(lambda x, p: returned, relu_backward, "relu")
    first = _only_error(report, "forward")
    assert re.fullmatch(expected, first.note)
    assert report.message().startswith(f"relu layer, random trial: {first.note}")
    assert {c.extra["trial"] for c in report.failures} == {"random", "kink"}


def test_a_forward_or_backward_that_raises_fails_with_the_exceptions_first_line():
    def forward(x, params):
        return x @ params["W"].T, x                    # (5, 4) @ (3, 4): a shape mismatch inside the user's code

    report = check_layer(forward, linear_backward, "linear")
    first = _only_error(report, "forward")
    assert first.note.startswith("forward raised ValueError: matmul: Input operand 1 has a mismatch")
    assert "test_layer_check.py" in first.note         # where in the user's code

    def backward(dout, cache):
        raise ValueError("no\nsecond line")

    first = _only_error(check_layer(relu_forward, backward, "relu"), "backward")
    assert re.fullmatch(r"backward raised ValueError: no \(at .*test_layer_check.py:\d+ in backward\)", first.note)


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_still_escape(raised):
    def backward(dout, cache):
        raise raised()

    with pytest.raises(raised):
        check_layer(relu_forward, backward, "relu")


def test_the_users_own_base_exceptions_do_not_escape():
    class Mine(BaseException):
        pass

    def forward(x, params):
        raise Mine("boom")

    assert _only_error(check_layer(forward, relu_backward, "relu")).note.startswith("forward raised Mine: boom")


@pytest.mark.parametrize("layer, returned, expected", [
    ("relu", None, r'backward returned None; it must return the gradient dx \(or \{"x": dx\}\)'),
    ("linear", "dx", (r'backward returned a str; it must return the gradients \{"x": dx, "W": dW, "b": db\} '
                      r'or \(dx, dW, db\)')),
    ("relu", (np.zeros((5, 4)), np.zeros(4)), r"backward returned 2 arrays, the relu layer has 1 gradient \(dx\)"),
    ("linear", (np.zeros((5, 4)), np.zeros((4, 3))),
     r"backward returned 2 arrays, the linear layer has 3 gradients \(dx, dW, db\)"),
    ("linear", np.zeros((5, 4)), r"backward returned 1 array, the linear layer has 3 gradients \(dx, dW, db\)"),
    ("linear+relu", (), r"backward returned 0 arrays, the linear\+relu layer has 3 gradients \(dx, dW, db\)"),
])
def test_a_backward_that_returns_the_wrong_thing_fails_with_one_line(layer, returned, expected):
    forward = RIGHT[layer][0]
    first = _only_error(check_layer(forward, lambda dout, cache: returned, layer), "backward")
    assert re.fullmatch(expected, first.note)


@pytest.mark.parametrize("dx, expected", [
    ([[1.0, 2.0], [3.0]], r"backward returned dx as a list that is not an array of numbers: .*inhomogeneous.*"),
    ({"a": 1}, r"backward returned dx as a dict, not an array of numbers"),
    ("abc", r"backward returned dx as a str, not an array of numbers"),
    (np.array([object()] * 20, dtype=object).reshape(5, 4),
     r"backward returned dx as an array of Python objects, not of numbers"),
    (np.zeros((5, 4), complex), r"backward returned dx as an array of complex128; gradients are real \(float64 here\)"),
])
def test_a_gradient_that_is_not_an_array_of_real_numbers_fails_with_one_line(dx, expected):
    report = check_layer(relu_forward, lambda dout, x: {"x": dx}, "relu")
    first = _only_error(report, "dx")
    assert re.fullmatch(expected, first.note), first.note
    assert report.message().startswith(f"relu layer, random trial: {first.note}")


def test_a_gradient_whose_array_conversion_raises_fails_with_one_line():
    class Bad:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("no array for you")

    first = _only_error(check_layer(relu_forward, lambda dout, x: (Bad(),), "relu"), "dx")
    assert first.note == "backward returned dx as a Bad that is not an array of numbers: RuntimeError: no array for you"


def test_a_ragged_forward_output_or_a_ragged_tuple_gradient_fails_with_one_line():
    first = _only_error(check_layer(lambda x, p: ([[1.0], [1.0, 2.0]], x), relu_backward, "relu"), "out")
    assert first.note.startswith("forward returned out as a list that is not an array of numbers")
    report = check_layer(linear_forward, lambda dout, c: (dout @ c[1].T, [[1.0, 2.0], [3.0]], dout.sum(axis=0)),
                         "linear")
    assert [(c.name, c.status) for c in report.failures] == [("dW", "error"), ("dW", "error")]


def test_an_out_of_none_or_a_pair_that_cannot_be_read_fails_with_one_line():
    first = _only_error(check_layer(lambda x, p: (None, x), relu_backward, "relu"), "out")
    assert first.note == "forward returned out as None, not an array of numbers"

    class Pair(tuple):
        def __len__(self):
            raise RuntimeError("len boom")

    first = _only_error(check_layer(lambda x, p: Pair((x, x)), relu_backward, "relu"), "forward")
    assert first.note == "forward returned a Pair that could not be read: RuntimeError: len boom"


@pytest.mark.parametrize("extra", ["gamma", "dW2"])
def test_an_unknown_gradient_key_is_named(extra):
    def backward(dout, cache):
        return {**linear_backward(dout, cache), extra: np.zeros(3)}

    report = check_layer(linear_forward, backward, "linear")
    first = _only_error(report, "backward")
    assert first.note == f"backward returned an unknown gradient {extra!r}; the linear layer has dx, dW, db"
    assert [c.status for c in report.failures] == ["error"]   # the known gradients are still compared, and right
    assert report.message().startswith(f"linear layer, random trial: {first.note}")
    first = _only_error(check_layer(relu_forward, lambda dout, x: {"dx": dout * (x > 0), 0: 1}, "relu"))
    assert first.note == "backward returned an unknown gradient 0; the relu layer has dx"


def test_a_gradient_given_under_both_of_its_names_is_named():
    report = check_layer(relu_forward, lambda dout, x: {"x": dout * (x > 0), "dx": dout}, "relu")
    assert _only_error(report, "backward").note == "backward returned dx twice, as 'x' and as 'dx'; give one"


# --- the user's code gets copies; what it does to them cannot touch the reference side ------------

def test_a_backward_that_scales_dout_in_place_fails_and_the_reference_keeps_the_original_dout(monkeypatch):
    from manual_backprop.testing import layers

    seen = []
    original = layers._reference
    monkeypatch.setattr(layers, "_reference", lambda name, spec, trial: seen.append(trial.dout.copy())
                        or original(name, spec, trial))

    def backward(dout, cache):
        dout *= 2                                         # in place
        return linear_backward(dout, cache)

    report = check_layer(linear_forward, backward, "linear")
    assert {c.name for c in report.failures} == {"backward", "dx", "dW", "db"}   # the write is a check of its own
    assert report.failures[0].note.startswith("backward modified dout in place (dout[mask] = 0, dout *= ...?)")
    assert "dW is exactly twice the right value; it should be dW = x.T @ dout." in report.message()
    trial = make_trials(LAYERS["linear"], 5, 4, 3, 0, np.dtype("float64"))[0]
    assert seen and all(np.array_equal(d, trial.dout) for d in seen)
    right = linear_backward(trial.dout, (trial.x, trial.params["W"]))
    for c in report.failures[1:]:
        assert c.worst.reference == pytest.approx(right[c.name[1:]][c.worst.index], rel=1e-14)
        assert c.worst.engine == pytest.approx(2 * c.worst.reference, rel=1e-14)


def test_a_backward_that_overwrites_out_through_its_cache_does_not_change_the_out_compared():
    def backward(dout, t):                                # the cache is forward's out itself
        t **= 2                                           # in place: out is now t**2
        return dout * (1 - t)                             # the right gradient all the same

    assert check_layer(tanh_forward, backward, "tanh").ok


def test_the_trials_inputs_are_read_only():
    for trial in make_trials(LAYERS["linear+relu"], 5, 4, 3, 0, np.dtype("float64")):
        for a in (trial.x, trial.dout, *trial.params.values()):
            assert not a.flags.writeable


# --- bad options are an InputError, one line naming the option and the allowed values ------------

@pytest.mark.parametrize("options, expected", [
    ({"batch": 0}, r"check_layer: batch must be a positive integer, got 0"),
    ({"batch": -1}, r"check_layer: batch must be a positive integer, got -1"),
    ({"batch": 2.5}, r"check_layer: batch must be a positive integer, got 2.5"),
    ({"batch": True}, r"check_layer: batch must be a positive integer, got True"),
    ({"batch": "5"}, r"check_layer: batch must be a positive integer, got '5'"),
    ({"n_in": 0}, r"check_layer: n_in must be a positive integer, got 0"),
    ({"n_out": 0}, r"check_layer: n_out must be a positive integer, got 0"),
    ({"batch": 10**6, "n_in": 10**6}, (r"check_layer: batch × n_in = 1000000000000 elements is too large to "
                                       r"check \(at most 10000000\)")),
    ({"seed": -1}, r"check_layer: seed must be a non-negative integer, got -1"),
    ({"seed": 1.5}, r"check_layer: seed must be a non-negative integer, got 1.5"),
    ({"dtype": "float16"}, r"check_layer: dtype must be one of float64, float32, got 'float16'"),
    ({"dtype": ["float32"]}, r"check_layer: dtype must be one of float64, float32, got \['float32'\]"),
    ({"against": ("tf",)}, r"check_layer: against names an unknown reference 'tf'; known: torch, jax"),
    ({"against": "torch"}, (r"check_layer: against must be a tuple of reference names such as \('torch',\), "
                            r"got the string 'torch'")),
    ({"against": ()}, r"check_layer: against must name at least one reference: torch, jax"),
    ({"against": ("torch", "torch")}, r"check_layer: against names 'torch' twice"),
    ({"against": 3}, r"check_layer: against must be a tuple of reference names such as \('torch',\), got 3"),
])
def test_a_bad_option_is_an_input_error_of_one_line(options, expected):
    with pytest.raises(InputError, match=rf"^{expected}$"):
        check_layer(relu_forward, relu_backward, "relu", **options)


def test_an_integer_option_may_be_a_numpy_integer_and_dtype_a_numpy_dtype():
    report = check_layer(relu_forward, relu_backward, "relu", batch=np.int64(3), n_in=np.int32(2),
                         seed=np.uint8(1), dtype=np.float32, against=["torch"])
    assert report.ok and report.references == ["torch"]


def test_a_forward_that_is_not_a_function_or_a_layer_that_is_not_a_name_is_an_input_error():
    with pytest.raises(InputError, match=r"^check_layer: forward must be a function forward\(x, params\) -> "
                                         r"\(out, cache\), got int$"):
        check_layer(3, relu_backward, "relu")
    with pytest.raises(InputError, match=r"^check_layer: backward must be a function backward\(dout, cache\) "
                                         r"-> grads, got None$"):
        check_layer(relu_forward, None, "relu")
    with pytest.raises(InputError, match=r"^unknown layer \['relu'\]; known: linear, sigmoid, relu"):
        check_layer(relu_forward, relu_backward, ["relu"])


def test_assert_layer_matches_names_an_unknown_option():
    with pytest.raises(InputError, match=r"^assert_layer_matches: unknown option 'bach'; known: batch, n_in, "
                                         r"n_out, seed, dtype, against, layout, eps$"):
        assert_layer_matches(relu_forward, relu_backward, layer="relu", bach=5)


def test_a_leaky_relu_with_slope_1_at_zero_fails_the_kink_trial_as_jax_nn_leaky_relu_would():
    # jax.nn.leaky_relu is where(x >= 0, ...): derivative 1 at exactly 0. The project takes torch's slope 0.01.
    def backward_ge(dout, x):
        return dout * np.where(x >= 0, 1.0, 0.01)

    report = check_layer(leaky_relu_forward, backward_ge, "leaky_relu")
    assert not report.ok
    assert {c.extra["trial"] for c in report.failures} == {"kink"}
    assert "where the derivative is taken as 0.01" in report.message()
