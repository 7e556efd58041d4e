"""The tolerance policy: every rounding constant and every tolerance formula, defined here once.

Two correct implementations of the same tensor differ only by rounding. For
a sum of n products the rounding error of each is, with high probability,
about ``gamma(n) * S = sqrt(n) * u * S`` where ``S`` is the same sum taken
over absolute values (``|A_prev|.T @ |dZ|`` for a dW) and ``u`` the unit
roundoff; errors already present in the operands are carried along
(``|A_prev|.T @ E_dZ`` and so on). A tensor passes when, element by element::

    |ours - reference| <= tolerance(E) = K * E + FLOOR[dtype]

``E`` is the rounding error one correct implementation may carry, estimated
in float64 from the engine's own values (they stand in for the exact ones;
the difference is second order). It is built from one small function per
step, each taking its operands' errors and returning its result's::

    linear_forward_error       Z = A_prev @ W + b    E_Z = gamma(n_in + 1) (|A_prev| @ |W| + |b|)
                                                                + E_A_prev @ |W|
    activation_error           A = act(Z)            E_A = |act'(Z)| E_Z + ULPS u |A|   (softmax: its own)
    loss_error                 L = c sum_i l_i       E_L = c (gamma(N K) M + ULPS u sum|l| + sum |g| E_in)
    loss_gradient_error        dA_L (dZ_L) = c g     E = c (lip E_A_L + u (|g| + |A_L| + |T|))
    activation_backward_error  dZ = dA * act'(Z)     E_dZ = |act'| E_dA + |dA| |act'(A + E_A) - act'(A)|
                                                                + ULPS u |dZ|
    linear_backward_error      dW = A_prev.T @ dZ    E_dW = gamma(N) |A_prev|.T @ |dZ| + |A_prev|.T @ E_dZ
                                                                + E_A_prev.T @ |dZ|
                               db = sum_rows dZ      E_db = gamma(N) sum|dZ| + sum E_dZ
                               dA_prev = dZ @ W.T    E_dA = gamma(n_out) |dZ| @ |W|.T + E_dZ @ |W|.T

:func:`error_scales` composes them over a whole network (every tensor of a
trace), :func:`layer_error_scales` over one layer with an exact upstream
gradient (the layer check); :func:`per_sample_error_scales` and
:func:`next_error_scales` carry ``E`` on to the per-sample gradients and to
one descent step; :func:`projection_tolerance` judges a finite-difference
directional derivative; :func:`kink_scales` bounds what a ReLU unit on the
other side of its kink moves.

Measured on this project's networks: float32 errors stay near
``2 sqrt(n) u S``, float64 ones far below ``K sqrt(n) u S``; K = 8 leaves
margin in both, while any real mistake in a backward rule is many orders of
magnitude larger in float64. The floor (a few times the smallest normal
number) covers values that one framework flushes to zero as subnormals (JAX
on the CPU does).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..description.network import Network
from ..engine.per_sample import normalisation
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

#: Ulps of rounding in one float64 evaluation of the loss, per sqrt(term) of its magnitude (finite differences).
LOSS_EVALUATION_ULPS = 16.0

#: Safety factor over a finite-difference estimate's own error (truncation and rounding).
PROJECTION_ERROR_FACTOR = 4.0

#: Slack for rounding in a value that validate recomputes from a student's own inputs, in units of
#: its magnitude (ulps): a handful of operations, each rounded once.
REPLAY_ULPS = 16.0


def tolerance(E: np.ndarray, dtype: str) -> np.ndarray:
    """``K * E + FLOOR[dtype]``: the largest difference two correct results may show (E's shape)."""
    return K * E + FLOOR[dtype]


def gamma(n: int, u: float) -> float:
    """Probabilistic rounding growth of a sum of n terms: ``sqrt(n) * u``."""
    return float(np.sqrt(max(n, 1))) * u


def _abs(a) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=np.float64))


# --- one step each ------------------------------------------------------------------------------

