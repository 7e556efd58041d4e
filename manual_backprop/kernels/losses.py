"""Losses, each written as ``L = c * sum(terms)`` with its gradient.

``T`` is the target as a matrix of the output's shape (N, K); a loss with
``labels`` (softmax cross-entropy) also takes integer class labels (N,), the
one-hot rows they stand for, without forming them where it can.
``c`` is the reduction's normalisation (see :func:`Loss.scale`).

As the activations' kernels, each gradient serves both engines:
``grad(Z, A, T, out=None)`` returns a new array, or with ``out=`` (an (N, K)
buffer, which may be A itself) writes into it and returns it. The terms are
elementwise ``(N, K)`` arrays for the tolerance policy and the references;
the value is their sum, which for the squared errors has a faster twin
(``total``) right under the terms, one BLAS dot product.

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

A fused loss also has the derivative a derivation starting from dL/dŷ writes,
the loss differentiated as a function of A (``unfused_grad``: bce
``−T/A + (1 − T)/(1 − A)``, cross-entropy ``−T/A``), the trace's dA_L; its
reciprocals are taken from the logits. It is infinite where A is exactly 0 or
1 at a term of nonzero weight (``unbounded``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from .activations import with_out

REDUCTIONS = ("mean", "sum")


def half_mse_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``½ (A − T)²`` elementwise, (N, K)."""
    D = A - T
    return 0.5 * (D * D)


def half_mse_total(Z: np.ndarray, A: np.ndarray, T: np.ndarray, scratch: np.ndarray | None = None) -> np.floating:
    """``sum ½ (A − T)²``, the sum of :func:`half_mse_terms`, as ``½ D·D`` with ``D = A − T``.

    One BLAS dot product over D's memory (any contiguous layout) in place of
    three passes and a sum; ``scratch`` (N, K) takes D.
    """
    D = np.subtract(A, T, out=scratch)
    flat = D.ravel(order="K")  # a view, whatever the layout
    return 0.5 * flat.dot(flat)


def half_mse_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``d/dA sum ½ (A − T)² = A − T``, (N, K)."""
    return np.subtract(A, T, out=out)


def mse_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``(A − T)²`` elementwise, (N, K)."""
    D = A - T
    return D * D


def mse_total(Z: np.ndarray, A: np.ndarray, T: np.ndarray, scratch: np.ndarray | None = None) -> np.floating:
    """``sum (A − T)²``, the sum of :func:`mse_terms`, as ``D·D``: one BLAS dot product (see :func:`half_mse_total`)."""
    D = np.subtract(A, T, out=scratch)
    flat = D.ravel(order="K")
    return flat.dot(flat)


def mse_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``d/dA sum (A − T)² = 2 (A − T)``, (N, K)."""
    D = np.subtract(A, T, out=out)
    return np.multiply(D, 2.0, out=D)


def bce_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``−[T log σ(Z) + (1 − T) log(1 − σ(Z))]`` from the logits, (N, K).

    Rewritten as ``max(Z, 0) − Z·T + log1p(exp(−|Z|))``: exp never sees a
    positive argument and no log of a rounded probability is taken.
    """
    return np.maximum(Z, 0) - Z * T + np.log1p(np.exp(-np.abs(Z)))


def bce_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``d/dZ`` of the BCE terms: ``σ(Z) − T = A − T``, (N, K)."""
    return np.subtract(A, T, out=out)


def bce_unfused_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``d/dA`` of the BCE terms written from A: ``−T/A + (1 − T)/(1 − A)``, (N, K).

    The derivative a derivation that starts from dL/dŷ writes (dA_L of a fused
    network). The reciprocals are taken from the logits, ``1/A = 1 + exp(−Z)``
    and ``1/(1 − A) = 1 + exp(Z)``, so the result stays finite where A rounds
    to 1 or 0 but the logit does not overflow; a term whose weight is 0
    (T = 1 for the second, T = 0 for the first) is 0, never 0 · Inf.
    """
    dA = np.zeros(Z.shape, Z.dtype)
    with np.errstate(over="ignore"):  # exp(±Z) is Inf only where A is saturated, beyond the dtype
        np.multiply(-T, 1 + np.exp(-Z), out=dA, where=T != 0)
        second = np.multiply(1 - T, 1 + np.exp(Z), where=T != 1, out=np.zeros(Z.shape, Z.dtype))
    return np.add(dA, second, out=dA)


