"""The layer forms people already write, accepted by ``check_layer`` with no adapter.

Every layer below is written here, in the conventions of its source (none is
copied): CS231n's ``layers.py`` functions with caches, Deep Learning from
Scratch's ``Affine`` and ``Relu`` classes, numpy-ml's ``FullyConnected`` (its
``parameters``/``gradients`` dicts, the bias as a row ``(1, n_out)``, gradients
added into, parameters made on the first forward, ``backward`` returning
``[dX]``), and course code's ``params``/``grads`` dicts. The right ones pass
against torch and JAX; the report says which form it took.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from manual_backprop import InputError, check_layer, references
from manual_backprop.testing import assert_layer_matches
from manual_backprop.testing.layers import LAYERS, make_trials

pytestmark = pytest.mark.skipif(not (references.is_installed("torch") and references.is_installed("jax")),
                                reason="checking a layer needs torch and jax")


# --- CS231n: affine_forward(x, w, b) -> (out, cache), affine_backward(dout, cache) -> (dx, dw, db) ---------

def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b            # (N, D) @ (D, M) + (M,)
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = np.sum(dout, axis=0)
    return dx, dw, db


def relu_forward(x):
    out = np.maximum(0, x)
    cache = x
    return out, cache


def relu_backward(dout, cache):
    x = cache
    dx = dout.copy()
    dx[x <= 0] = 0                                       # on a copy: dout is left as it came
    return dx


def affine_relu_forward(x, w, b):
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    return affine_backward(da, fc_cache)


# --- Deep Learning from Scratch: class Affine (W, b; x, dW, db), class Relu (mask) -----------------------

class Affine:
    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.dW = None
        self.db = None

    def forward(self, x):
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0                              # the book's own line: in place
        return dout


# --- numpy-ml: FullyConnected(n_out), parameters/gradients dicts, b (1, n_out) ---------------------------

class FullyConnected:
    def __init__(self, n_out):
        self.n_in = None
        self.n_out = n_out
        self.is_initialized = False
        self.parameters = {"W": None, "b": None}
        self.gradients = {}
        self.X = []

    def _init_params(self):
        rng = np.random.default_rng(123)
        W = rng.uniform(-1, 1, (self.n_in, self.n_out))
        b = np.zeros((1, self.n_out))
        self.parameters = {"W": W, "b": b}
        self.gradients = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self.is_initialized = True

    def forward(self, X, retain_derived=True):
        if not self.is_initialized:
            self.n_in = X.shape[1]
            self._init_params()
        Y = X @ self.parameters["W"] + self.parameters["b"]
        if retain_derived:
            self.X.append(X)
        return Y

    def backward(self, dLdy, retain_grads=True):
        if not isinstance(dLdy, list):
            dLdy = [dLdy]
        dX = []
        for dy, x in zip(dLdy, self.X):
            dX.append(dy @ self.parameters["W"].T)
            if retain_grads:
                self.gradients["W"] += x.T @ dy          # added into, as numpy-ml does
                self.gradients["b"] += dy.sum(axis=0, keepdims=True)
        return dX[0] if len(self.X) == 1 else dX

    def flush_gradients(self):
        self.X = []
        for k, v in self.gradients.items():
            self.gradients[k] = np.zeros_like(v)


class ListReturningFullyConnected(FullyConnected):
    """numpy-ml's backward given a list: ``[dX]`` back."""

    def backward(self, dLdy, retain_grads=True):
        return FullyConnected.backward(self, [dLdy], retain_grads) if len(self.X) > 1 else \
            [FullyConnected.backward(self, dLdy, retain_grads)]


# --- course code: self.params / self.grads ----------------------------------------------------------------

class Dense:
    def __init__(self, n_in, n_out):
        self.params = {"W": np.zeros((n_in, n_out)), "b": np.zeros(n_out)}
        self.grads = {}
        self.cache = None

    def forward(self, X):
        self.cache = X
        return X @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        X = self.cache
        self.grads["W"] = X.T @ dout
        self.grads["b"] = dout.sum(axis=0)
        return dout @ self.params["W"].T


# --- they pass, and say which form they took ----------------------------------------------------------------