def linear_forward_error(A_prev, E_A_prev, W, b, u: float) -> np.ndarray:
    """``E_Z`` of ``Z = A_prev @ W + b``: A_prev (N, n_in), W (n_in, n_out), b (n_out,) -> (N, n_out).

    ``E_Z = gamma(n_in + 1) (|A_prev| @ |W| + |b|) + E_A_prev @ |W|`` (W and b exact).
    """
    A_prev, absW = _abs(A_prev), _abs(W)
    return gamma(absW.shape[0] + 1, u) * (A_prev @ absW + _abs(b)) + np.asarray(E_A_prev) @ absW


def activation_error(name: str, Z, A, E_Z, u: float) -> np.ndarray:
    """``E_A`` of ``A = act(Z)``, Z and A (N, n).

    Elementwise: ``|act'(Z)| E_Z + ULPS u |A|`` (every elementwise activation here is
    Lipschitz with its local derivative as constant; relu: 1 on both sides of the kink).
    Softmax (rows): ``|A| (E_Z + max_row E_Z) + (gamma(n) + ULPS u) |A|``.
    """
    act = ACTIVATIONS[name]
    Z, absA = np.asarray(Z, np.float64), _abs(A)
    if act.derivative is not None:
        lip = np.abs(act.derivative(Z, np.asarray(A, np.float64))) if act.kink is None else np.ones_like(Z)
        return lip * E_Z + ELEMENTWISE_ULPS * u * absA
    n = Z.shape[1]  # softmax: dA_k = A_k (dZ_k - sum_j A_j dZ_j)
    return absA * (E_Z + E_Z.max(axis=1, keepdims=True)) + (gamma(n, u) + ELEMENTWISE_ULPS * u) * absA


def loss_error(network: Network, Z_L, A_L, T, E_A_L, E_Z_L, u: float) -> np.ndarray:
    """``E_L`` (0-d) of ``L = c sum_i l_i`` from the output Z_L, A_L (N, K) and target T (N, K).

    ``c (gamma(N K) sum(|l| + |g| (|in| + |T|) + |T in|) + ULPS u sum|l| + sum |g| E_in)``,
    ``g`` the loss gradient and ``in`` its input (Z_L for a fused loss, else A_L).
    """
    loss = LOSSES[network.loss]
    Z_L, A_L, T = (np.asarray(a, np.float64) for a in (Z_L, A_L, T))
    N, n_out = Z_L.shape
    c = loss.scale(N, n_out, network.reduction)
    inp, E_inp = (Z_L, E_Z_L) if loss.fused_with else (A_L, E_A_L)
    g = np.abs(loss.grad(Z_L, A_L, T))
    terms = np.abs(loss.terms(Z_L, A_L, T))
    magnitude = terms + g * (np.abs(inp) + np.abs(T)) + np.abs(T * inp)
    return np.asarray(c * (gamma(N * n_out, u) * magnitude.sum() + ELEMENTWISE_ULPS * u * terms.sum()
                           + (g * E_inp).sum()))


def loss_gradient_error(network: Network, Z_L, A_L, T, E_A_L, u: float) -> np.ndarray:
    """``E`` of the loss gradient ``dA_L`` (``dZ_L`` when fused) ``= c g(A_L, T)``, (N, K).

    ``c (lip E_A_L + u (|g| + |A_L| + |T|))``, g Lipschitz in A with constant ``lip``.
    """
    loss = LOSSES[network.loss]
    Z_L, A_L, T = (np.asarray(a, np.float64) for a in (Z_L, A_L, T))
    c = loss.scale(*Z_L.shape, network.reduction)
    g = np.abs(loss.grad(Z_L, A_L, T))
    return c * (GRAD_LIPSCHITZ.get(network.loss, 1.0) * E_A_L + u * (g + np.abs(A_L) + np.abs(T)))


