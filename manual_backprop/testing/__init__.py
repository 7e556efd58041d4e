"""A pytest helper: check your own NumPy layer against PyTorch and JAX in one line.

    from manual_backprop.testing import assert_layer_matches

    def test_my_relu_layer():
        assert_layer_matches(relu_forward, relu_backward, layer="relu")

The layer is a pair ``forward(x, params) -> (out, cache)`` and
``backward(dout, cache) -> grads`` (see :func:`manual_backprop.check_layer`);
a failure names the trial, the gradient, its worst element and both values.
"""

from __future__ import annotations

import inspect
from typing import Callable

from ..errors import InputError
from .layers import LAYERS, LayerReport, check_layer

__all__ = ["LAYERS", "LayerReport", "assert_layer_matches", "check_layer"]


def assert_layer_matches(forward: Callable, backward: Callable, layer: str, **options) -> LayerReport:
    """Raise ``AssertionError`` unless the layer agrees with every reference on every trial.

    ``options`` are :func:`~manual_backprop.check_layer`'s (``batch``, ``n_in``, ``n_out``,
    ``seed``, ``dtype``, ``against``). Returns the report when it passes.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    known = [p.name for p in inspect.signature(check_layer).parameters.values() if p.kind is p.KEYWORD_ONLY]
    for name in options:
        if name not in known:
            raise InputError(f"assert_layer_matches: unknown option {name!r}; known: {', '.join(known)}")
    report = check_layer(forward, backward, layer, **options)
    if not report.ok:
        raise AssertionError(report.message())
    return report
