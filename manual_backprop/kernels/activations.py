"""Activations as forward/backward pairs, and the registry that names them.

Each backward takes the upstream gradient ``dA = dL/dA`` and what the forward
saw and made (``Z`` and ``A``), and returns ``dZ = dL/dZ``. Shapes never
change: every array here is (N, n).

Every kernel is written once and serves both engines::

    forward(Z, out=None, scratch=None) -> A
    backward(dA, Z, A, out=None, scratch=None) -> dZ

The checking engine calls ``forward(Z)`` and ``backward(dA, Z, A)`` and gets
new arrays (identity may hand back its input itself). The fast engine passes
``out=``, the buffer the result is written into and returned as (it may be
the first argument itself: Z for a forward, dA for a backward, never A), and
``scratch=``, a spare buffer of the result's shape and dtype that the kernel
may overwrite; then nothing is allocated. Any memory layout works (the fast
engine's arrays are feature-major views). So every step is a NumPy ufunc
with ``out=``, and an input is always read before ``out`` is written.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np


def identity_forward(Z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``A = Z``; derivative 1. Without ``out`` (or with ``out`` = Z) it is Z itself, nothing copied."""
    if out is None or out is Z:
        return Z
    np.copyto(out, Z)
    return out


def identity_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray,
                      out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``dZ = dA``: (N, n) -> (N, n). Without ``out`` (or with ``out`` = dA) it is dA itself."""
    if out is None or out is dA:
        return dA
    np.copyto(out, dA)
    return out


def sigmoid_forward(Z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``A = 1 / (1 + exp(-Z))``; derivative ``A (1 - A)``. (N, n) -> (N, n).

    Evaluated through ``e = exp(-|Z|)``, which lies in (0, 1], so that no
    logit, however large, overflows ``exp`` or raises a warning: for Z >= 0,
    ``A = 1 / (1 + e)``; for Z < 0, ``A = e / (1 + e)``. The numerator (1 or
    e) is ``max(e, [Z >= 0])``, exact since e <= 1: an arithmetic select that
    runs in place, much faster than a masked copy. ``[Z >= 0]`` is the
    Heaviside step with H(0) = 1, made in Z's dtype (a comparison would make
    booleans, and casting them is slow on small arrays).
    """
    at_least_0 = np.heaviside(Z, 1.0, out=scratch)  # [Z >= 0], read before out (maybe Z) is written
    e = np.abs(Z, out=out)
    np.negative(e, out=e)
    np.exp(e, out=e)                                  # e = exp(-|Z|), in (0, 1]
    numerator = np.maximum(e, at_least_0, out=scratch)
    np.add(e, 1.0, out=e)
    return np.divide(numerator, e, out=e)


def sigmoid_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray,
                     out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``dZ = dA * A * (1 - A)``: the sigmoid derivative, taken from the output A. (N, n) -> (N, n)."""
    derivative = np.subtract(1.0, A, out=scratch)
    np.multiply(A, derivative, out=derivative)  # A * (1 - A)
    return np.multiply(dA, derivative, out=out)


def relu_forward(Z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``A = max(Z, 0)``; derivative ``[Z > 0]``. (N, n) -> (N, n).

    With a ``scratch`` buffer, the 0 is an array of zeros written into it: NumPy 2.4's
    ``maximum`` has a vectorised loop for two arrays but not for an array and a
    scalar, and zeroing the buffer first is still about twice as fast (measured by
    ``benchmarks/test_kernels.py`` at 512 × 256 float32: 23.5 µs against 44 µs).
    Same values: the maximum of each entry and 0.
    """
    if scratch is None or scratch.shape != Z.shape or np.may_share_memory(scratch, Z) or (
            out is not None and np.may_share_memory(scratch, out)):
        return np.maximum(Z, 0.0, out=out)
    scratch.fill(0)
    return np.maximum(Z, scratch, out=out)


def relu_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray,
                  out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``dZ = dA * (Z > 0)``: (N, n) -> (N, n).

    At the kink Z = 0 the derivative is taken as 0 (strict ``>``), the
    convention of ``torch.relu`` and ``jax.nn.relu``. ``np.maximum``-style
    references give 1/2 there and ``clamp(min=0)`` gives 1; neither is used.
    Z is read only through its sign, which A shares (``Z > 0`` exactly where
    ``A = max(Z, 0) > 0``): the fast engine passes A for Z.
    """
    return np.multiply(dA, np.greater(Z, 0.0, out=scratch), out=out)


def tanh_forward(Z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``A = tanh(Z)``; derivative ``1 - A**2``. (N, n) -> (N, n)."""
    return np.tanh(Z, out=out)


