"""The tolerance policy: defined once, keyed by dtype, scaled by reduction length and magnitude.

Two correct implementations of the same tensor differ only by rounding. For
a sum of n products the rounding error of each is, with high probability,
about ``sqrt(n) * u * S`` where ``S`` is the same sum taken over absolute
values (``|A_prev|.T @ |dZ|`` for a dW) and ``u`` the unit roundoff; errors
already present in the operands are carried along (``|A_prev|.T @ E_dZ`` and
so on). :func:`error_scales` propagates that estimate ``E`` through the whole
forward and backward pass, in float64, from the engine's own trace. A tensor
passes when, element by element::

    |engine - reference| <= K * E + floor

Measured here (see ../shared/research): float32 errors stay near 2*sqrt(n)*u*S,
float64 ones far below K*sqrt(n)*u*S; K = 8 leaves margin in both, while any
real mistake in a backward rule is many orders of magnitude larger in float64.
The floor (a few times the smallest normal number) covers values that one
framework flushes to zero as subnormals (JAX on the CPU does).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..description.network import Network
from ..kernels import ACTIVATIONS, LOSSES

#: Safety factor over the rounding estimate, the same for every dtype.
K = 8.0

#: Unit roundoff u = 2**-(mantissa bits + 1), per dtype.
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}

#: Absolute floor per dtype: below it, two values are the same (subnormals may be flushed).
FLOOR = {"float64": 4 * float(np.finfo(np.float64).tiny), "float32": 4 * float(np.finfo(np.float32).tiny)}

#: Ulps of error in one elementwise function evaluation (exp, tanh, log1p, division).
ELEMENTWISE_ULPS = 4.0

#: How much the loss gradient amplifies an error in its input (dA = 2c(A - Y) for mse).
GRAD_LIPSCHITZ = {"mse": 2.0}


def tolerance(E: np.ndarray, dtype: str) -> np.ndarray:
    """``K * E + floor``: the largest difference two correct results may show."""
    return K * E + FLOOR[dtype]


def _gamma(n: int, u: float) -> float:
    """Probabilistic rounding growth of a sum of n terms: sqrt(n) * u."""
    return float(np.sqrt(max(n, 1))) * u


def error_scales(network: Network, params: Mapping[str, np.ndarray], trace: Mapping[str, np.ndarray],
                 T: np.ndarray) -> dict[str, np.ndarray]:
    """``E`` for every tensor of a run: the rounding error one correct implementation may carry.

    Computed in float64 from the engine's trace (its values stand in for the
    exact ones; the difference is second order). Shapes match the trace.
    """
    u = UNIT_ROUNDOFF[network.dtype]
    f = lambda a: np.abs(np.asarray(a, dtype=np.float64))  # noqa: E731
    E: dict[str, np.ndarray] = {"X": np.zeros(trace["X"].shape), "Y": np.zeros(np.shape(trace["Y"]))}
    absW = {l: f(params[f"W{l}"]) for l in range(1, network.depth + 1)}
    A_prev, E_prev = f(trace["X"]), E["X"]
    for l in range(1, network.depth + 1):
        Z, A = np.asarray(trace[f"Z{l}"], np.float64), f(trace[f"A{l}"])
        n_in = network.sizes[l - 1]
        E_Z = _gamma(n_in + 1, u) * (A_prev @ absW[l] + f(params[f"b{l}"])) + E_prev @ absW[l]
        act = ACTIVATIONS[network.activations[l - 1]]
        if act.derivative is not None:
            # Every elementwise activation here is Lipschitz with its local derivative
            # as constant (relu: 1 on both sides of the kink).
            lip = np.abs(act.derivative(Z, A)) if act.kink is None else np.ones_like(Z)
            E_A = lip * E_Z + ELEMENTWISE_ULPS * u * A
        else:  # softmax: dA_k = A_k (dZ_k - sum_j A_j dZ_j)
            n = Z.shape[1]
            E_A = A * (E_Z + E_Z.max(axis=1, keepdims=True)) + (_gamma(n, u) + ELEMENTWISE_ULPS * u) * A
        E[f"Z{l}"], E[f"A{l}"] = E_Z, E_A
        A_prev, E_prev = A, E_A

    L = network.depth
    loss = LOSSES[network.loss]
    Z_L, A_L = np.asarray(trace[f"Z{L}"], np.float64), np.asarray(trace[f"A{L}"], np.float64)
    T64 = np.asarray(T, np.float64)
    N, Kout = Z_L.shape
    c = loss.scale(N, Kout, network.reduction)
    inp, E_inp = (Z_L, E[f"Z{L}"]) if loss.fused_with else (A_L, E[f"A{L}"])
    g = np.abs(loss.grad(Z_L, A_L, T64))
    terms = np.abs(loss.terms(Z_L, A_L, T64))
    magnitude = terms + g * (np.abs(inp) + np.abs(T64)) + np.abs(T64 * inp)
    E["L"] = np.asarray(c * (_gamma(N * Kout, u) * magnitude.sum() + ELEMENTWISE_ULPS * u * terms.sum()
                             + (g * E_inp).sum()))

    # The loss gradient, dAL (or dZL when fused): c * g(A, T), g Lipschitz in A.
    lip = GRAD_LIPSCHITZ.get(network.loss, 1.0)
    E_top = c * (lip * E[f"A{L}"] + u * (g + np.abs(A_L) + np.abs(T64)))
    if loss.fused_with:
        E_dZ = E_top
    else:
        E[f"dA{L}"] = E_dA = E_top
    for l in range(L, 0, -1):
        Z, A = np.asarray(trace[f"Z{l}"], np.float64), np.asarray(trace[f"A{l}"], np.float64)
        if l < L or not loss.fused_with:
            E[f"dA{l}"] = E_dA
            dA = np.asarray(trace[f"dA{l}"], np.float64)
            E_dZ = _activation_backward_error(network.activations[l - 1], Z, A, dA, E_dA, E[f"A{l}"], u)
        dZ_abs = f(trace[f"dZ{l}"])
        A_prev = f(trace[f"A{l - 1}"]) if l > 1 else f(trace["X"])
        E_A_prev = E[f"A{l - 1}"] if l > 1 else E["X"]
        N = dZ_abs.shape[0]
        E[f"dZ{l}"] = E_dZ
        E[f"dW{l}"] = _gamma(N, u) * (A_prev.T @ dZ_abs) + A_prev.T @ E_dZ + E_A_prev.T @ dZ_abs
        E[f"db{l}"] = _gamma(N, u) * dZ_abs.sum(axis=0) + E_dZ.sum(axis=0)
        E_dA = _gamma(network.sizes[l], u) * (dZ_abs @ absW[l].T) + E_dZ @ absW[l].T
    E["dX"] = E_dA
    return E


def _activation_backward_error(name: str, Z, A, dA, E_dA, E_A, u: float) -> np.ndarray:
    """Error of ``dZ = dA * act'(Z)`` from the errors of dA and of A (through act')."""
    act = ACTIVATIONS[name]
    if act.derivative is not None:
        d = act.derivative(Z, A)
        # How far the derivative moves when A moves by its own error (0 for relu and identity).
        d_moved = np.abs(act.derivative(Z, A + E_A) - d)
        return E_dA * np.abs(d) + np.abs(dA) * d_moved + ELEMENTWISE_ULPS * u * np.abs(dA * d)
    # softmax: dZ = A * (dA - s), s = sum_k dA_k A_k
    s = np.abs(dA * A).sum(axis=1, keepdims=True)
    E_s = (np.abs(A) * E_dA + np.abs(dA) * E_A).sum(axis=1, keepdims=True)
    n = Z.shape[1]
    return (np.abs(A) * (E_dA + E_s) + E_A * (np.abs(dA) + s)
            + (_gamma(n, u) + ELEMENTWISE_ULPS * u) * np.abs(A) * (np.abs(dA) + s))


def kink_scales(network: Network, params: Mapping[str, np.ndarray], trace: Mapping[str, np.ndarray],
                flipped: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
    """The most each backward tensor can move when the units in ``flipped`` change mask.

    ``flipped[l]`` marks the units of a kinked layer l whose pre-activation has a
    different sign in the reference than in the engine (both within rounding
    of the kink). A flipped unit changes dZl by all of dAl there; that change
    is carried backward with absolute values, exactly like ``E``.
    """
    f = lambda a: np.abs(np.asarray(a, dtype=np.float64))  # noqa: E731
    out: dict[str, np.ndarray] = {}
    K_dA = None
    for l in range(network.depth, 0, -1):
        act = ACTIVATIONS[network.activations[l - 1]]
        K_dZ = np.zeros(np.shape(trace[f"dZ{l}"]))
        if K_dA is not None:
            out[f"dA{l}"] = K_dA
            d = act.derivative(np.asarray(trace[f"Z{l}"], np.float64), np.asarray(trace[f"A{l}"], np.float64)) \
                if act.derivative is not None else np.ones_like(K_dZ)
            if l in flipped:  # a flipped unit passes dA in one of the two runs
                d = np.maximum(np.abs(d), flipped[l])
            K_dZ = K_dZ + K_dA * np.abs(d)
        if l in flipped and f"dA{l}" in trace:
            K_dZ = K_dZ + f(trace[f"dA{l}"]) * flipped[l]
        out[f"dZ{l}"] = K_dZ
        A_prev = f(trace[f"A{l - 1}"]) if l > 1 else f(trace["X"])
        out[f"dW{l}"] = A_prev.T @ K_dZ
        out[f"db{l}"] = K_dZ.sum(axis=0)
        K_dA = K_dZ @ f(params[f"W{l}"]).T
    out["dX"] = K_dA
    return out