def bce_unfused_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``−[T log A + (1 − T) log(1 − A)]`` from A itself, (N, K): the loss :func:`bce_unfused_grad` differentiates.

    A term whose weight is 0 is 0 (no ``0 · log 0``); a log of a non-positive A is NaN, quietly.
    """
    out = np.zeros(A.shape, A.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.multiply(-T, np.log(A), out=out, where=T != 0)
        second = np.multiply(-(1 - T), np.log1p(-A), where=T != 1, out=np.zeros(A.shape, A.dtype))
    return out + second


def bce_unbounded(A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Where :func:`bce_unfused_grad` is infinite as a function of A: ``A == 1`` with ``T < 1``, or ``A == 0`` with ``T > 0``."""
    return ((A == 1) & (T != 1)) | ((A == 0) & (T != 0))


def softmax_cross_entropy_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``T · (logsumexp(Z) − Z) = −T log softmax(Z)`` from the logits, (N, K).

    Integer labels T (N,) stand for their one-hot rows: only each row's
    label term is nonzero, and it is picked without forming the one-hot T.
    """
    m = Z.max(axis=1, keepdims=True)
    with np.errstate(over="ignore"):  # a row spanning beyond the float range: exp(-inf) = 0, rightly
        lse = m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True))
        if T.ndim == 1:
            rows = np.arange(Z.shape[0])
            terms = np.zeros(Z.shape, Z.dtype)
            terms[rows, T] = lse[:, 0] - Z[rows, T]
            return terms
        return T * (lse - Z)


def softmax_cross_entropy_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray,
                               out: np.ndarray | None = None) -> np.ndarray:
    """``d/dZ`` of the cross-entropy terms: ``softmax(Z) − T = P − T`` for rows of T summing to 1, (N, K).

    With integer labels T (N,), the one-hot T is never formed: P with 1
    taken off at each row's label.
    """
    if T.ndim == 1:
        G = A if out is A else np.positive(A, out=out)  # P, copied unless it is written over
        G[np.arange(T.shape[0]), T] -= 1
        return G
    return np.subtract(A, T, out=out)


def softmax_cross_entropy_unfused_grad(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``d/dA`` of the cross-entropy terms written from A: ``−T/A``, (N, K).

    ``1/A_k = exp(logsumexp(Z) − Z_k)`` from the logits, so that it stays finite where
    A_k rounds to 0 but the exponent fits; 0 where T is 0 (never 0 · Inf). Integer
    labels T (N,): only each row's label entry is nonzero.
    """
    m = Z.max(axis=1, keepdims=True)
    with np.errstate(over="ignore"):  # Inf only where A_k is 0 in the dtype
        lse = m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True))
        dA = np.zeros(Z.shape, Z.dtype)
        if T.ndim == 1:
            rows = np.arange(Z.shape[0])
            dA[rows, T] = -np.exp(lse[:, 0] - Z[rows, T])
            return dA
        return np.multiply(-T, np.exp(lse - Z), out=dA, where=T != 0)


