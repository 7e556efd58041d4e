"""Activations as forward/backward pairs, and the registry that names them.

Each backward takes the upstream gradient ``dA = dL/dA`` and what the forward
saw and made (``Z`` and ``A``), and returns ``dZ = dL/dZ``. Shapes never
change: every array here is (N, n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def identity_forward(Z: np.ndarray) -> np.ndarray:
    """``A = Z``."""
    return Z


def identity_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``dZ = dA``."""
    return dA


def sigmoid_forward(Z: np.ndarray) -> np.ndarray:
    """``A = 1 / (1 + exp(-Z))``.

    Evaluated through ``e = exp(-|Z|)``, which lies in (0, 1], so that no
    logit, however large, overflows ``exp`` or raises a warning: for Z >= 0,
    ``A = 1 / (1 + e)``; for Z < 0, ``A = e / (1 + e)``.
    """
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``dZ = dA * A * (1 - A)``: the sigmoid mask, taken from the output A."""
    return dA * (A * (1 - A))


def relu_forward(Z: np.ndarray) -> np.ndarray:
    """``A = max(Z, 0)``."""
    return np.maximum(Z, 0)


def relu_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``dZ = dA * (Z > 0)``.

    At the kink Z = 0 the derivative is taken as 0 (strict ``>``), the
    convention of ``torch.relu`` and ``jax.nn.relu``. ``np.maximum``-style
    references give 1/2 there and ``clamp(min=0)`` gives 1; neither is used.
    """
    return dA * (Z > 0)


def tanh_forward(Z: np.ndarray) -> np.ndarray:
    """``A = tanh(Z)``."""
    return np.tanh(Z)


def tanh_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``dZ = dA * (1 - A**2)``."""
    return dA * (1 - A * A)


def softmax_forward(Z: np.ndarray) -> np.ndarray:
    """``A_ik = exp(Z_ik) / sum_j exp(Z_ij)``, row by row.

    The row maximum is subtracted first (the value does not change), so exp
    never overflows: the largest term is exp(0) = 1. (A row spanning more than
    the float range makes the difference -inf, whose exp is the right 0.)
    """
    with np.errstate(over="ignore"):
        e = np.exp(Z - Z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``dZ = A * (dA - sum_k(dA * A))``: the softmax Jacobian-vector product.

    Only used when softmax is not fused with cross-entropy; there the fused
    gradient ``P - Y`` replaces it.
    """
    return A * (dA - (dA * A).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Activation:
    """One activation: its kernels and the facts the checks need about it.

    ``derivative(Z, A)`` is the elementwise derivative dA/dZ for the
    elementwise activations (None for softmax, whose Jacobian is not
    diagonal); the tolerance policy uses it to carry rounding backward.
    ``kink`` is the pre-activation value where the derivative jumps, if any.
    """

    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    backward: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    formula: str
    kink: float | None = None
    last_layer_only: bool = False


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", identity_forward, identity_backward,
                   lambda Z, A: np.ones_like(Z), "A = Z; dZ = dA"),
        Activation("sigmoid", sigmoid_forward, sigmoid_backward,
                   lambda Z, A: A * (1 - A), "A = 1/(1+exp(-Z)); dZ = dA * A * (1 - A)"),
        Activation("relu", relu_forward, relu_backward,
                   lambda Z, A: (Z > 0).astype(Z.dtype), "A = max(Z, 0); dZ = dA * (Z > 0)",
                   kink=0.0),
        Activation("tanh", tanh_forward, tanh_backward,
                   lambda Z, A: 1 - A * A, "A = tanh(Z); dZ = dA * (1 - A**2)"),
        Activation("softmax", softmax_forward, softmax_backward, None,
                   "A = exp(Z) / sum(exp(Z)); dZ = A * (dA - sum(dA * A))",
                   last_layer_only=True),
    )
}