def tanh_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray,
                  out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``dZ = dA * (1 - A**2)``: the tanh derivative, taken from the output A. (N, n) -> (N, n)."""
    derivative = np.multiply(A, A, out=scratch)
    np.subtract(1.0, derivative, out=derivative)  # 1 - A * A
    return np.multiply(dA, derivative, out=out)


#: The leaky ReLU's slope for Z < 0 (that of ``torch.nn.functional.leaky_relu`` and ``jax.nn.leaky_relu``).
LEAKY_SLOPE = 0.01


def leaky_relu_forward(Z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``A = where(Z > 0, Z, 0.01 Z) = max(Z, 0.01 Z)`` (the slope is below 1); derivative 1 or 0.01. (N, n) -> (N, n)."""
    small = np.multiply(Z, Z.dtype.type(LEAKY_SLOPE), out=scratch)  # 0.01 Z, read before out (maybe Z) is written
    return np.maximum(Z, small, out=out)


def leaky_relu_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray,
                        out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``dZ = dA * where(Z > 0, 1, 0.01)``: (N, n) -> (N, n).

    At the kink Z = 0 the derivative is taken as the slope 0.01, the convention
    of ``torch.nn.functional.leaky_relu`` (``jax.nn.leaky_relu`` is
    ``where(x >= 0, ...)`` and gives 1 there; the JAX reference is written to
    follow torch). The factor is ``0.99 [Z > 0] + 0.01``, exactly 1 or 0.01 in
    either dtype. Z is read only through its sign, which A shares: the fast
    engine passes A for Z.
    """
    dt = dA.dtype.type
    factor = np.greater(Z, 0.0, out=scratch) if scratch is not None else np.greater(Z, 0.0).astype(dA.dtype)
    np.multiply(factor, dt(1 - LEAKY_SLOPE), out=factor)
    np.add(factor, dt(LEAKY_SLOPE), out=factor)
    return np.multiply(dA, factor, out=out)


def softplus_forward(Z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``A = log(1 + exp(Z))``; derivative ``sigmoid(Z)``. (N, n) -> (N, n).

    Evaluated as ``max(Z, 0) + log1p(exp(-|Z|))``: exp never sees a positive
    argument, so no logit overflows, and log1p keeps the tiny values of a very
    negative Z.
    """
    t = np.abs(Z, out=scratch)
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)                          # log1p(exp(-|Z|)), read before out (maybe Z) is written
    A = np.maximum(Z, 0.0, out=out)
    return np.add(A, t, out=A)


def softplus_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray,
                      out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``dZ = dA * sigmoid(Z)``, with ``sigmoid(Z) = 1 - exp(-A)`` read off the output A. (N, n) -> (N, n).

    From ``A = log(1 + e^Z)``: ``e^A = 1 + e^Z``, so ``1 - e^-A = e^Z / (1 + e^Z)``;
    written ``-expm1(-A)``, exact to rounding also where A is tiny (Z very negative).
    """
    s = np.negative(A, out=scratch)
    np.expm1(s, out=s)
    np.negative(s, out=s)                       # 1 - exp(-A) = sigmoid(Z)
    return np.multiply(dA, s, out=out)


def softmax_forward(Z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``A_ik = exp(Z_ik) / sum_j exp(Z_ij)``, row by row: (N, n) -> (N, n).

    Its derivative is not elementwise: ``dA_ik/dZ_ij = A_ik ([k = j] - A_ij)``.
    The row maximum is subtracted first (the value does not change), so exp
    never overflows: the largest term is exp(0) = 1. (A row spanning more than
    the float range makes the difference -inf, whose exp is the right 0.)
    """
    with np.errstate(over="ignore"):
        e = np.subtract(Z, Z.max(axis=1, keepdims=True), out=out)
    np.exp(e, out=e)
    return np.divide(e, e.sum(axis=1, keepdims=True), out=e)


def softmax_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray,
                     out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """``dZ = A * (dA - sum_k(dA * A))``: the softmax Jacobian-vector product, (N, n) -> (N, n).

    Only used when softmax is not fused with cross-entropy; there the fused
    gradient ``P - Y`` replaces it.
    """
    s = np.multiply(dA, A, out=scratch).sum(axis=1, keepdims=True)  # sum_k dA_ik A_ik, (N, 1)
    dZ = np.subtract(dA, s, out=out)
    return np.multiply(A, dZ, out=dZ)