def softmax_cross_entropy_unfused_terms(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``−T log A`` from A itself, (N, K) (labels T (N,): the label's entry); 0 where T is 0."""
    if T.ndim == 1:
        T = one_hot(T, A.shape[1], A.dtype)
    out = np.zeros(A.shape, A.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.multiply(-T, np.log(A), out=out, where=T != 0)


def softmax_cross_entropy_unbounded(A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Where :func:`softmax_cross_entropy_unfused_grad` is infinite as a function of A: ``A == 0`` with ``T > 0``."""
    if T.ndim == 1:
        T = one_hot(T, A.shape[1], A.dtype)
    return (A == 0) & (T != 0)


@dataclass(frozen=True)
class Loss:
    """One loss: its elementwise terms, their gradient, how it is reduced, and its texts.

    ``grad`` is the gradient kernel (the ``out=`` contract of this module; a
    plain ``f(Z, A, T)`` works too). ``total``, if given, is the faster twin
    of ``terms(Z, A, T).sum()``, ``f(Z, A, T, scratch=None)``; the value of
    the loss is taken from it.

    ``fused_with`` names the output activation the loss is fused with: its
    value is computed from the logits Z, its gradient is dL/dZ_L, and the
    trace's dA_L is ``unfused_gradient`` (the loss differentiated as a function of A). Otherwise (None) the loss is a function of A_L alone,
    its kernels read only A and T (the fast engine may pass A for Z), and the
    gradient is dL/dA_L.

    ``unfused_grad`` (fused losses) is that derivative before c, ``f(Z, A, T)``, from the logits;
    ``unfused_terms`` the terms written from A; ``unbounded(A, T)`` marks where the derivative is
    infinite as a function of A; ``unfused_text`` its formula before c, as ``validate`` shows it.

    ``formula`` is the loss as text; ``grad_text`` its gradient before the
    normalisation, with ``{A}`` (and ``{Z}``) for the output's names, as
    ``validate`` shows it: ``"({A} - Y)"``. ``labels``: T may also be integer
    class labels (N,), which ``terms`` and ``grad`` take as they are.
    """

    name: str
    terms: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    grad: Callable[..., np.ndarray]
    fused_with: str | None
    mean_divides_by_K: bool
    formula: str
    grad_text: str
    total: Callable[..., np.floating] | None = None
    labels: bool = False
    unfused_grad: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
    unfused_terms: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
    unbounded: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    unfused_text: str = ""

    def scale(self, N: int, K: int, reduction: str) -> float:
        """``c`` in ``L = c * sum(terms)``: 1 for "sum"; 1/N or 1/(N·K) for "mean"."""
        if reduction == "sum":
            return 1.0
        return 1.0 / (N * K) if self.mean_divides_by_K else 1.0 / N

    def value(self, Z: np.ndarray, A: np.ndarray, T: np.ndarray, reduction: str,
              scratch: np.ndarray | None = None) -> np.ndarray:
        """The scalar loss ``L = c * sum(terms)`` as a 0-d array of Z's dtype (``scratch``: an (N, K) spare).

        The sum is a NumPy scalar of Z's dtype, so ``c`` (a Python float) is
        rounded to that dtype before the product, as NumPy's promotion does.
        """
        c = self.scale(Z.shape[0], Z.shape[1], reduction)
        total = self.terms(Z, A, T).sum() if self.total is None else self.total(Z, A, T, scratch=scratch)
        return np.asarray(total * c, dtype=Z.dtype)

    def gradient(self, Z: np.ndarray, A: np.ndarray, T: np.ndarray, reduction: str,
                 out: np.ndarray | None = None) -> np.ndarray:
        """``c * grad``: dL/dA_L, or dL/dZ_L for a fused loss, (N, K); written into ``out`` if given.

        ``c`` is a Python float: multiplied into an array it is taken in the array's dtype.
        """
        c = self.scale(Z.shape[0], Z.shape[1], reduction)
        return np.multiply(self.grad_into(Z, A, T, out=out), c, out=out)

    def unfused_gradient(self, Z: np.ndarray, A: np.ndarray, T: np.ndarray, reduction: str) -> np.ndarray:
        """``c * unfused_grad``: dL/dA_L of a fused loss, the loss written from A (a derivation's dAL), (N, K)."""
        c = self.scale(Z.shape[0], Z.shape[1], reduction)
        return np.multiply(self.unfused_grad(Z, A, T), c)

    @cached_property
    def grad_into(self) -> Callable[..., np.ndarray]:
        """``grad`` as ``f(Z, A, T, out=)``, whatever parameters it takes."""
        return with_out(self.grad)


LOSSES: dict[str, Loss] = {
    l.name: l
    for l in (
        Loss("half_mse", half_mse_terms, half_mse_grad, None, False,
             "L = c * sum ½(A − Y)²", "({A} - Y)", total=half_mse_total),
        Loss("mse", mse_terms, mse_grad, None, True,
             "L = c * sum (A − Y)²", "2 ({A} - Y)", total=mse_total),
        Loss("bce", bce_terms, bce_grad, "sigmoid", True,
             "L = −c * sum [Y log A + (1 − Y) log(1 − A)], A = σ(Z)", "({A} - Y)",
             unfused_grad=bce_unfused_grad, unfused_terms=bce_unfused_terms, unbounded=bce_unbounded,
             unfused_text="−(Y/{A} − (1−Y)/(1−{A}))"),
        Loss("softmax_cross_entropy", softmax_cross_entropy_terms, softmax_cross_entropy_grad,
             "softmax", False,
             "L = −c * sum Y log softmax(Z)", "({A} - Y)", labels=True,
             unfused_grad=softmax_cross_entropy_unfused_grad, unfused_terms=softmax_cross_entropy_unfused_terms,
             unbounded=softmax_cross_entropy_unbounded, unfused_text="−Y/{A}"),
    )
}


def one_hot(labels: np.ndarray, K: int, dtype: np.dtype) -> np.ndarray:
    """Integer labels (N,) -> one-hot rows (N, K) of ``dtype``."""
    T = np.zeros((labels.shape[0], K), dtype=dtype)
    T[np.arange(labels.shape[0]), labels] = 1
    return T
