"""``check_loss``: a hand-written loss ``fn(x, y) -> (loss, dx)`` against PyTorch and JAX.

The losses are written here as a student would: CS231n's ``softmax_loss``
(logits x (N, C), integer labels y (N,), the mean over the batch, the max
subtracted before exp), half-MSE and MSE on predictions, BCE on logits. The
references' values are taken in the tests from torch's own functional losses
(``F.cross_entropy``, ``F.mse_loss``, ``F.binary_cross_entropy_with_logits``);
a planted mistake is named in the catalogue's words.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from manual_backprop import InputError, references
from manual_backprop.testing import assert_loss_matches, check_loss
from manual_backprop.testing.losses import make_loss_trials

pytestmark = pytest.mark.skipif(not (references.is_installed("torch") and references.is_installed("jax")),
                                reason="checking a loss needs torch and jax")


def softmax_loss(x, y):
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    probs = np.exp(log_probs)
    N = x.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


def half_mse_loss(a, y):
    N = a.shape[0]
    return 0.5 * np.sum((a - y) ** 2) / N, (a - y) / N


def mse_loss(a, y):
    return np.mean((a - y) ** 2), 2 * (a - y) / a.size           # the mean over N·K entries, as nn.MSELoss


def bce_loss(z, y):
    p = 1 / (1 + np.exp(-z))
    terms = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return np.mean(terms), (p - y) / z.size                        # as nn.BCEWithLogitsLoss


RIGHT = {"softmax_cross_entropy": softmax_loss, "half_mse": half_mse_loss, "mse": mse_loss, "bce": bce_loss}


def torch_loss_and_grad(loss, x, y):
    """The loss and dL/dx by torch's own functional losses (mean reduction), in float64."""
    import torch
    import torch.nn.functional as F

    X = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    Y = torch.tensor(y if loss == "softmax_cross_entropy" else np.asarray(y, np.float64))
    L = {"softmax_cross_entropy": lambda: F.cross_entropy(X, Y),
         "half_mse": lambda: 0.5 * F.mse_loss(X, Y, reduction="sum") / X.shape[0],
         "mse": lambda: F.mse_loss(X, Y),
         "bce": lambda: F.binary_cross_entropy_with_logits(X, Y)}[loss]()
    L.backward()
    return float(L.detach()), X.grad.numpy()


@pytest.mark.parametrize("loss", sorted(RIGHT))
@pytest.mark.parametrize("dtype, batch, width", [("float64", 5, 4), ("float32", 64, 10)])
def test_a_right_loss_passes(loss, dtype, batch, width):
    report = assert_loss_matches(RIGHT[loss], loss, dtype=dtype, batch=batch, width=width)
    assert report.references == ["torch", "jax"] and {c.name for c in report.checks} == {"loss", "dx"}
    assert report.hints == []
    assert report.message().endswith(f"called as {RIGHT[loss].__name__}({', '.join(_args(RIGHT[loss]))}) "
                                     f"-> (loss, dx).")


def _args(fn):
    import inspect

    return list(inspect.signature(fn).parameters)


def test_the_inputs_are_the_registrys_logits_and_labels():
    t = make_loss_trials("softmax_cross_entropy", 6, 4, 0, np.dtype("float64"))[0]
    x, y = t.x, t.y
    assert x.shape == (6, 4) and y.shape == (6,) and y.dtype == np.int64 and set(y) <= {0, 1, 2, 3}
    t = make_loss_trials("bce", 6, 4, 0, np.dtype("float32"))[0]
    assert t.x.dtype == np.float32 and set(np.unique(t.y)) <= {0.0, 1.0} and t.y.shape == (6, 4)


def test_the_checkers_references_are_torchs_own_losses():
    # what a user's wrong dx is compared with: torch's F.cross_entropy gradient, taken here independently
    def no_N(x, y):
        loss, dx = softmax_loss(x, y)
        return loss, dx * x.shape[0]

    report = check_loss(no_N, "softmax_cross_entropy", against=("torch",))
    t = make_loss_trials("softmax_cross_entropy", 5, 4, 0, np.dtype("float64"))[0]
    L, dx = torch_loss_and_grad("softmax_cross_entropy", t.x, t.y)
    first = report.failures[0]
    assert first.name == "dx"
    assert first.worst.reference == pytest.approx(dx[first.worst.index], rel=1e-14)
    assert first.worst.engine == pytest.approx(5 * dx[first.worst.index], rel=1e-14)
    for loss in ("half_mse", "mse", "bce"):
        t = make_loss_trials(loss, 5, 4, 0, np.dtype("float64"))[0]
        mine = RIGHT[loss](t.x, t.y)
        L, dx = torch_loss_and_grad(loss, t.x, t.y)
        assert mine[0] == pytest.approx(L, rel=1e-13) and np.allclose(mine[1], dx, rtol=1e-13, atol=0)
        assert check_loss(RIGHT[loss], loss).ok