def with_out(kernel: Callable) -> Callable:
    """``kernel`` as ``f(*arrays, out=None, scratch=None)``.

    The kernel itself when it takes both; otherwise (a plain ``f(Z)`` or
    ``f(dA, Z, A)``, as a test or a new activation may register) a wrapper
    that drops what it does not take and copies its result into ``out``.
    """
    try:
        params = inspect.signature(kernel).parameters
    except (TypeError, ValueError):  # a ufunc or builtin without a signature: a plain kernel
        params = {}
    any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    takes_out, takes_scratch = any_keyword or "out" in params, any_keyword or "scratch" in params
    if takes_out and takes_scratch:
        return kernel
    if takes_out:
        return lambda *arrays, out=None, scratch=None: kernel(*arrays, out=out)

    def copied(*arrays, out=None, scratch=None):
        result = kernel(*arrays)
        if out is None:
            return result
        np.copyto(out, result)
        return out

    return copied


@dataclass(frozen=True)
class Activation:
    """One activation: its kernels, their texts, and the facts the engines and checks need about it.

    ``forward`` and ``backward`` are the kernels, with the ``out=`` /
    ``scratch=`` contract of this module (a plain ``f(Z)``, ``f(dA, Z, A)``
    works too: see :func:`with_out`).

    ``formula`` is the forward as text; ``backward_text`` is dZ as text, with
    ``{dA}``, ``{Z}``, ``{A}`` for the tensor names (``validate`` fills in the
    layer's: ``"{dA} * ({Z} > 0)"`` is shown as ``dZ1 = dA1 * (Z1 > 0)``).

    ``elementwise``: A_ij depends on Z_ij alone (not softmax). Then
    :attr:`derivative` is the elementwise dA/dZ, read off the backward kernel
    itself (a wrong backward moves the tolerance with it).

    ``backward_from_A``: the backward reads Z only through what A also tells,
    so ``backward(dA, A, A) == backward(dA, Z, A)``: it reads A alone (sigmoid,
    tanh, softmax), nothing (identity), or Z only through its sign, which A
    shares (ReLU: Z > 0 exactly where A = max(Z, 0) > 0). The fast engine then
    writes A over Z and passes A for Z; without the promise it keeps a copy of Z.

    ``kink`` is the pre-activation value where the derivative jumps, if any;
    ``last_layer_only``: allowed on the output layer only.
    """

    name: str
    forward: Callable[..., np.ndarray]
    backward: Callable[..., np.ndarray]
    formula: str
    backward_text: str
    kink: float | None = None
    last_layer_only: bool = False
    elementwise: bool = True
    backward_from_A: bool = False

    @property
    def derivative(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        """``(Z, A) -> dA/dZ`` elementwise, as the backward of an upstream gradient of ones; None if not elementwise."""
        if not self.elementwise:
            return None
        backward = self.backward_into

        def derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
            ones = np.ones_like(Z)
            return backward(ones, Z, A, out=ones)  # written over the ones: no array more than the rule needs

        return derivative

    @cached_property
    def forward_into(self) -> Callable[..., np.ndarray]:
        """``forward`` as ``f(Z, out=, scratch=)``, whatever parameters it takes."""
        return with_out(self.forward)

    @cached_property
    def backward_into(self) -> Callable[..., np.ndarray]:
        """``backward`` as ``f(dA, Z, A, out=, scratch=)``, whatever parameters it takes."""
        return with_out(self.backward)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", identity_forward, identity_backward, "A = Z", "{dA} (identity)",
                   backward_from_A=True),
        Activation("sigmoid", sigmoid_forward, sigmoid_backward, "A = 1/(1+exp(-Z))", "{dA} * {A} * (1 - {A})",
                   backward_from_A=True),
        Activation("relu", relu_forward, relu_backward, "A = max(Z, 0)", "{dA} * ({Z} > 0)",
                   kink=0.0, backward_from_A=True),
        Activation("tanh", tanh_forward, tanh_backward, "A = tanh(Z)", "{dA} * (1 - {A}**2)",
                   backward_from_A=True),
        Activation("leaky_relu", leaky_relu_forward, leaky_relu_backward, "A = max(Z, 0.01 Z)",
                   "{dA} * where({Z} > 0, 1, 0.01)", kink=0.0, backward_from_A=True),
        Activation("softplus", softplus_forward, softplus_backward, "A = log(1 + exp(Z))",
                   "{dA} * sigmoid({Z})", backward_from_A=True),
        Activation("softmax", softmax_forward, softmax_backward, "A = exp(Z) / sum(exp(Z))",
                   "{A} * ({dA} - sum({dA} * {A}))", last_layer_only=True, elementwise=False,
                   backward_from_A=True),
    )
}