def activation_backward_error(name: str, Z, A, dA, E_dA, E_A, u: float) -> np.ndarray:
    """``E_dZ`` of ``dZ = dA * act'(Z)`` from the errors of dA and of A (through act'), all (N, n).

    Elementwise: ``|act'| E_dA + |dA| |act'(Z, A + E_A) - act'(Z, A)| + ULPS u |dA act'|``
    (the middle term is how far the derivative moves with A's own error; 0 for relu, identity).
    Softmax, ``dZ = A (dA - s)`` with ``s = sum_k dA_k A_k``:
    ``|A| (E_dA + E_s) + E_A (|dA| + |s|) + (gamma(n) + ULPS u) |A| (|dA| + |s|)``.
    """
    act = ACTIVATIONS[name]
    Z, A, dA = (np.asarray(a, np.float64) for a in (Z, A, dA))
    if act.derivative is not None:
        d = act.derivative(Z, A)
        d_moved = np.abs(act.derivative(Z, A + E_A) - d)
        return E_dA * np.abs(d) + np.abs(dA) * d_moved + ELEMENTWISE_ULPS * u * np.abs(dA * d)
    s = np.abs(dA * A).sum(axis=1, keepdims=True)
    E_s = (np.abs(A) * E_dA + np.abs(dA) * E_A).sum(axis=1, keepdims=True)
    n = Z.shape[1]
    return (np.abs(A) * (E_dA + E_s) + E_A * (np.abs(dA) + s)
            + (gamma(n, u) + ELEMENTWISE_ULPS * u) * np.abs(A) * (np.abs(dA) + s))


