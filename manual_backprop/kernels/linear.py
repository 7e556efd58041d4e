"""The Linear layer, row-vector convention: one sample per row.

Forward::

    Z = A_prev @ W + b          A_prev (N, n_in), W (n_in, n_out), b (n_out,) -> Z (N, n_out)

Backward, given the upstream gradient dZ = dL/dZ (N, n_out)::

    dW      = A_prev.T @ dZ     the "X^T delta" rule           (n_in, n_out)
    db      = 1.T @ dZ          the "1^T delta" rule (column sums)  (n_out,)
    dA_prev = dZ @ W.T          the "delta W^T" rule            (N, n_in)
"""

from __future__ import annotations

import numpy as np


def linear_forward(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``Z = A_prev @ W + b``: (N, n_in) @ (n_in, n_out) + (n_out,) -> (N, n_out)."""
    return A_prev @ W + b


def linear_dW(A_prev: np.ndarray, dZ: np.ndarray) -> np.ndarray:
    """``dW = A_prev.T @ dZ``: (n_in, N) @ (N, n_out) -> (n_in, n_out).

    With one sample (N = 1) the product has inner dimension 1; OpenBLAS is slow
    there, so it is taken as the outer product, which is the same sum.
    """
    if A_prev.shape[0] == 1:
        return np.outer(A_prev[0], dZ[0])
    return A_prev.T @ dZ


def linear_db(dZ: np.ndarray) -> np.ndarray:
    """``db = 1.T @ dZ``: the column sums of dZ, (N, n_out) -> (n_out,).

    Written as a product with a ones vector: on narrow arrays NumPy's
    ``dZ.sum(0)`` walks the short axis N times and is many times slower.
    """
    return np.ones(dZ.shape[0], dtype=dZ.dtype) @ dZ


def linear_dA_prev(dZ: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``dA_prev = dZ @ W.T``: (N, n_out) @ (n_out, n_in) -> (N, n_in)."""
    return dZ @ W.T


def linear_backward(
    dZ: np.ndarray, A_prev: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(dA_prev, dW, db)`` for ``Z = A_prev @ W + b`` given ``dZ``."""
    return linear_dA_prev(dZ, W), linear_dW(A_prev, dZ), linear_db(dZ)