@pytest.mark.parametrize("forward, backward, layer, form", [
    (affine_forward, affine_backward, "linear", "forward(x, w, b)"),
    (relu_forward, relu_backward, "relu", "forward(x)"),
    (affine_relu_forward, affine_relu_backward, "linear+relu", "forward(x, w, b)"),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_cs231n_functions_pass_as_they_are(forward, backward, layer, form, dtype):
    report = assert_layer_matches(forward, backward, layer=layer, dtype=dtype, batch=16, n_in=8, n_out=6)
    assert report.form == form
    assert report.message().endswith(f"; called as {form}.")
    assert report.trials == (["random", "kink"] if "relu" in layer else ["random"])


@pytest.mark.parametrize("make, form", [
    (lambda: Affine(np.zeros((4, 3)), np.zeros(3)), "class Affine (forward(x), backward(dout); W, b -> dW, db)"),
    (lambda: FullyConnected(3), "class FullyConnected (forward(X), backward(dLdy); parameters['W'], "
                                "parameters['b'] -> gradients['W'], gradients['b'])"),
    (lambda: ListReturningFullyConnected(3), "class ListReturningFullyConnected (forward(X), backward(dLdy); "
                                             "parameters['W'], parameters['b'] -> gradients['W'], gradients['b'])"),
    (lambda: Dense(4, 3), "class Dense (forward(X), backward(dout); params['W'], params['b'] -> grads['W'], "
                          "grads['b'])"),
])
def test_the_class_layers_pass_through_the_documented_attributes(make, form):
    report = check_layer(make(), "linear")
    assert report.ok, report.message()
    assert report.form == form
    assert form in report.message()


def test_the_checker_sets_its_own_parameters_into_the_object_and_reads_the_gradients_back():
    layer = FullyConnected(3)                            # its own W (seeded 123) would give other numbers
    report = check_layer(layer, "linear", against=("torch",))
    assert report.ok
    trial = make_trials(LAYERS["linear"], 5, 4, 3, 0, np.dtype("float64"))[0]
    import torch

    x = torch.tensor(trial.x, requires_grad=True)
    W = torch.tensor(trial.params["W"], requires_grad=True)
    b = torch.tensor(trial.params["b"], requires_grad=True)
    ((x @ W + b) * torch.tensor(trial.dout)).sum().backward()
    np.testing.assert_allclose(layer.parameters["W"], trial.params["W"], rtol=0, atol=0)
    assert layer.parameters["b"].shape == (1, 3)         # numpy-ml's layout kept
    np.testing.assert_allclose(layer.gradients["W"], W.grad.numpy(), rtol=1e-13)
    np.testing.assert_allclose(layer.gradients["b"].ravel(), b.grad.numpy(), rtol=1e-13)
    assert layer.parameters["W"] is not trial.params["W"]  # a copy was set, not the trial's own array


def test_a_kink_trial_runs_on_a_class_layer_too():
    class AffineRelu:
        def __init__(self):
            self.W, self.b = np.zeros((4, 3)), np.zeros(3)

        def forward(self, x):
            self.x = x
            self.z = x @ self.W + self.b
            return np.maximum(self.z, 0)

        def backward(self, dout):
            dz = dout * (self.z > 0)
            self.dW, self.db = self.x.T @ dz, dz.sum(axis=0)
            return dz @ self.W.T

    report = check_layer(AffineRelu(), "linear+relu")
    assert report.ok and report.trials == ["random", "kink"]


def test_the_book_relu_class_passes_its_values_but_fails_for_writing_into_dout():
    report = check_layer(Relu(), "relu")
    assert not report.ok
    assert {(c.name, c.status) for c in report.failures} == {("backward", "error")}   # every value agrees
    assert report.failures[0].note == (
        "backward modified dout in place (dout[mask] = 0, dout *= ...?); it is a real bug when the same dout "
        "feeds two branches (a residual connection, a shared layer): work on a copy")
    assert report.form == "class Relu (forward(x), backward(dout))"


def test_a_class_layer_whose_backward_does_not_set_a_gradient_is_told_which_attribute():
    class NoDb(Affine):
        def backward(self, dout):
            dx = Affine.backward(self, dout)
            self.db = None
            return dx

    report = check_layer(NoDb(np.zeros((4, 3)), np.zeros(3)), "linear")
    assert [(c.name, c.status) for c in report.failures] == [("db", "missing"), ("db", "missing")]
    assert report.failures[0].note == "after backward, NoDb.db is None (backward should set it to db)"


def test_a_class_layer_that_raises_fails_with_one_line_naming_the_method():
    class Broken(Affine):
        def forward(self, x):
            return x @ self.W.T                          # (5, 4) @ (3, 4)

    report = check_layer(Broken(np.zeros((4, 3)), np.zeros(3)), "linear")
    first = report.failures[0]
    assert first.name == "forward" and first.status == "error"
    assert first.note.startswith("forward raised ValueError: matmul: Input operand 1 has a mismatch")
    assert "test_layer_signatures.py" in first.note and "\n" not in report.message()


# --- a form the layer cannot have is an InputError, before any user code runs ------------------------------

@pytest.mark.parametrize("call, expected", [
    (lambda: check_layer(affine_forward, affine_backward, "relu"),
     r"check_layer: forward takes \(x, w, b\), but the relu layer has no parameters; write forward\(x\) or "
     r"forward\(x, params\)"),
    (lambda: check_layer(relu_forward, relu_backward, "linear"),
     r"check_layer: forward takes x alone, but the linear layer has W and b; write forward\(x, w, b\) or "
     r"forward\(x, params\)"),
    (lambda: check_layer(lambda x, a, b, c: None, relu_backward, "linear"),
     r"check_layer: forward requires 4 arguments; the forms known are forward\(x, params\), forward\(x, w, b\) "
     r"\(a Linear layer\) and forward\(x\) \(no parameters\)"),
    (lambda: check_layer(Affine, "linear"),
     r"check_layer: forward is the class Affine; pass an instance, check_layer\(Affine\(...\), 'linear'\)"),
    (lambda: check_layer(Affine(np.zeros((4, 3)), np.zeros(3)), affine_backward, "linear"),
     r"check_layer: a layer object brings its own backward; call check_layer\(layer, 'linear'\), without a "
     r"backward function"),
    (lambda: check_layer(Relu(), "linear"),
     r"check_layer: Relu has no parameters the checker knows; it looks for a dict attribute 'parameters' "
     r"\(gradients in 'gradients'\) or 'params' \(gradients in 'grads'\) with keys 'W' \(or 'w'\) and 'b', "
     r"then attributes 'W' \(or 'w'\) and 'b' \(gradients 'dW', 'db'\)"),
    (lambda: check_layer(affine_forward, affine_backward),
     r"check_layer: name the layer, as check_layer\(forward, backward, 'linear'\) or "
     r"check_layer\(layer_object, 'linear'\)"),
])
def test_a_form_the_layer_cannot_have_is_an_input_error(call, expected):
    with pytest.raises(InputError, match=rf"^{expected}$"):
        call()


def test_a_dict_of_parameters_without_b_is_an_input_error():
    class OnlyW:
        params = {"W": np.zeros((4, 3))}

        def forward(self, x):
            return x

        def backward(self, dout):
            return dout

    with pytest.raises(InputError, match=r"^check_layer: OnlyW.params has no 'b'; the linear layer has W and b$"):
        check_layer(OnlyW(), "linear")


def test_a_signature_that_cannot_be_read_is_taken_as_forward_x_params():
    def forward(*args):
        x, params = args
        return x @ params["W"] + params["b"], (x, params["W"])

    def backward(dout, cache):
        x, W = cache
        return dout @ W.T, x.T @ dout, dout.sum(axis=0)

    report = check_layer(forward, backward, "linear")
    assert report.ok and report.form == "forward(x, params)"


def test_a_hostile_layer_object_fails_with_one_line_never_a_traceback():
    class Hostile:
        b = np.zeros(3)

        @property
        def W(self):
            raise RuntimeError("no W")

        def forward(self, x):
            return x

        def backward(self, dout):
            return dout

    first = check_layer(Hostile(), "linear").failures[0]
    assert (first.name, first.status) == ("forward", "error")
    assert re.fullmatch(r"reading Hostile.W raised RuntimeError: no W \(at .*test_layer_signatures.py:\d+ in W\)",
                        first.note)

    class Frozen:
        __slots__ = ()
        W, b = np.zeros((4, 3)), np.zeros(3)

        def forward(self, x):
            return x @ self.W + self.b

        def backward(self, dout):
            return dout @ self.W.T

    first = check_layer(Frozen(), "linear").failures[0]
    assert first.note.startswith("setting Frozen.W raised AttributeError: 'Frozen' object attribute 'W' is read-only")

    class NoDx(Affine):
        def backward(self, dout):
            Affine.backward(self, dout)                  # sets dW, db; returns nothing

    report = check_layer(NoDx(np.zeros((4, 3)), np.zeros(3)), "linear")
    assert [(c.name, c.status) for c in report.failures] == [("dx", "missing"), ("dx", "missing")]
    assert report.failures[0].note == "NoDx.backward returned None; it must return dX (and set the parameters' gradients)"
