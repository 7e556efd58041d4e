"""The Linear layer, row-vector convention: one sample per row.

Forward::

    Z = A_prev @ W + b          A_prev (N, n_in), W (n_in, n_out), b (n_out,) -> Z (N, n_out)

Backward, given the upstream gradient dZ = dL/dZ (N, n_out)::

    dW      = A_prev.T @ dZ     the "X^T delta" rule           (n_in, n_out)
    db      = 1.T @ dZ          the "1^T delta" rule (column sums)  (n_out,)
    dA_prev = dZ @ W.T          the "delta W^T" rule            (N, n_in)

Each takes an optional ``out=``: the checking engine gets new arrays, the fast
engine passes its buffers (any memory layout: :func:`matmul_into` lets BLAS
read and write through its transpose flags).
"""

from __future__ import annotations

import numpy as np

#: An outer product (a one-row batch's dW) at least this large is a GEMM with its inner dimension padded to PAD,
PADDED_OUTER = 8192
PAD = 4
#: and one of at least EINSUM_OUTER entries whose rows in memory hold EINSUM_ROW or more is np.einsum's (see _outer).
EINSUM_OUTER = 1 << 18
EINSUM_ROW = 512


def linear_forward(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``Z = A_prev @ W + b``: (N, n_in) @ (n_in, n_out) + (n_out,) -> (N, n_out)."""
    if out is None:
        return A_prev @ W + b
    matmul_into(A_prev, W, out)
    return np.add(out, b, out=out)


def linear_dW(A_prev: np.ndarray, dZ: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``dW = A_prev.T @ dZ``: (n_in, N) @ (N, n_out) -> (n_in, n_out).

    With one sample (N = 1) the product has inner dimension 1; OpenBLAS is slow
    there, so it is taken as the outer product, which is the same sum.
    """
    if out is not None:
        return matmul_into(A_prev.T, dZ, out)  # an outer product when N = 1
    if A_prev.shape[0] == 1:
        return np.outer(A_prev[0], dZ[0])
    return A_prev.T @ dZ


def linear_db(dZ: np.ndarray, out: np.ndarray | None = None, ones: np.ndarray | None = None) -> np.ndarray:
    """``db = 1.T @ dZ``: the column sums of dZ, (N, n_out) -> (n_out,).

    Written as a product with a ones vector: on narrow arrays NumPy's
    ``dZ.sum(0)`` walks the short axis N times and is many times slower.
    """
    if out is None:
        return np.ones(dZ.shape[0], dtype=dZ.dtype) @ dZ
    if dZ.shape[0] == 1:  # one row: its copy
        np.copyto(out, dZ[0])
        return out
    return np.matmul(np.ones(dZ.shape[0], dtype=dZ.dtype) if ones is None else ones, dZ, out=out)


def linear_dA_prev(dZ: np.ndarray, W: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``dA_prev = dZ @ W.T``: (N, n_out) @ (n_out, n_in) -> (N, n_in)."""
    if out is None:
        return dZ @ W.T
    return matmul_into(dZ, W.T, out)


def linear_backward(
    dZ: np.ndarray, A_prev: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(dA_prev, dW, db)`` for ``Z = A_prev @ W + b`` given ``dZ``."""
    return linear_dA_prev(dZ, W), linear_dW(A_prev, dZ), linear_db(dZ)


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = a @ b`` through BLAS whatever out's layout: a feature-major out is filled as ``b.T @ a.T``.

    An inner dimension of 1 (a one-row batch's dW, a one-unit layer's dA) is an
    outer product (:func:`_outer`), where OpenBLAS's GEMM is very slow.
    """
    if a.shape[1] == 1:
        _outer(a, b, out)
    elif out.flags.c_contiguous:
        np.matmul(a, b, out=out)
    else:
        np.matmul(b.T, a.T, out=out.T)
    return out


def _outer(col: np.ndarray, row: np.ndarray, out: np.ndarray) -> None:
    """``out = col * row``, (m, 1) * (1, n): the outer product, exactly.

    Which loop writes it depends on its size (each entry is ``col[i] * row[j]``
    in all three, the same number):

    * small ones (under ``PADDED_OUTER`` entries): a broadcast multiply;
    * middling ones: a matrix product whose inner dimension is padded with
      zeros to ``PAD``, ``[col, 0, 0, 0] @ [row; 0; 0; 0]`` (each entry is then
      ``col[i] * row[j] + 0 + 0 + 0``), computed by BLAS's GEMM, vectorised and
      threaded: 784 x 256 in float32 takes 24 µs this way against 50 µs as a
      broadcast multiply (one thread, row by row) and 225 µs as OpenBLAS's
      GEMM with inner dimension 1 (``benchmarks/test_kernels.py``);
    * large ones with long rows (``EINSUM_OUTER`` entries and over, and
      ``EINSUM_ROW`` or more along ``out``'s contiguous axis):
      ``np.einsum("ik,kj->ij")``, a sum over one term, one pass over ``out``,
      which is faster there than the GEMM. Timed side by side on this
      project's 2-core machine, float32, einsum against the padded GEMM on
      one thread: 1024 x 1024 245 against 634 µs,
      256 x 1024 71 against 184 µs, 512 x 512 73 against 96 µs; with rows of
      256 the GEMM stays ahead (784 x 256: 55 against 36 µs; in float64,
      104 against 72).
    """
    if out.size < PADDED_OUTER:
        np.multiply(col, row, out=out)
        return
    if out.size >= EINSUM_OUTER and out.shape[1 if out.flags.c_contiguous else 0] >= EINSUM_ROW:
        np.einsum("ik,kj->ij", col, row, out=out)
        return
    padded_outer(col, row, out)


def padded_outer(col: np.ndarray, row: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = [col, 0, 0, 0] @ [row; 0; 0; 0]``: the outer product as a GEMM with inner dimension ``PAD``."""
    m, n = out.shape
    a = np.zeros((m, PAD), out.dtype)
    a[:, :1] = col
    b = np.zeros((PAD, n), out.dtype)
    b[:1] = row
    if out.flags.c_contiguous:
        np.matmul(a, b, out=out)
    else:
        np.matmul(b.T, a.T, out=out.T)
    return out