def linear_backward_error(A_prev, E_A_prev, W, dZ, E_dZ, u: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(E_dW, E_db, E_dA_prev)`` of ``dW = A_prev.T @ dZ``, ``db = dZ.sum(0)``, ``dA_prev = dZ @ W.T``.

    A_prev (N, n_in), W (n_in, n_out), dZ (N, n_out)::

        E_dW      = gamma(N) |A_prev|.T @ |dZ| + |A_prev|.T @ E_dZ + E_A_prev.T @ |dZ|     (n_in, n_out)
        E_db      = gamma(N) sum_rows |dZ| + sum_rows E_dZ                                  (n_out,)
        E_dA_prev = gamma(n_out) |dZ| @ |W|.T + E_dZ @ |W|.T                                (N, n_in)
    """
    A_prev, absW, dZ_abs = _abs(A_prev), _abs(W), _abs(dZ)
    N, n_out = dZ_abs.shape
    E_dW = gamma(N, u) * (A_prev.T @ dZ_abs) + A_prev.T @ E_dZ + np.asarray(E_A_prev).T @ dZ_abs
    E_db = gamma(N, u) * dZ_abs.sum(axis=0) + E_dZ.sum(axis=0)
    E_dA_prev = gamma(n_out, u) * (dZ_abs @ absW.T) + E_dZ @ absW.T
    return E_dW, E_db, E_dA_prev


# --- composed -----------------------------------------------------------------------------------

def error_scales(network: Network, params: Mapping[str, np.ndarray], trace: Mapping[str, np.ndarray],
                 T: np.ndarray) -> dict[str, np.ndarray]:
    """``E`` for every tensor of a run: the rounding error one correct implementation may carry.

    The steps above, forward then backward, in float64 from the engine's trace
    (its values stand in for the exact ones). Shapes match the trace; ``E["L"]`` is 0-d.
    """
    u = UNIT_ROUNDOFF[network.dtype]
    L = network.depth
    E: dict[str, np.ndarray] = {"X": np.zeros(trace["X"].shape), "Y": np.zeros(np.shape(trace["Y"]))}
    A_prev, E_prev = trace["X"], E["X"]
    for l in range(1, L + 1):
        E_Z = linear_forward_error(A_prev, E_prev, params[f"W{l}"], params[f"b{l}"], u)
        E_A = activation_error(network.activations[l - 1], trace[f"Z{l}"], trace[f"A{l}"], E_Z, u)
        E[f"Z{l}"], E[f"A{l}"] = E_Z, E_A
        A_prev, E_prev = trace[f"A{l}"], E_A

    Z_L, A_L = trace[f"Z{L}"], trace[f"A{L}"]
    E["L"] = loss_error(network, Z_L, A_L, T, E[f"A{L}"], E[f"Z{L}"], u)
    E_top = loss_gradient_error(network, Z_L, A_L, T, E[f"A{L}"], u)
    fused = LOSSES[network.loss].fused_with is not None
    E_dA = E_top
    for l in range(L, 0, -1):
        if l < L or not fused:
            E[f"dA{l}"] = E_dA
            E_dZ = activation_backward_error(network.activations[l - 1], trace[f"Z{l}"], trace[f"A{l}"],
                                             trace[f"dA{l}"], E_dA, E[f"A{l}"], u)
        else:
            E_dZ = E_top  # the fused loss gives dZ_L directly
        A_prev = trace[f"A{l - 1}"] if l > 1 else trace["X"]
        E_A_prev = E[f"A{l - 1}"] if l > 1 else E["X"]
        E[f"dZ{l}"] = E_dZ
        E[f"dW{l}"], E[f"db{l}"], E_dA = linear_backward_error(A_prev, E_A_prev, params[f"W{l}"],
                                                               trace[f"dZ{l}"], E_dZ, u)
    E["dX"] = E_dA
    return E


def layer_error_scales(activation: str, x: np.ndarray, params: Mapping[str, np.ndarray],
                       values: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """``E`` of one layer ``out = act(x @ W + b)`` (or ``act(x)`` when ``params`` is empty).

    x (N, n_in), W (n_in, n_out), b (n_out,) and the upstream ``dout`` (N, n_out)
    are exact inputs (E = 0). ``values`` holds the layer's float64 ``Z``, ``out``,
    ``dout`` and ``dZ``. Returns ``E`` for ``Z``, ``out``, ``dZ``, ``dx`` and, with
    parameters, ``dW``, ``db``: the same steps as :func:`error_scales`.
    """
    u = UNIT_ROUNDOFF[dtype]
    zero_x = np.zeros(np.shape(x))
    E = {"Z": linear_forward_error(x, zero_x, params["W"], params["b"], u) if params else zero_x}
    E["out"] = activation_error(activation, values["Z"], values["out"], E["Z"], u)
    E["dZ"] = activation_backward_error(activation, values["Z"], values["out"], values["dout"],
                                        np.zeros(np.shape(values["dout"])), E["out"], u)
    if params:
        E["dW"], E["db"], E["dx"] = linear_backward_error(x, zero_x, params["W"], values["dZ"], E["dZ"], u)
    else:
        E["dx"] = E["dZ"]
    return E


def per_sample_error_scales(network: Network, trace: Mapping[str, np.ndarray],
                            E: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rounding scales for the per-sample names, from ``E`` of the batch trace.

    Each element is one product ``A(l-1)[i, j] * dZl_ps[i, k]`` (no sum), so its
    error is the operands' errors carried through the product plus one rounding::

        E[dWl_per_sample][i] = (|A(l-1)[i]| ⊗ E_dZl[i] + E_A(l-1)[i] ⊗ |dZl[i]|) / c + u |dWl_per_sample[i]|
        E[dbl_per_sample][i] = E_dZl[i] / c                                   shapes (N, n_{l-1}, n_l), (N, n_l)
    """
    u = UNIT_ROUNDOFF[network.dtype]
    inverse_c = 1 / normalisation(network, trace["X"].shape[0])
    out = {}
    for l in range(1, network.depth + 1):
        A_prev = _abs(trace[f"A{l - 1}"] if l > 1 else trace["X"])
        E_A_prev = E[f"A{l - 1}"] if l > 1 else E["X"]
        dZ_ps, E_dZ_ps = _abs(trace[f"dZ{l}"]) * inverse_c, E[f"dZ{l}"] * inverse_c
        out[f"dW{l}_per_sample"] = (np.einsum("ni,nj->nij", A_prev, E_dZ_ps)
                                    + np.einsum("ni,nj->nij", E_A_prev, dZ_ps)
                                    + u * np.einsum("ni,nj->nij", A_prev, dZ_ps))
        out[f"db{l}_per_sample"] = E_dZ_ps
    return out


def next_error_scales(network: Network, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
                      E: Mapping[str, np.ndarray], lr: float) -> dict[str, np.ndarray]:
    """Rounding scales for ``Wl_next``, ``bl_next`` (the parameters' shapes) from ``E`` of the gradients.

    ``W - lr*dW`` carries lr times the gradient's error, plus one rounding for
    the product and one for the difference (a fused multiply-add saves one)::

        E[Wl_next] = lr * E_dWl + u * (lr * |dWl| + |Wl - lr * dWl|)
    """
    u = UNIT_ROUNDOFF[network.dtype]
    out = {}
    for name in network.parameter_shapes():
        p = np.asarray(params[name], np.float64)
        g = np.asarray(grads[f"d{name}"], np.float64)
        out[f"{name}_next"] = lr * E[f"d{name}"] + u * (lr * np.abs(g) + np.abs(p - lr * g))
    return out


def projection_tolerance(E_dot: float, G_dot: float, n: int, truncation: float, rounding: float,
                         step: float) -> float:
    """The most ``<G, v>`` (G of n elements) may differ from a float64 finite-difference estimate of it.

    ``E_dot = <E, |v|>`` is the engine's own rounding along v, ``G_dot = <|G|, |v|>``
    the magnitude of the float64 dot product; the estimate carries its truncation
    error and the rounding of the loss evaluations it differences (``rounding``
    is one evaluation's rounding magnitude without u, ``step`` the h it is divided by)::

        error = truncation + 2 * LOSS_EVALUATION_ULPS * u64 * rounding / h
        tol   = K * E_dot + K * sqrt(n) * u64 * G_dot + PROJECTION_ERROR_FACTOR * error + FLOOR[float64]
    """
    u = UNIT_ROUNDOFF["float64"]
    error = truncation + 2 * LOSS_EVALUATION_ULPS * u * rounding / step
    return K * E_dot + K * float(np.sqrt(n)) * u * G_dot + PROJECTION_ERROR_FACTOR * error + FLOOR["float64"]


# --- kinks --------------------------------------------------------------------------------------

def kink_layer_scales(A_prev, W, dA, derivative, K_dA,
                      flipped) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One layer of :func:`kink_scales`: ``(K_dZ, K_dW, K_db, K_dA_prev)``.

    A_prev (N, n_in) and W (n_in, n_out) of the layer; its own upstream ``dA``
    (N, n_out; None for a fused output layer, which has none); ``derivative``
    act'(Z) (None: taken as 1); ``K_dA`` what dA may move from flips above (None
    at the top); ``flipped`` (N, n_out) the units of this layer that may flip
    (None: none)::

        K_dZ = K_dA * max(|act'|, flipped) + |dA| * flipped
        K_dW = |A_prev|.T @ K_dZ      K_db = sum_rows K_dZ      K_dA_prev = K_dZ @ |W|.T
    """
    A_prev, absW = _abs(A_prev), _abs(W)
    K_dZ = np.zeros((A_prev.shape[0], absW.shape[1]))
    if K_dA is not None:
        d = np.abs(derivative) if derivative is not None else np.ones_like(K_dZ)
        if flipped is not None:  # a flipped unit passes dA in one of the two runs
            d = np.maximum(d, flipped)
        K_dZ = K_dZ + K_dA * d
    if flipped is not None and dA is not None:
        K_dZ = K_dZ + _abs(dA) * flipped
    return K_dZ, A_prev.T @ K_dZ, K_dZ.sum(axis=0), K_dZ @ absW.T


def kink_scales(network: Network, params: Mapping[str, np.ndarray], trace: Mapping[str, np.ndarray],
                flipped: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
    """The most each backward tensor can move when the units in ``flipped`` change mask.

    ``flipped[l]`` (N, n_l) marks the units of a kinked layer l whose pre-activation
    may have a different sign in the reference than in the engine (both within
    rounding of the kink). A flipped unit changes dZl by all of dAl there; that
    change is carried backward with absolute values, exactly like ``E``
    (:func:`kink_layer_scales`, layer by layer).
    """
    out: dict[str, np.ndarray] = {}
    K_dA = None
    for l in range(network.depth, 0, -1):
        act = ACTIVATIONS[network.activations[l - 1]]
        derivative = None
        if K_dA is not None:
            out[f"dA{l}"] = K_dA
            if act.derivative is not None:
                derivative = act.derivative(np.asarray(trace[f"Z{l}"], np.float64),
                                            np.asarray(trace[f"A{l}"], np.float64))
        dA = trace[f"dA{l}"] if f"dA{l}" in trace else None
        A_prev = trace[f"A{l - 1}"] if l > 1 else trace["X"]
        out[f"dZ{l}"], out[f"dW{l}"], out[f"db{l}"], K_dA = kink_layer_scales(
            A_prev, params[f"W{l}"], dA, derivative, K_dA, flipped.get(l))
    out["dX"] = K_dA
    return out
