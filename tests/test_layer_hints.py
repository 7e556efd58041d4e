"""``check_layer`` names the classic mistake a wrong layer reproduces, in the words ``validate`` uses.

Each test plants one mistake in an otherwise right CS231n-style layer
(``affine_forward(x, w, b)`` / ``affine_backward(dout, cache) -> (dx, dw, db)``)
and asserts the exact sentence of the catalogue
(:mod:`manual_backprop.validation.mistakes`); the right layer gets no hint, and
a wrong array that reproduces no mistake gets none either: a hint is decided by
the user's numbers against the mistake computed from the trial's inputs, never
by a shape alone. Writing into an input, a forward without a cache, or a
backward with too few arrays are one line each.
"""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import check_layer, references
from manual_backprop.validation.mistakes import BY_ID

pytestmark = pytest.mark.skipif(not (references.is_installed("torch") and references.is_installed("jax")),
                                reason="checking a layer needs torch and jax")


def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def planted(dx=None, dw=None, db=None, order=None):
    """affine_backward with one of its results replaced: ``dw=lambda x, w, dout, right: ...``."""
    def backward(dout, cache):
        x, w, b = cache
        right = dict(zip(("dx", "dw", "db"), affine_backward(dout, cache)))
        out = {k: (f(x, w, dout, right[k]) if f is not None else right[k])
               for k, f in (("dx", dx), ("dw", dw), ("db", db))}
        return tuple(out[k] for k in (order or ("dx", "dw", "db")))
    return backward


def hints_of(backward, layer="linear", forward=affine_forward, **options):
    report = check_layer(forward, backward, layer, **options)
    assert not report.ok
    for h in report.hints:
        assert h in report.message()
    return report.hints


def test_the_right_layer_gets_no_hint():
    report = check_layer(affine_forward, affine_backward, "linear")
    assert report.ok and report.hints == []


DB_AXIS_1 = "db sums dout over the units (axis 1) instead of over the samples (axis 0): db = dout.sum(axis=0)."


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_db_summed_over_axis_1_is_named_not_only_a_shape_error(dtype):
    report = check_layer(affine_forward, planted(db=lambda x, w, dout, r: dout.sum(axis=1)), "linear", dtype=dtype)
    assert [c.status for c in report.failures] == ["shape", "shape"]      # (5,) where (3,) belongs
    assert report.hints == [DB_AXIS_1]
    assert report.message() == ("linear layer, random trial: db: shape (5,), expected (3,) or (1, 3). Disagreeing: db "
                                f"(random). {DB_AXIS_1} Called as forward(x, w, b).")


def test_db_summed_over_axis_1_is_named_when_the_shapes_agree_by_its_values():
    hints = hints_of(planted(db=lambda x, w, dout, r: dout.sum(axis=1)), batch=3, n_out=3)   # (3,) either way
    assert hints == [DB_AXIS_1]


def test_a_wrong_db_of_the_batchs_shape_is_no_axis_mistake_by_its_shape_alone():
    report = check_layer(affine_forward, planted(db=lambda x, w, dout, r: np.ones(dout.shape[0])), "linear")
    assert [c.status for c in report.failures] == ["shape", "shape"]
    assert report.hints == []


def test_db_as_a_mean_is_a_1_over_N_too_many():
    hints = hints_of(planted(db=lambda x, w, dout, r: dout.mean(axis=0)))
    assert hints == ["db is divided by N = 5 once too often: the layer's gradients are sums over the batch; "
                     "a mean's 1/N belongs in dout, the loss's gradient."]


def test_a_gradient_N_times_or_twice_the_right_one_is_named_with_its_factor():
    assert hints_of(planted(dw=lambda x, w, dout, r: x.T @ dout * x.shape[0])) == [
        "dW is exactly N = 5 times the right value; it should be dW = x.T @ dout."]
    assert hints_of(planted(dx=lambda x, w, dout, r: 2 * dout @ w.T)) == [
        "dx is exactly twice the right value; it should be dx = dout @ W.T."]
    assert hints_of(planted(dw=lambda x, w, dout, r: -(x.T @ dout))) == [
        "dW has the opposite sign; it should be dW = x.T @ dout."]


@pytest.mark.parametrize("order, expected", [
    (("dx", "db", "dw"), ["dW holds the values of db", "db holds the values of dW"]),
    (("dw", "dx", "db"), ["dx holds the values of dW", "dW holds the values of dx"]),
])
def test_gradients_returned_in_the_wrong_order_are_named_by_their_values(order, expected):
    hints = hints_of(planted(order=order))
    tail = (": the gradients are returned in the wrong order (or under the wrong names); backward returns "
            "(dx, dW, db), in that order.")
    assert hints == [e + tail for e in expected]


def test_the_transposed_products_are_named():
    assert hints_of(planted(dw=lambda x, w, dout, r: dout.T @ x)) == [
        "dW is dout.T @ x, the transposed product; it should be x.T @ dout."]
    # dx = dout @ W needs W square (n_in = n_out) to run at all; then only its values tell it
    assert hints_of(planted(dx=lambda x, w, dout, r: dout @ w), n_in=3, n_out=3) == [
        "dx is dout @ W, the transposed product; it should be dx = dout @ W.T."]


def test_a_wrong_value_that_is_no_classic_mistake_gets_no_hint():
    report = check_layer(affine_forward, planted(dw=lambda x, w, dout, r: r + 0.1), "linear")
    assert {c.name for c in report.failures} == {"dW"} and report.hints == []