# --- mistakes named in the catalogue's words --------------------------------------------------------------

def scaled(fn, loss_factor=1.0, dx_factor=1.0):
    def wrong(x, y):
        loss, dx = fn(x, y)
        return loss * loss_factor, dx * dx_factor
    return wrong


@pytest.mark.parametrize("fn, loss, expected", [
    (scaled(softmax_loss, dx_factor=5), "softmax_cross_entropy",
     ["dx is missing the 1/N of the mean: it is N = 5 times too large (dx = (softmax(x) - Y) / N)."]),
    (scaled(softmax_loss, loss_factor=5), "softmax_cross_entropy",
     ["loss is missing the 1/N of the mean: it is N = 5 times too large (L = −c * sum Y log softmax(x), "
      "c = 1/N)."]),
    (scaled(softmax_loss, dx_factor=1 / 5), "softmax_cross_entropy",
     ["dx is divided by N = 5 once too often: the mean's 1/N is taken twice."]),
    (scaled(softmax_loss, dx_factor=-1), "softmax_cross_entropy",
     ["dx has the opposite sign (Y - A instead of A - Y); it should be dx = (softmax(x) - Y) / N."]),
    (scaled(half_mse_loss, dx_factor=2), "half_mse",
     ["dx is twice the half-MSE gradient: 2 (A - Y), the derivative of (A - Y)², not of ½ (A - Y)²; it should "
      "be dx = (x - Y) / N."]),
    (scaled(mse_loss, loss_factor=0.5), "mse",
     ["loss is half the MSE value: it has half-MSE's ½; it should be L = c * sum (x − Y)², c = 1/(N·K)."]),
])
def test_a_planted_loss_mistake_is_named(fn, loss, expected):
    report = check_loss(fn, loss)
    assert not report.ok and report.hints == expected
    assert all(h in report.message() for h in expected)


def test_a_missing_1_over_N_is_named_in_float32_at_a_real_batch_size():
    report = check_loss(scaled(softmax_loss, dx_factor=128), "softmax_cross_entropy", dtype="float32", batch=128,
                        width=10)
    assert report.hints == ["dx is missing the 1/N of the mean: it is N = 128 times too large "
                            "(dx = (softmax(x) - Y) / N)."]


def test_a_fused_gradient_without_Y_is_named():
    def without_Y(x, y):
        loss, _ = softmax_loss(x, y)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return loss, e / e.sum(axis=1, keepdims=True) / x.shape[0]   # probs / N: the -1 at the label left out

    assert check_loss(without_Y, "softmax_cross_entropy").hints == [
        "dx is the softmax output softmax(x) without Y subtracted; the fused gradient is dx = (softmax(x) - Y) / N."]


def test_a_mean_where_the_sum_was_asked_for_is_named():
    report = check_loss(half_mse_loss, "half_mse", reduction="sum")
    assert report.hints == ['loss is divided by N = 5 once too often, though the loss is a sum (reduction = "sum").',
                            'dx is divided by N = 5 once too often, though the loss is a sum (reduction = "sum").']


def test_a_wrong_loss_that_is_no_classic_mistake_gets_no_hint():
    report = check_loss(lambda x, y: (softmax_loss(x, y)[0], softmax_loss(x, y)[1] + 1e-3),
                        "softmax_cross_entropy")
    assert not report.ok and report.hints == []


def test_a_naive_softmax_without_the_max_shift_still_passes_on_small_logits():
    def naive(x, y):
        p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
        N = x.shape[0]
        dx = p.copy()
        dx[np.arange(N), y] -= 1
        return -np.log(p[np.arange(N), y]).mean(), dx / N

    assert check_loss(naive, "softmax_cross_entropy").ok


