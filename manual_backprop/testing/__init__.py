"""A pytest helper: check your own NumPy layer against PyTorch and JAX in one line.

    from manual_backprop.testing import assert_layer_matches

    def test_my_relu_layer():
        assert_layer_matches(relu_forward, relu_backward, layer="relu")

The layer is a pair ``forward(x, params) -> (out, cache)`` and
``backward(dout, cache) -> grads``, or CS231n's ``affine_forward(x, w, b)`` /
``relu_forward(x)`` pairs, or an object with ``forward(X)`` and ``backward(dout)``
(see :func:`manual_backprop.check_layer` and :mod:`.signatures`); a loss is
``fn(x, y) -> (loss, dx)`` (:func:`check_loss`). A failure names the trial, the
gradient, its worst element, both values, and the classic mistake it reproduces.

    from manual_backprop.testing import assert_loss_matches

    def test_my_softmax_loss():
        assert_loss_matches(softmax_loss, "softmax_cross_entropy")
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from ..errors import InputError
from .layers import LAYERS, LayerReport, check_layer
from .losses import LossReport, check_loss
from .network import NetworkReport, assert_network_matches, check_network

__all__ = ["LAYERS", "LayerReport", "LossReport", "NetworkReport", "assert_layer_matches", "assert_loss_matches",
           "assert_network_matches", "check_layer", "check_loss", "check_network"]


def assert_layer_matches(forward: Any, backward: Callable | str | None = None, layer: str | None = None,
                         **options) -> LayerReport:
    """Raise ``AssertionError`` unless the layer agrees with every reference on every trial.

    ``assert_layer_matches(forward, backward, layer="linear")`` for functions, or
    ``assert_layer_matches(layer_object, "linear")`` for an object (see :func:`check_layer`).
    ``options`` are :func:`~manual_backprop.check_layer`'s (``batch``, ``n_in``, ``n_out``,
    ``seed``, ``dtype``, ``against``). Returns the report when it passes.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    _known_options("assert_layer_matches", check_layer, options)
    report = check_layer(forward, backward, layer, **options)
    if not report.ok:
        raise AssertionError(report.message())
    return report


def assert_loss_matches(fn: Callable, loss: str, **options) -> LossReport:
    """Raise ``AssertionError`` unless ``fn(x, y) -> (loss, dx)`` agrees with every reference.

    ``options`` are :func:`check_loss`'s (``batch``, ``width``, ``seed``, ``dtype``,
    ``reduction``, ``against``). Returns the report when it passes.
    """
    __tracebackhide__ = True
    _known_options("assert_loss_matches", check_loss, options)
    report = check_loss(fn, loss, **options)
    if not report.ok:
        raise AssertionError(report.message())
    return report


def _known_options(who: str, fn: Callable, options: dict) -> None:
    known = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    for name in options:
        if name not in known:
            raise InputError(f"{who}: unknown option {name!r}; known: {', '.join(known)}")