def test_the_activations_mistakes_are_carried_to_every_gradient_of_a_linear_layer():
    def forward(x, w, b):
        z = x @ w + b
        return np.maximum(z, 0), (x, w, z)

    def no_mask(dout, cache):
        x, w, z = cache
        return dout @ w.T, x.T @ dout, dout.sum(axis=0)   # dz = dout: the mask left out

    report = check_layer(forward, no_mask, "linear+relu")
    assert {c.name for c in report.failures} == {"dx", "dW", "db"}
    assert report.hints == ["dZ is dout with the ReLU mask left out; it should be dout * (Z > 0)."]


def test_a_relu_mask_taken_as_x_greater_or_equal_0_is_named_on_the_kink_trial():
    report = check_layer(lambda x: (np.maximum(x, 0), x), lambda dout, x: dout * (x >= 0), "relu")
    assert {c.extra["trial"] for c in report.failures} == {"kink"}
    assert report.hints == ["dx takes the ReLU mask as x >= 0; the derivative at x == 0 is 0, so it should be "
                            "dout * (x > 0)."]


def test_a_sigmoid_derivative_from_x_is_named():
    def forward(x):
        s = 1 / (1 + np.exp(-x))
        return s, (x, s)

    report = check_layer(forward, lambda dout, c: dout * c[0] * (1 - c[0]), "sigmoid")
    assert report.hints == ["dx takes the sigmoid derivative from x (x * (1 - x)); it comes from out: "
                            "dout * out * (1 - out)."]


def test_the_layer_hints_are_the_catalogues_own_sentences():
    # one sentence per mistake, in one place: the layer checker fills in the words, nothing more
    assert BY_ID["db_wrong_axis"].sentence.format(n="db", dZ="dout", right="db = dout.sum(axis=0)") == DB_AXIS_1


# --- writing into an input is a failing check of its own -------------------------------------------------

IN_PLACE_DOUT = ("backward modified dout in place (dout[mask] = 0, dout *= ...?); it is a real bug when the same "
                 "dout feeds two branches (a residual connection, a shared layer): work on a copy")


def test_a_relu_backward_that_zeroes_dout_in_place_fails_though_its_dx_is_right():
    def relu_backward(dout, x):
        dout[x <= 0] = 0
        return dout

    report = check_layer(lambda x: (np.maximum(x, 0), x), relu_backward, "relu")
    assert [(c.name, c.status, c.extra["trial"]) for c in report.failures] == [
        ("backward", "error", "random"), ("backward", "error", "kink")]
    assert report.failures[0].note == IN_PLACE_DOUT
    assert report.message().startswith(f"relu layer, random trial: {IN_PLACE_DOUT}. Disagreeing: backward")


def test_a_forward_that_centres_x_in_place_and_a_backward_that_steps_W_are_told_so():
    def forward(x, w, b):
        x -= 0                                           # a no-op write: the same values, unseen
        x *= 1.0
        return affine_forward(x, w, b)

    assert check_layer(forward, affine_backward, "linear").ok

    def centring(x, w, b):
        x -= x.mean(axis=0)
        return affine_forward(x, w, b)

    report = check_layer(centring, affine_backward, "linear")
    assert report.failures[0].name == "forward"
    assert report.failures[0].note == ("forward modified x in place; x is the previous layer's output, still "
                                       "needed (by its own backward, or a second branch)")

    def stepping(dout, cache):
        x, w, b = cache
        dx, dw, db = affine_backward(dout, cache)
        w -= 0.1 * dw                                    # an SGD step fused into backward
        return dx, dw, db

    report = check_layer(affine_forward, stepping, "linear")
    assert [c.note for c in report.failures if c.name == "backward"] == [
        "backward modified W in place; the parameters change only in the optimiser's step"]


# --- a forward without a cache, a backward with too few arrays: one line each -----------------------------

def test_a_forward_without_its_cache_and_a_backward_with_two_arrays_fail_with_one_line():
    report = check_layer(lambda x, w, b: x @ w + b, affine_backward, "linear")
    assert report.failures[0].note == ("forward returned an array of shape (5, 3), not a pair; it must return "
                                       "(out, cache)")
    report = check_layer(affine_forward, lambda dout, cache: affine_backward(dout, cache)[:2], "linear")
    assert report.failures[0].note == "backward returned 2 arrays, the linear layer has 3 gradients (dx, dW, db)"
    assert "\n" not in report.message()


@pytest.mark.parametrize("plant, expected", [
    (planted(dw=lambda x, w, dout, r: x.T @ dout * x.shape[0]),
     ["dW is exactly N = 256 times the right value; it should be dW = x.T @ dout."]),
    (planted(db=lambda x, w, dout, r: dout.mean(axis=0)),
     ["db is divided by N = 256 once too often: the layer's gradients are sums over the batch; a mean's 1/N "
      "belongs in dout, the loss's gradient."]),
    (planted(order=("dx", "db", "dw")),
     ["dW holds the values of db: the gradients are returned in the wrong order (or under the wrong names); "
      "backward returns (dx, dW, db), in that order.",
      "db holds the values of dW: the gradients are returned in the wrong order (or under the wrong names); "
      "backward returns (dx, dW, db), in that order."]),
])
def test_the_hints_hold_in_float32_at_a_real_batch_size(plant, expected):
    # the user's float32 rounding grows with a factor N: the candidate's tolerance grows with it
    assert hints_of(plant, dtype="float32", batch=256, n_in=32, n_out=16) == expected
