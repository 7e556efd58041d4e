"""Validating a derivation: hand-derived numbers, and hand-written layer code.

- :func:`validate` judges a file's ``[claimed]`` tensors at their written
  precision, tells own errors from carried ones and names the classic
  mistake that reproduces a wrong claim (:data:`MISTAKES`), or none.
- :func:`check_layer` runs a user's ``forward(x, params) -> (out, cache)`` /
  ``backward(dout, cache) -> grads`` against PyTorch and JAX.
"""

from .layers import LAYERS, LayerReport, check_layer
from .mistakes import MISTAKES, Mistake
from .validation import ClaimReport, Validation, validate

__all__ = ["LAYERS", "ClaimReport", "LayerReport", "MISTAKES", "Mistake", "Validation", "check_layer", "validate"]
