"""Losses, each written as ``L = c * sum(terms)`` with its gradient.

``T`` is the target as a matrix of the output's shape (N, K); integer class
labels are turned into one-hot rows before they reach these kernels.
``c`` is the reduction's normalisation (see :func:`Loss.scale`).

Two losses are fused with their output activation and computed from the
logits Z, never from the probabilities A, so that a saturated output
(A rounding to exactly 0 or 1) gives no log(0), no division by zero and no
overflow; their gradient is taken with respect to Z directly:

==========================  ==============================================  ===================
loss                        terms (elementwise, summed)                     gradient of the sum
==========================  ==============================================  ===================
half_mse                    ½ (A − T)²                                      dA = A − T
mse                         (A − T)²                                        dA = 2 (A − T)
bce (from Z, sigmoid)       max(Z, 0) − Z·T + log(1 + exp(−|Z|))            dZ = σ(Z) − T
softmax_cross_entropy       T · (logsumexp(Z) − Z)                          dZ = softmax(Z) − T
==========================  ==============================================  ===================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

REDUCTIONS = ("mean", "sum")


def half_mse_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``½ (A − T)²`` elementwise, (N, K)."""
    D = A - T
    return 0.5 * (D * D)


def half_mse_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``d/dA sum ½ (A − T)² = A − T``, (N, K)."""
    return A - T


def mse_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``(A − T)²`` elementwise, (N, K)."""
    D = A - T
    return D * D


def mse_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``d/dA sum (A − T)² = 2 (A − T)``, (N, K)."""
    return 2 * (A - T)


def bce_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``−[T log σ(Z) + (1 − T) log(1 − σ(Z))]`` from the logits, (N, K).

    Rewritten as ``max(Z, 0) − Z·T + log1p(exp(−|Z|))``: exp never sees a
    positive argument and no log of a rounded probability is taken.
    """
    return np.maximum(Z, 0) - Z * T + np.log1p(np.exp(-np.abs(Z)))


def bce_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``d/dZ`` of the BCE terms: ``σ(Z) − T = A − T``, (N, K)."""
    return A - T


def softmax_cross_entropy_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``T · (logsumexp(Z) − Z) = −T log softmax(Z)`` from the logits, (N, K)."""
    m = Z.max(axis=1, keepdims=True)
    with np.errstate(over="ignore"):  # a row spanning beyond the float range: exp(-inf) = 0, rightly
        lse = m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True))
        return T * (lse - Z)


def softmax_cross_entropy_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``d/dZ`` of the cross-entropy terms: ``softmax(Z) − T = P − T`` for rows of T summing to 1."""
    return A - T


@dataclass(frozen=True)
class Loss:
    """One loss: its elementwise terms, their gradient, and how it is reduced.

    ``fused_with`` names the output activation the loss is fused with (its
    gradient is then dL/dZ_L, and the trace has no dA_L), or is None (the
    gradient is dL/dA_L).
    """

    name: str
    terms: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    grad: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    fused_with: str | None
    mean_divides_by_K: bool
    formula: str

    def scale(self, N: int, K: int, reduction: str) -> float:
        """``c`` in ``L = c * sum(terms)``: 1 for "sum"; 1/N or 1/(N·K) for "mean"."""
        if reduction == "sum":
            return 1.0
        return 1.0 / (N * K) if self.mean_divides_by_K else 1.0 / N

    def value(self, Z: np.ndarray, A: np.ndarray, T: np.ndarray, reduction: str) -> np.ndarray:
        """The scalar loss ``L = c * sum(terms)`` as a 0-d array of Z's dtype."""
        c = self.scale(Z.shape[0], Z.shape[1], reduction)
        return np.asarray(self.terms(Z, A, T).sum() * Z.dtype.type(c), dtype=Z.dtype)

    def gradient(self, Z: np.ndarray, A: np.ndarray, T: np.ndarray, reduction: str) -> np.ndarray:
        """``c * grad``: dL/dA_L, or dL/dZ_L for a fused loss, (N, K)."""
        c = self.scale(Z.shape[0], Z.shape[1], reduction)
        return self.grad(Z, A, T) * Z.dtype.type(c)


LOSSES: dict[str, Loss] = {
    l.name: l
    for l in (
        Loss("half_mse", half_mse_terms, half_mse_grad, None, False,
             "L = c * sum ½(A − Y)²; dA = c (A − Y)"),
        Loss("mse", mse_terms, mse_grad, None, True,
             "L = c * sum (A − Y)²; dA = 2c (A − Y)"),
        Loss("bce", bce_terms, bce_grad, "sigmoid", True,
             "L = −c * sum [Y log A + (1 − Y) log(1 − A)], A = σ(Z); dZ = c (A − Y)"),
        Loss("softmax_cross_entropy", softmax_cross_entropy_terms, softmax_cross_entropy_grad,
             "softmax", False,
             "L = −c * sum Y log softmax(Z); dZ = c (P − Y)"),
    )
}


def one_hot(labels: np.ndarray, K: int, dtype: np.dtype) -> np.ndarray:
    """Integer labels (N,) -> one-hot rows (N, K) of ``dtype``."""
    T = np.zeros((labels.shape[0], K), dtype=dtype)
    T[np.arange(labels.shape[0]), labels] = 1
    return T