# --- untrusted code: one line, never a traceback -------------------------------------------------------

@pytest.mark.parametrize("fn, expected", [
    (lambda x, y: None, "the loss function returned None; it must return (loss, dx)"),
    (lambda x, y: softmax_loss(x, y)[0], "the loss function returned a float64; it must return (loss, dx)"),
    (lambda x, y: (1.0, 2.0, 3.0), "the loss function returned a tuple of 3 values; it must return (loss, dx)"),
])
def test_a_loss_that_does_not_return_a_pair_fails_with_one_line(fn, expected):
    report = check_loss(fn, "softmax_cross_entropy")
    first = report.failures[0]
    assert first.status == "error" and first.note == expected
    assert "\n" not in report.message()


def test_a_loss_that_raises_fails_with_its_exception_and_place():
    def raising(x, y):
        raise IndexError("index 7 is out of bounds")

    first = check_loss(raising, "softmax_cross_entropy").failures[0]
    assert re.fullmatch(r"raising raised IndexError: index 7 is out of bounds \(at .*test_check_loss.py:\d+ in "
                        r"raising\)", first.note)


def test_a_loss_of_the_wrong_shape_or_a_dx_of_the_wrong_shape_is_named():
    report = check_loss(lambda x, y: (np.ones(5), softmax_loss(x, y)[1]), "softmax_cross_entropy")
    assert report.failures[0].note == ("the loss function returned loss as an array of shape (5,); the loss is one "
                                       "number (reduction over the batch)")
    report = check_loss(lambda x, y: (softmax_loss(x, y)[0], softmax_loss(x, y)[1].T), "softmax_cross_entropy")
    assert report.failures[0].note == "shape (4, 5), expected (5, 4) (x's shape)"


def test_a_loss_that_writes_into_x_fails_a_check_of_its_own():
    def in_place(x, y):
        x -= x.max(axis=1, keepdims=True)                # the shift, in place
        return softmax_loss(x, y)

    report = check_loss(in_place, "softmax_cross_entropy")
    assert [(c.name, c.status) for c in report.failures] == [("loss function", "error")]
    assert report.failures[0].note == "in_place modified x in place; the caller's x is still needed"


# --- bad options --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, options, expected", [
    ((softmax_loss, "hinge"), {}, r"check_loss: unknown loss 'hinge'; known: half_mse, mse, bce, "
                                  r"softmax_cross_entropy"),
    ((3, "mse"), {}, r"check_loss: fn must be a function fn\(x, y\) -> \(loss, dx\), got int"),
    ((lambda x: x, "mse"), {}, r"check_loss: fn requires 1 argument\(s\); it must be fn\(x, y\) -> \(loss, dx\)"),
    ((softmax_loss, "mse"), {"batch": 0}, r"check_loss: batch must be a positive integer, got 0"),
    ((softmax_loss, "mse"), {"width": 2.5}, r"check_loss: width must be a positive integer, got 2.5"),
    ((softmax_loss, "mse"), {"seed": -1}, r"check_loss: seed must be a non-negative integer, got -1"),
    ((softmax_loss, "mse"), {"reduction": "max"}, r"check_loss: reduction must be one of mean, sum, got 'max'"),
    ((softmax_loss, "mse"), {"dtype": "float16"}, r"check_loss: dtype must be one of float64, float32, got "
                                                   r"'float16'"),
    ((softmax_loss, "mse"), {"against": "torch"}, r"check_loss: against must be a tuple of reference names such as "
                                                   r"\('torch',\), got the string 'torch'"),
])
def test_a_bad_option_is_an_input_error(args, options, expected):
    with pytest.raises(InputError, match=rf"^{expected}$"):
        check_loss(*args, **options)


def test_assert_loss_matches_raises_with_the_message_and_names_an_unknown_option():
    with pytest.raises(AssertionError, match=r"^softmax_cross_entropy loss, random trial: dx\["):
        assert_loss_matches(scaled(softmax_loss, dx_factor=5), "softmax_cross_entropy")
    with pytest.raises(InputError, match=r"^assert_loss_matches: unknown option 'n_classes'; known: batch, width, "
                                         r"seed, dtype, reduction, against$"):
        assert_loss_matches(softmax_loss, "softmax_cross_entropy", n_classes=3)
