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
    loss_error                 L = c sum_i l_i       E_L = c (gamma(N K) M + ULPS u sum|l| + sum |g| E_in
                                                                + LOG_DOMAIN_ULPS u sum d_l)   (bce, CE)
    unfused_gradient_error     dA_L of a fused loss  E = c (|T| r(A) + |1 - T| r(1 - A)) + ULPS u |dA|, r(x) = e/(x(x-e))
                                                                + ULPS u / x, e = E_A_L   (CE: the first term)
    loss_gradient_error        dA_L (dZ_L) = c g     E = c (lip E_A_L + u (|g| + |A_L| + |T|)
                                                                + LOG_DOMAIN_ULPS u d)   (bce: d below)
    activation_backward_error  dZ = dA * act'(Z)     E_dZ = |act'| E_dA + |dA| |act'(A + E_A) - act'(A)|
                                                                + ULPS u |dZ|
    linear_backward_error      dW = A_prev.T @ dZ    E_dW = gamma(N) |A_prev|.T @ |dZ| + |A_prev|.T @ E_dZ
                                                                + E_A_prev.T @ |dZ|
                               db = sum_rows dZ      E_db = gamma(N) sum|dZ| + sum E_dZ
                               dA_prev = dZ @ W.T    E_dA = gamma(n_out) |dZ| @ |W|.T + E_dZ @ |W|.T
    norm_forward_error         N = (Z - mu) inv, S = gamma N + beta (a sum over m: the batch, or the features)
    norm_backward_error        dgamma, dbeta, dN, dZ = (1/m) inv (m dN - sum dN - N sum dN N)

Two errors that are a reference's own, not rounding of the same arithmetic, are
part of ``E`` too: a correct engine is never rejected for them.

* The flush range (:data:`FLUSH`, the smallest normal number). JAX on the CPU
  flushes every result below it to 0 and reads subnormal operands as 0 (torch's
  matrix products do too). So each step adds ``FLUSH`` per value it may flush
  (each product of a sum that is not exactly 0; an elementwise result below twice
  the smallest normal, not 0), a subnormal parameter or input counts as its own
  magnitude, and the steps that follow carry it on like any
  other error, multiplied by the magnitudes: a subnormal ``dZ1`` that JAX makes
  0 times ``|X| = 87`` is a difference of 87 times the smallest normal number in
  ``dW1``, far beyond the floor. :func:`flush_scales` is that part alone.
* The log domain (:data:`LOG_DOMAIN_ULPS`). A function evaluated as
  ``exp(x - logaddexp(x, 0))`` or as ``1 - small`` is off relatively by a few
  ulps of ``max(|x|, 1)``, not of its result: JAX's bce gradient, the derivative of
  ``log_sigmoid``, is ``-1`` at logit -33.5 in float64 where the truth is
  ``-0.99999999999999722``. ``d = max(|Z|, 1) (|1 - T| sigmoid(Z) + |T| sigmoid(-Z))``
  for bce (:data:`LOG_DOMAIN_GRADIENT`); softmax's ``exp(Z - max Z)``, off by
  ``u |Z - max Z|``, lies within its ``E_Z`` term already. The loss terms the
  same (:data:`LOG_DOMAIN_LOSS`): torch's bce term is ``(1 - T) Z - log_sigmoid(Z)``,
  two values of size |Z| that cancel, 0 for a term below ``u |Z|``, so each term
  may be off by ``LOG_DOMAIN_ULPS u max(|Z|, 1)``.

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
number) is the difference below which two values are the same, whatever
their scales say.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..description.network import Network
from ..engine.per_sample import normalisation
from ..kernels import ACTIVATIONS, LOSSES, NORMS

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

#: The flush range per dtype: the smallest normal number. A reference may flush a result below it to
#: 0 and read a subnormal operand as 0 (JAX on the CPU does both; torch's matrix products too), so
#: a result below the normal range may differ by up to this much in absolute value, and the products
#: that follow carry that difference on, multiplied by the magnitudes they multiply it by: each step's
#: E adds ``FLUSH`` per value it may flush (each product of a sum that is not exactly 0, an elementwise
#: result with ``0 < |r| < 2 FLUSH``), and a subnormal parameter or input counts as its own magnitude.
#: Exact zeros stay exact: where nothing is rounded, E stays 0 (a ReLU unit there cannot flip).
FLUSH = {"float64": float(np.finfo(np.float64).tiny), "float32": float(np.finfo(np.float32).tiny)}

#: Ulps, per unit of ``max(|x|, 1)``, of a function a reference evaluates in the log domain or as
#: ``1 - small``: its relative error grows with the size of its argument, not with the size of its
#: result. JAX's bce gradient (the derivative of ``log_sigmoid``) is ``exp(x - logaddexp(x, 0))``,
#: whose exponent rounds at the scale of |x|: at x = 33.5 in float64 it gives 1 for
#: 1 - 2.8e-15, 25 ulps off; softmax is ``exp(Z - max Z) / sum``, off by about ``u |Z - max Z|``;
#: torch's bce loss is ``(1 - T) Z - log_sigmoid(Z)``, 0 where the term is below ``u |Z|``.
LOG_DOMAIN_ULPS = 4.0

#: Loss evaluations' rounding in one finite-difference estimate, per step: Richardson's
#: ``(4 (g+ - g-) / h - (f+ - f-) / 2h) / 3`` takes four evaluations, each off by up to ``K E_L``: (8 + 1) / 3.
RICHARDSON_ROUNDING = 3.0

#: Safety factor over a finite-difference estimate's own error (truncation and rounding).
PROJECTION_ERROR_FACTOR = 4.0

#: A finite-difference direction judges only if the estimate's own error is at most this fraction of
#: what it must resolve (the larger of ``|<G, v>|``, the estimate, and the typical projection
#: ``|G| / sqrt(n)``): beyond it, a gradient wrong by that much could agree within the estimate's error.
PROJECTION_RESOLUTION = 1e-2

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


def _subnormal(magnitude: np.ndarray, flush: float) -> np.ndarray:
    """The part of ``magnitude`` (already |a|) that a reference may read as 0: the values below ``flush``."""
    return np.where(magnitude < flush, magnitude, 0.0) if flush else np.zeros(np.shape(magnitude))


def _flushable(result, flush: float) -> np.ndarray:
    """``flush`` where a reference may flush the result (``0 < |r| < 2 flush``), else 0: (r's shape).

    A normal result is never flushed, and 0 stays 0; a result near the boundary (within
    rounding of it) may fall either side in a reference: hence the factor 2.
    """
    r = _abs(result)
    return np.where((r > 0) & (r < 2 * flush), flush, 0.0) if flush else np.zeros(r.shape)


def _flushable_products(a: np.ndarray, b: np.ndarray, flush: float) -> np.ndarray | float:
    """How many products (and partial sums) of ``a @ b`` (magnitudes) a reference may flush: ``m flush`` bounds it.

    0 when every nonzero product is at least ``flush / u64``: then every product and every partial
    sum is 0 or a multiple of an ulp no smaller than the smallest normal number, never subnormal
    (the common case, at the cost of two minima). Otherwise the products that are not exactly 0,
    each of which may be flushed; a zero product never is.
    """
    if not flush:
        return 0.0
    nonzero_a, nonzero_b = a[a > 0], b[b > 0]
    if not nonzero_a.size or not nonzero_b.size:
        return 0.0
    if float(nonzero_a.min()) * float(nonzero_b.min()) >= flush / UNIT_ROUNDOFF["float64"]:
        return 0.0
    return (a != 0).astype(np.float64) @ (b != 0).astype(np.float64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` in float64 without overflow, for magnitudes only."""
    return np.exp(-np.logaddexp(0.0, -z))


def _bce_log_domain(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """How a reference's bce gradient ``g = sigmoid(Z) - T`` may be off, in units of ``LOG_DOMAIN_ULPS u``.

    A reference that differentiates ``-(T log_sigmoid(Z) + (1 - T) log_sigmoid(-Z))`` makes
    ``g = (1 - T) sigmoid(Z) - T sigmoid(-Z)``, each part as ``exp(x - logaddexp(x, 0))``, off
    relatively by ``max(|Z|, 1)`` ulps: ``max(|Z|, 1) (|1 - T| sigmoid(Z) + |T| sigmoid(-Z))``.
    """
    return np.maximum(np.abs(Z), 1.0) * (np.abs(1 - T) * _sigmoid(Z) + np.abs(T) * _sigmoid(-Z))


#: Per loss, the error a reference's gradient may carry beyond rounding its own result, in units of
#: ``LOG_DOMAIN_ULPS u`` (before the normalisation c): ``f(Z_L, A_L, T) -> (N, K)``.
LOG_DOMAIN_GRADIENT = {"bce": _bce_log_domain}


def _bce_terms_log_domain(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``max(|Z|, 1)``: how a reference's bce term may be off, in units of ``LOG_DOMAIN_ULPS u``.

    torch's ``binary_cross_entropy_with_logits`` takes ``(1 - T) Z - log_sigmoid(Z)``: two values of
    size |Z| that cancel, each rounded at that scale, and ``log_sigmoid`` itself takes the log of
    ``1 + small``; the term comes out 0 where it is below ``u max(|Z|, 1)`` (at Z = -50 in float32,
    0 for 2e-22).
    """
    return np.maximum(np.abs(Z), 1.0)


def _cross_entropy_terms_log_domain(Z: np.ndarray, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``|T| max(|Z - max Z|, 1)``: a reference's ``-T log_softmax(Z)``, ``Z - max Z - log(1 + small)``."""
    return np.abs(T) * np.maximum(np.abs(Z - Z.max(axis=1, keepdims=True)), 1.0)


#: Per loss, the error a reference's terms may carry beyond rounding them, in units of
#: ``LOG_DOMAIN_ULPS u`` per term (before c): ``f(Z_L, A_L, T) -> (N, K)``.
LOG_DOMAIN_LOSS = {"bce": _bce_terms_log_domain, "softmax_cross_entropy": _cross_entropy_terms_log_domain}

#: Per activation whose derivative a reference takes in the log domain, its relative error in units
#: of ``LOG_DOMAIN_ULPS u``: ``f(Z) -> (N, n)``. softplus is ``logaddexp(Z, 0)`` in JAX, whose
#: derivative ``sigmoid(Z)`` comes out as ``exp(Z - logaddexp(Z, 0))``: 26 ulps off at Z = 33.5 in
#: float64. (Read only for an activation of that name in the registry.)
LOG_DOMAIN_DERIVATIVE = {"softplus": lambda Z: np.maximum(np.abs(Z), 1.0)}


# --- one step each ------------------------------------------------------------------------------

def linear_forward_error(A_prev, E_A_prev, W, b, u: float, flush: float = 0.0) -> np.ndarray:
    """``E_Z`` of ``Z = A_prev @ W + b``: A_prev (N, n_in), W (n_in, n_out), b (n_out,) -> (N, n_out).

    ``E_Z = gamma(n_in + 1) (|A_prev| @ |W| + |b|) + E_A_prev @ |W|`` (W and b exact), and with a
    flush range: ``+ (m + [b != 0]) flush + |A_prev| @ sub(W) + sub(b)``, m the products that are not
    exactly 0 where some product is small enough to be flushed (:func:`_flushable_products`; each of
    them, and so the sum, may be flushed), a subnormal parameter read as 0 (``sub`` keeps the
    magnitudes below ``flush``). A Z made of exact zeros keeps ``E_Z = 0``: it cannot move.
    """
    A_prev, absW = _abs(A_prev), _abs(W)
    n_in = absW.shape[0]
    E = gamma(n_in + 1, u) * (A_prev @ absW + _abs(b)) + np.asarray(E_A_prev) @ absW
    if flush:
        absb = _abs(b)
        m = _flushable_products(A_prev, absW, flush)
        E = (E + flush * (m + (absb != 0) if np.ndim(m) else m) + A_prev @ _subnormal(absW, flush)
             + _subnormal(absb, flush))
    return E


def activation_error(name: str, Z, A, E_Z, u: float, flush: float = 0.0) -> np.ndarray:
    """``E_A`` of ``A = act(Z)``, Z and A (N, n).

    Elementwise: ``|act'(Z)| E_Z + ULPS u |A| + fl(A)`` (every elementwise activation here is
    Lipschitz with its local derivative as constant; relu: 1 on both sides of the kink), ``fl(A)``
    the flush range where A may be flushed (``0 < |A| < 2 flush``).
    Softmax (rows): ``|A| (E_Z + max_row E_Z) + (gamma(n) + ULPS u) |A| + fl(A)``; the rounding of
    ``Z - max Z``, which exp turns into a relative error ``u |Z - max Z|``, lies within the first
    term (``E_Z >= gamma(n_in + 1) |Z|``).
    """
    act = ACTIVATIONS[name]
    Z, absA = np.asarray(Z, np.float64), _abs(A)
    if act.derivative is not None:
        lip = np.abs(act.derivative(Z, np.asarray(A, np.float64))) if act.kink is None else np.ones_like(Z)
        return lip * E_Z + ELEMENTWISE_ULPS * u * absA + _flushable(absA, flush)
    n = Z.shape[1]  # softmax: dA_k = A_k (dZ_k - sum_j A_j dZ_j)
    return (absA * (E_Z + E_Z.max(axis=1, keepdims=True)) + (gamma(n, u) + ELEMENTWISE_ULPS * u) * absA
            + _flushable(absA, flush))


def loss_error(network: Network, Z_L, A_L, T, E_A_L, E_Z_L, u: float, flush: float = 0.0) -> np.ndarray:
    """``E_L`` (0-d) of ``L = c sum_i l_i`` from the output Z_L, A_L (N, K) and target T (N, K).

    ``c (gamma(N K) sum(|l| + |g| (|in| + |T|) + |T in|) + ULPS u sum|l| + LOG_DOMAIN_ULPS u sum d
    + sum |g| E_in + m flush) + fl(L)``, ``g`` the loss gradient and ``in`` its input (Z_L for a
    fused loss, else A_L); ``d`` what a reference's log-domain terms add (:data:`LOG_DOMAIN_LOSS`,
    0 for the squared errors); each of the m terms that are not 0, and the sum, may be flushed.
    """
    loss = LOSSES[network.loss]
    Z_L, A_L, T = (np.asarray(a, np.float64) for a in (Z_L, A_L, T))
    N, n_out = Z_L.shape
    c = loss.scale(N, n_out, network.reduction)
    inp, E_inp = (Z_L, E_Z_L) if loss.fused_with else (A_L, E_A_L)
    g = np.abs(loss.grad(Z_L, A_L, T))
    terms = np.abs(loss.terms(Z_L, A_L, T))
    magnitude = terms + g * (np.abs(inp) + np.abs(T)) + np.abs(T * inp)
    log_domain = LOG_DOMAIN_LOSS[network.loss](Z_L, A_L, T).sum() if network.loss in LOG_DOMAIN_LOSS else 0.0
    return np.asarray(c * (gamma(N * n_out, u) * magnitude.sum() + ELEMENTWISE_ULPS * u * terms.sum()
                           + LOG_DOMAIN_ULPS * u * log_domain + (g * E_inp).sum() + flush * (terms != 0).sum())
                      + _flushable(c * terms.sum(), flush))


def loss_gradient_error(network: Network, Z_L, A_L, T, E_A_L, u: float, flush: float = 0.0) -> np.ndarray:
    """``E`` of the loss gradient ``dA_L`` (``dZ_L`` when fused) ``= c g(A_L, T)``, (N, K).

    ``c (lip E_A_L + u (|g| + |A_L| + |T|) + LOG_DOMAIN_ULPS u d + lip sub(T)) + fl(c g)``, g
    Lipschitz in A with constant ``lip``; ``d`` what a reference that goes through the log domain adds
    (:data:`LOG_DOMAIN_GRADIENT`, bce: ``max(|Z|, 1) (|1 - T| sigmoid(Z) + |T| sigmoid(-Z))``, 0 for
    the others); a subnormal target may be read as 0, and a result below the normal range flushed.
    """
    loss = LOSSES[network.loss]
    Z_L, A_L, T = (np.asarray(a, np.float64) for a in (Z_L, A_L, T))
    c = loss.scale(*Z_L.shape, network.reduction)
    g = np.abs(loss.grad(Z_L, A_L, T))
    lip = GRAD_LIPSCHITZ.get(network.loss, 1.0)
    E = lip * E_A_L + u * (g + np.abs(A_L) + np.abs(T))
    if network.loss in LOG_DOMAIN_GRADIENT:
        E = E + LOG_DOMAIN_ULPS * u * LOG_DOMAIN_GRADIENT[network.loss](Z_L, A_L, T)
    return c * (E + lip * _subnormal(np.abs(T), flush)) + _flushable(c * g, flush)


def _reciprocal_error(x: np.ndarray, e: np.ndarray, U: float) -> np.ndarray:
    """How far ``1/x`` may be off when x is known to within ``e`` and the division rounds by ``U``.

    ``e / (x (x - e)) + U / x`` for ``x > e`` (the largest change of 1/x over [x - e, x + e], and one
    rounding); ``inf`` where ``x <= e``: there a reference may divide by 0.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > e, e / (x * (x - e)) + U / x, np.inf)


def unfused_gradient_error(network: Network, Z_L, A_L, T, dA_L, E_A_L, u: float,
                           flush: float = 0.0) -> np.ndarray:
    """``E`` of a fused loss's ``dA_L``, the loss differentiated as a function of A (N, K).

    A reference computes it from A_L itself, so A_L's error ``e = E_A_L`` is amplified by
    the reciprocals (:func:`_reciprocal_error`, ``r(x) = e / (x (x - e)) + ULPS u / x``)::

        bce    dA = c (−T/A + (1 − T)/(1 − A))   E = c (|T| r(A) + |1 − T| r(1 − A)) + ULPS u |dA| + fl(dA)
        CE     dA = −c T/A                       E = c |T| r(A) + ULPS u |dA| + fl(dA)

    (``1 − A`` itself is exact near 1). The engine takes the reciprocals from the logits,
    ``1 + exp(∓Z)``, whose error from ``E_Z`` (relative ``A E_Z`` for bce's second term) is
    within ``r``, as ``E_A`` holds ``|σ'| E_Z``. A term of weight 0 adds nothing; ``inf``
    where the output is within its error of the pole (``x <= e``): there dA_L cannot be judged.
    """
    loss = LOSSES[network.loss]
    Z_L, A_L, dA_L, E_A_L = (np.asarray(a, np.float64) for a in (Z_L, A_L, dA_L, E_A_L))
    T = np.asarray(T)
    if T.ndim == 1:
        T = np.eye(A_L.shape[1])[T]
    T = T.astype(np.float64)
    c = loss.scale(*A_L.shape, network.reduction)
    U = ELEMENTWISE_ULPS * u
    E = np.where(T != 0, np.abs(T) * _reciprocal_error(A_L, E_A_L, U), 0.0)
    if network.loss == "bce":
        E = E + np.where(T != 1, np.abs(1 - T) * _reciprocal_error(1 - A_L, E_A_L, U), 0.0)
    return c * E + U * np.abs(dA_L) + _flushable(dA_L, flush)


def activation_backward_error(name: str, Z, A, dA, E_dA, E_A, u: float, flush: float = 0.0) -> np.ndarray:
    """``E_dZ`` of ``dZ = dA * act'(Z)`` from the errors of dA and of A (through act'), all (N, n).

    Elementwise: ``|act'| E_dA + |dA| |act'(Z, A + E_A) - act'(Z, A)| + ULPS u |dA act'| + fl(dZ)``
    (the middle term is how far the derivative moves with A's own error; 0 for relu, identity),
    and ``+ LOG_DOMAIN_ULPS u f(Z) |dZ|`` for a derivative a reference takes in the log domain
    (:data:`LOG_DOMAIN_DERIVATIVE`). Softmax, ``dZ = A (dA - s)`` with ``s = sum_k dA_k A_k``:
    ``|A| (E_dA + E_s) + E_A (|dA| + |s|) + (gamma(n) + ULPS u) |A| (|dA| + |s|) + fl(dZ)``,
    ``E_s`` with a flush for each of its products that is not 0.
    """
    act = ACTIVATIONS[name]
    Z, A, dA = (np.asarray(a, np.float64) for a in (Z, A, dA))
    if act.derivative is not None:
        d = act.derivative(Z, A)
        d_moved = np.abs(act.derivative(Z, A + E_A) - d)
        E = (E_dA * np.abs(d) + np.abs(dA) * d_moved + ELEMENTWISE_ULPS * u * np.abs(dA * d)
             + _flushable(dA * d, flush))
        if name in LOG_DOMAIN_DERIVATIVE:
            E = E + LOG_DOMAIN_ULPS * u * LOG_DOMAIN_DERIVATIVE[name](Z) * np.abs(dA * d)
        return E
    s = np.abs(dA * A).sum(axis=1, keepdims=True)
    E_s = ((np.abs(A) * E_dA + np.abs(dA) * E_A).sum(axis=1, keepdims=True)
           + flush * (dA * A != 0).sum(axis=1, keepdims=True))
    n = Z.shape[1]
    return (np.abs(A) * (E_dA + E_s) + E_A * (np.abs(dA) + s)
            + (gamma(n, u) + ELEMENTWISE_ULPS * u) * np.abs(A) * (np.abs(dA) + s)
            + _flushable(A * (dA - (dA * A).sum(axis=1, keepdims=True)), flush))


def linear_backward_error(A_prev, E_A_prev, W, dZ, E_dZ, u: float,
                          flush: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(E_dW, E_db, E_dA_prev)`` of ``dW = A_prev.T @ dZ``, ``db = dZ.sum(0)``, ``dA_prev = dZ @ W.T``.

    A_prev (N, n_in), W (n_in, n_out), dZ (N, n_out)::

        E_dW      = gamma(N) |A_prev|.T @ |dZ| + |A_prev|.T @ E_dZ + E_A_prev.T @ |dZ|     (n_in, n_out)
        E_db      = gamma(N) sum_rows |dZ| + sum_rows E_dZ                                  (n_out,)
        E_dA_prev = gamma(n_out) |dZ| @ |W|.T + E_dZ @ |W|.T                                (N, n_in)

    and with a flush range ``m flush``, m the products (terms, for db) of each sum that are not
    exactly 0, each of which may be flushed (``+ |dZ| @ sub(W).T`` for dA_prev: a subnormal weight
    read as 0); a sum of exact zeros cannot move.
    """
    A_prev, absW, dZ_abs = _abs(A_prev), _abs(W), _abs(dZ)
    N, n_out = dZ_abs.shape
    E_dW = gamma(N, u) * (A_prev.T @ dZ_abs) + A_prev.T @ E_dZ + np.asarray(E_A_prev).T @ dZ_abs
    E_db = gamma(N, u) * dZ_abs.sum(axis=0) + E_dZ.sum(axis=0)
    E_dA_prev = gamma(n_out, u) * (dZ_abs @ absW.T) + E_dZ @ absW.T
    if flush:
        E_dW = E_dW + flush * _flushable_products(A_prev.T, dZ_abs, flush)
        m_db = _flushable_products(np.ones((1, N)), dZ_abs, flush)
        E_db = E_db + flush * (m_db[0] if np.ndim(m_db) else m_db)
        E_dA_prev = E_dA_prev + flush * _flushable_products(dZ_abs, absW.T, flush) + dZ_abs @ _subnormal(absW, flush).T
    return E_dW, E_db, E_dA_prev


def norm_forward_error(Z, E_Z, N, scale, shift, inv_std, axis: int, u: float,
                       flush: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(E_N, E_S, E_inv)`` of a norm over ``axis`` of length m (batch norm: 0, the N samples; layer norm: 1).

    Z, N (N, n); ``scale``, ``shift`` the layer's gamma, beta (n,); inv_std as the kernel returns it. With ``C = Z - mu`` and means over
    the axis (``mean|x|`` written ``<|x|>``)::

        E_mu  = gamma(m) <|Z|> + <E_Z>                      the mean, a sum of m terms
        E_C   = E_Z + E_mu + u |C|
        E_var = gamma(m) <C²> + 2 <|C| E_C> + u <C²>         a sum of m squares
        E_inv = inv (E_var / (2 (var + eps)) + ULPS u)     1/sqrt, relative error halved
        E_N   = inv E_C + |C| E_inv + u |N|
        E_S   = |gamma| E_N + 2u |gamma N| + u |S|           (+ fl for each result below the normal range)
    """
    Z, N = np.asarray(Z, np.float64), np.asarray(N, np.float64)
    inv = np.asarray(inv_std, np.float64)
    inv = inv[None, :] if axis == 0 else inv
    m = Z.shape[axis]
    mean = lambda a: np.mean(a, axis=axis, keepdims=True)  # noqa: E731
    C = Z - mean(Z)
    E_mu = gamma(m, u) * mean(np.abs(Z)) + mean(E_Z)
    E_C = E_Z + E_mu + u * np.abs(C)
    var_eps = 1 / (inv * inv)
    E_var = (gamma(m, u) + u) * mean(C * C) + 2 * mean(np.abs(C) * E_C)
    E_inv = inv * (E_var / (2 * var_eps) + ELEMENTWISE_ULPS * u)
    E_N = inv * E_C + np.abs(C) * E_inv + u * np.abs(N) + _flushable(N, flush)
    g = _abs(scale)
    S = g * N + _abs(shift)
    E_S = g * E_N + 2 * u * np.abs(g * N) + u * S + _flushable(np.asarray(scale, np.float64) * N + shift, flush)
    return E_N, E_S, E_inv[0] if axis == 0 else E_inv


def norm_backward_error(N, E_N, scale, inv_std, E_inv, dS, E_dS, axis: int, u: float,
                        flush: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(E_dgamma, E_dbeta, E_dN, E_dZ)`` of the norm's backward, the sums of dgamma and dbeta over the N
    samples, those of dZ over ``axis`` (length m)::

        E_dbeta  = gamma(N) sum|dS| + sum E_dS
        E_dgamma = gamma(N) sum|dS N| + sum (E_dS |N| + |dS| E_N)
        E_dN     = |gamma| E_dS + u |dN|
        dZ = inv (dN - <dN> - N <dN N>):   M = |dN| + <|dN|> + |N| <|dN N|>
        E_dZ     = inv (gamma(m) (<|dN|> + |N| <|dN N|>) + ULPS u M + E_dN + <E_dN>
                        + E_N <|dN N|> + |N| <E_dN |N| + |dN| E_N>) + E_inv M     (+ fl)
    """
    N, dS = np.asarray(N, np.float64), np.asarray(dS, np.float64)
    inv = np.asarray(inv_std, np.float64)
    inv = inv[None, :] if axis == 0 else inv
    E_inv = np.asarray(E_inv, np.float64)
    E_inv = E_inv[None, :] if axis == 0 else E_inv
    n_rows, m = N.shape[0], N.shape[axis]
    mean = lambda a: np.mean(a, axis=axis, keepdims=True)  # noqa: E731
    E_dbeta = gamma(n_rows, u) * np.abs(dS).sum(axis=0) + E_dS.sum(axis=0)
    E_dgamma = gamma(n_rows, u) * np.abs(dS * N).sum(axis=0) + (E_dS * np.abs(N) + np.abs(dS) * E_N).sum(axis=0)
    g = _abs(scale)
    dN = np.asarray(scale, np.float64) * dS
    E_dN = g * E_dS + u * np.abs(dN) + _flushable(dN, flush)
    adN = np.abs(dN)
    M = adN + mean(adN) + np.abs(N) * mean(np.abs(dN * N))
    E_dZ = (inv * (gamma(m, u) * (mean(adN) + np.abs(N) * mean(np.abs(dN * N))) + ELEMENTWISE_ULPS * u * M
                   + E_dN + mean(E_dN) + E_N * mean(np.abs(dN * N)) + np.abs(N) * mean(E_dN * np.abs(N) + adN * E_N))
            + E_inv * M)
    if flush:
        E_dbeta = E_dbeta + flush * (dS != 0).sum(axis=0)
        E_dgamma = E_dgamma + flush * (dS * N != 0).sum(axis=0)
        E_dZ = E_dZ + flush * m * inv
    return E_dgamma, E_dbeta, E_dN, E_dZ


# --- composed -----------------------------------------------------------------------------------

def error_scales(network: Network, params: Mapping[str, np.ndarray], trace: Mapping[str, np.ndarray],
                 T: np.ndarray) -> dict[str, np.ndarray]:
    """``E`` for every tensor of a run: the rounding error one correct implementation may carry.

    The steps above, forward then backward, in float64 from the engine's trace
    (its values stand in for the exact ones), with the dtype's unit roundoff and
    flush range. Shapes match the trace; ``E["L"]`` is 0-d.
    """
    return _composed(network, params, trace, T, UNIT_ROUNDOFF[network.dtype], FLUSH[network.dtype])


def flush_scales(network: Network, params: Mapping[str, np.ndarray], trace: Mapping[str, np.ndarray],
                 T: np.ndarray) -> dict[str, np.ndarray]:
    """The part of :func:`error_scales` that flushing alone explains: the same steps with ``u = 0``.

    How far a reference that flushes values below the smallest normal number to 0
    (and reads subnormal operands as 0) may be from an exact run, every such
    difference carried through the products that follow; ``E >= F`` everywhere.
    """
    return _composed(network, params, trace, T, 0.0, FLUSH[network.dtype])


def _composed(network: Network, params: Mapping[str, np.ndarray], trace: Mapping[str, np.ndarray],
              T: np.ndarray, u: float, flush: float) -> dict[str, np.ndarray]:
    L = network.depth
    E: dict[str, np.ndarray] = {"X": _subnormal(_abs(trace["X"]), flush), "Y": np.zeros(np.shape(trace["Y"]))}
    A_prev, E_prev = trace["X"], E["X"]
    for l in range(1, L + 1):
        E_Z = linear_forward_error(A_prev, E_prev, params[f"W{l}"], params[f"b{l}"], u, flush)
        E[f"Z{l}"] = E_in = E_Z
        if network.normed(l):
            E[f"N{l}"], E[f"S{l}"], E[f"inv{l}"] = norm_forward_error(
                trace[f"Z{l}"], E_Z, trace[f"N{l}"], params[f"gamma{l}"], params[f"beta{l}"],
                _inv_std(network, params, trace, l), NORMS[network.norm(l)].axis, u, flush)
            E_in = E[f"S{l}"]
        E_A = activation_error(network.activations[l - 1], trace[network.pre_activation(l)], trace[f"A{l}"], E_in,
                               u, flush)
        E[f"A{l}"] = E_A
        A_prev, E_prev = trace[f"A{l}"], E_A

    Z_L, A_L = trace[f"Z{L}"], trace[f"A{L}"]
    E["L"] = loss_error(network, Z_L, A_L, T, E[f"A{L}"], E[f"Z{L}"], u, flush)
    if network.regularized:
        E["L_data"], E["L_reg"] = E["L"], l2_penalty_error(network, params, u, flush)
        E["L"] = E["L_data"] + E["L_reg"] + u * (abs(float(trace["L_data"])) + abs(float(trace["L_reg"])))
    E_top = loss_gradient_error(network, Z_L, A_L, T, E[f"A{L}"], u, flush)
    fused = LOSSES[network.loss].fused_with is not None
    E_dA = E_top
    for l in range(L, 0, -1):
        if l < L or not fused:
            E[f"dA{l}"] = E_dA
            E_dZ = activation_backward_error(network.activations[l - 1], trace[network.pre_activation(l)],
                                             trace[f"A{l}"], trace[f"dA{l}"], E_dA, E[f"A{l}"], u, flush)
            if network.normed(l):
                E[f"dS{l}"] = E_dZ
                E[f"dgamma{l}"], E[f"dbeta{l}"], E[f"dN{l}"], E_dZ = norm_backward_error(
                    trace[f"N{l}"], E[f"N{l}"], params[f"gamma{l}"], _inv_std(network, params, trace, l),
                    E.pop(f"inv{l}"), trace[f"dS{l}"], E_dZ, NORMS[network.norm(l)].axis, u, flush)
        else:
            E_dZ = E_top  # the fused loss gives dZ_L directly
            with np.errstate(invalid="ignore", over="ignore"):  # inf where dA_L cannot be judged (checking says so)
                E[f"dA{l}"] = unfused_gradient_error(network, Z_L, A_L, T, trace[f"dA{l}"], E[f"A{l}"], u, flush)
        A_prev = trace[f"A{l - 1}"] if l > 1 else trace["X"]
        E_A_prev = E[f"A{l - 1}"] if l > 1 else E["X"]
        E[f"dZ{l}"] = E_dZ
        E[f"dW{l}"], E[f"db{l}"], E_dA = linear_backward_error(A_prev, E_A_prev, params[f"W{l}"],
                                                               trace[f"dZ{l}"], E_dZ, u, flush)
        if network.regularized:
            E[f"dW{l}"] = E[f"dW{l}"] + l2_gradient_error(network, params[f"W{l}"], trace[f"dW{l}"], u, flush)
            if network.l2_biases:
                E[f"db{l}"] = E[f"db{l}"] + l2_gradient_error(network, params[f"b{l}"], trace[f"db{l}"], u, flush)
    E["dX"] = E_dA
    return E


def _inv_std(network: Network, params, trace, l: int) -> np.ndarray:
    """Layer l's ``1/sqrt(var + eps)`` in float64, from its Z in the trace."""
    Z = np.asarray(trace[f"Z{l}"], np.float64)
    return NORMS[network.norm(l)].forward(Z, np.ones(Z.shape[1]), np.zeros(Z.shape[1]), network.eps)[2]


def l2_penalty_error(network: Network, params: Mapping[str, np.ndarray], u: float, flush: float = 0.0) -> np.ndarray:
    """``E`` (0-d) of ``L_reg = f λ Σ w²`` over the n regularised entries (parameters exact).

    ``(gamma(n) + 3u) L_reg``: each square and the two scalings round once, the sum of n squares by
    gamma(n); with a flush range, ``f λ flush`` for each square that is not 0 (a square below the
    smallest normal number may be flushed) and the result's own ``fl(L_reg)``.
    """
    names = network.l2_names()
    squares = np.concatenate([np.square(_abs(params[n])).ravel() for n in names]) if names else np.zeros(0)
    f = network.l2_factor
    value = f * float(squares.sum())
    E = (gamma(squares.size, u) + 3 * u) * value
    if flush:
        E = E + f * flush * float(np.count_nonzero(squares)) + float(_flushable(value, flush))
    return np.asarray(E)


def l2_gradient_error(network: Network, W, total, u: float, flush: float = 0.0) -> np.ndarray:
    """What adding ``g = 2 f λ W`` to the data gradient adds to its ``E``; W and ``total`` (the sum) same shape.

    The product rounds once (``u |g|``), the sum once (``u (|total| + |g|)``, bounding the data
    gradient's magnitude by ``|total| + |g|``), and a ``g`` below the normal range may be flushed.
    """
    g = 2 * network.l2_factor * _abs(W)
    return u * (2 * g + _abs(total)) + _flushable(g, flush)


def layer_error_scales(activation: str, x: np.ndarray, params: Mapping[str, np.ndarray],
                       values: Mapping[str, np.ndarray], dtype: str,
                       norm_axis: int | None = None) -> dict[str, np.ndarray]:
    """``E`` of one layer ``out = act(x @ W + b)`` (or ``act(x)`` when ``params`` is empty).

    x (N, n_in), W (n_in, n_out), b (n_out,) and the upstream ``dout`` (N, n_out)
    are exact inputs (E = 0, but for subnormal values, which a reference may read
    as 0). ``values`` holds the layer's float64 ``Z``, ``out``, ``dout`` and ``dZ``.
    Returns ``E`` for ``Z``, ``out``, ``dZ``, ``dx`` and, with parameters, ``dW``,
    ``db``: the same steps as :func:`error_scales`. With ``norm_axis`` (a batch norm: 0, a layer norm: 1)
    the activation reads ``S = gamma * N + beta`` (``values`` holds ``N``, ``S``, ``dS``, ``inv_std``,
    ``params`` ``gamma``, ``beta``), and ``E`` has ``dgamma``, ``dbeta`` too
    (:func:`norm_forward_error`, :func:`norm_backward_error`).
    """
    u, flush = UNIT_ROUNDOFF[dtype], FLUSH[dtype]
    E_x = _subnormal(_abs(x), flush)
    E_dout = _subnormal(_abs(values["dout"]), flush)
    linear = "W" in params
    E = {"Z": linear_forward_error(x, E_x, params["W"], params["b"], u, flush) if linear else E_x}
    pre, E_pre = values["Z"], E["Z"]
    if norm_axis is not None:
        _, E_S, E_inv = norm_forward_error(values["Z"], E["Z"], values["N"], params["gamma"], params["beta"],
                                           values["inv_std"], norm_axis, u, flush)
        pre, E_pre = values["S"], E_S
    E["out"] = activation_error(activation, pre, values["out"], E_pre, u, flush)
    E["dZ"] = activation_backward_error(activation, pre, values["out"], values["dout"], E_dout, E["out"], u, flush)
    if norm_axis is not None:
        E_N = norm_forward_error(values["Z"], E["Z"], values["N"], params["gamma"], params["beta"],
                                 values["inv_std"], norm_axis, u, flush)[0]
        E["dgamma"], E["dbeta"], _, E["dZ"] = norm_backward_error(values["N"], E_N, params["gamma"],
                                                                  values["inv_std"], E_inv, values["dS"], E["dZ"],
                                                                  norm_axis, u, flush)
    if linear:
        E["dW"], E["db"], E["dx"] = linear_backward_error(x, E_x, params["W"], values["dZ"], E["dZ"], u, flush)
    else:
        E["dx"] = E["dZ"]
    return E


def per_sample_error_scales(network: Network, trace: Mapping[str, np.ndarray],
                            E: Mapping[str, np.ndarray], *, u: float | None = None,
                            flush: float | None = None) -> dict[str, np.ndarray]:
    """Rounding scales for the per-sample names, from ``E`` of the batch trace.

    Each element is one product ``A(l-1)[i, j] * dZl_ps[i, k]`` (no sum), so its
    error is the operands' errors carried through the product plus one rounding
    (and a flush, where the product is below the normal range)::

        E[dWl_per_sample][i] = (|A(l-1)[i]| ⊗ E_dZl[i] + E_A(l-1)[i] ⊗ |dZl[i]|) / c + u |dWl_per_sample[i]| + fl
        E[dbl_per_sample][i] = E_dZl[i] / c                                   shapes (N, n_{l-1}, n_l), (N, n_l)

    ``u`` and ``flush`` default to the dtype's (``u = 0``: the flush part alone, with :func:`flush_scales`).
    """
    u = UNIT_ROUNDOFF[network.dtype] if u is None else u
    flush = FLUSH[network.dtype] if flush is None else flush
    inverse_c = 1 / normalisation(network, trace["X"].shape[0])
    out = {}
    for l in range(1, network.depth + 1):
        A_prev = _abs(trace[f"A{l - 1}"] if l > 1 else trace["X"])
        E_A_prev = E[f"A{l - 1}"] if l > 1 else E["X"]
        dZ_ps, E_dZ_ps = _abs(trace[f"dZ{l}"]) * inverse_c, E[f"dZ{l}"] * inverse_c
        product = np.einsum("ni,nj->nij", A_prev, dZ_ps)
        out[f"dW{l}_per_sample"] = (np.einsum("ni,nj->nij", A_prev, E_dZ_ps)
                                    + np.einsum("ni,nj->nij", E_A_prev, dZ_ps)
                                    + u * product + _flushable(product, flush))
        out[f"db{l}_per_sample"] = E_dZ_ps
    return out


def next_error_scales(network: Network, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
                      E: Mapping[str, np.ndarray], lr: float, *, u: float | None = None,
                      flush: float | None = None) -> dict[str, np.ndarray]:
    """Rounding scales for ``Wl_next``, ``bl_next`` (the parameters' shapes) from ``E`` of the gradients.

    ``W - lr*dW`` carries lr times the gradient's error, plus one rounding for
    the product and one for the difference (a fused multiply-add saves one),
    each of which may also be flushed below the normal range::

        E[Wl_next] = lr * E_dWl + u * (lr * |dWl| + |Wl - lr * dWl|) + fl(lr dWl) + fl(Wl - lr dWl)

    Magnitudes beyond float64 come out as Inf, quietly (the checker reports an
    overflowing step as an input error). ``u`` and ``flush`` default to the dtype's.
    """
    u = UNIT_ROUNDOFF[network.dtype] if u is None else u
    flush = FLUSH[network.dtype] if flush is None else flush
    out = {}
    with np.errstate(over="ignore", invalid="ignore"):
        for name in network.parameter_shapes():
            p = np.asarray(params[name], np.float64)
            g = np.asarray(grads[f"d{name}"], np.float64)
            out[f"{name}_next"] = (lr * E[f"d{name}"] + u * (lr * np.abs(g) + np.abs(p - lr * g))
                                   + _flushable(lr * g, flush) + _flushable(p - lr * g, flush))
    return out


def trajectory_error_scales(per_step: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Rounding scales for the parameters and state after k steps, from each step's own scales.

    Step j's scales (:func:`step_error_scales`, from the parameters step j started from) say what
    one step adds; carried forward through the steps after it with a factor of about one (a step
    that converges shrinks an earlier error, one that diverges is a learning rate the frameworks
    disagree about as well), the scale after k steps is their sum::

        E[Wl_next after k steps] = E_1[Wl_next] + E_2[Wl_next] + ... + E_k[Wl_next]
    """
    out: dict[str, np.ndarray] = {}
    for scales in per_step:
        for name, E in scales.items():
            out[name] = out[name] + E if name in out else np.asarray(E, np.float64)
    return out


def step_error_scales(network: Network, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
                      E: Mapping[str, np.ndarray], step, *, u: float | None = None,
                      flush: float | None = None) -> dict[str, np.ndarray]:
    """Rounding scales for ``Wl_next``, ``bl_next`` and the optimiser's new state, from ``E`` of the gradients.

    ``step`` is an :class:`~manual_backprop.description.optimizer.OptimizerStep`; the parameters and the
    given state are exact. Element by element, each operation adds ``u`` times its result's magnitude
    (``ELEMENTWISE_ULPS u`` for the constants, squares, roots and quotients, whose order of rounding
    differs between implementations), and each input's error is carried by the operation's derivative::

        sgd                E[W'] = lr E_g + u (lr |g| + |W'|)                            (next_error_scales)
        momentum (buffer)  E[v'] = E_g + u (mu |v| + |v'|);        E[W'] = lr E[v'] + u (lr |v'| + |W'|)
        momentum (velocity)E[v'] = lr E_g + U (mu |v| + lr |g| + |v'|);  E[W'] = E[v'] + u |W'|
        rmsprop            E[v'] = 2 (1 - rho) |g| E_g + U (rho |v| + (1 - rho) g² + |v'|)
                           d = sqrt(v') + eps:  E_d = E[v'] / (2 sqrt(v')) + U sqrt(v')
                           q = g / d:  E_q = E_g / d + |g| E_d / d² + U |q|;     E[W'] = lr E_q + u (lr |q| + |W'|)
        adam               E[m'] = (1 - b1) E_g + U (b1 |m| + (1 - b1) |g| + |m'|);  E[v'] as rmsprop's with b2;
                           m^ = m' / c1, v^ = v' / c2 (c = 1 - b**(t+1)): E / c + U |.|;  then d, q, W' as rmsprop's
                           with m^ for g and v^ for v'

    (``U = ELEMENTWISE_ULPS u``), and a result below the normal range may be flushed.
    """
    u = UNIT_ROUNDOFF[network.dtype] if u is None else u
    flush = FLUSH[network.dtype] if flush is None else flush
    if step.rule == "sgd":
        return next_error_scales(network, params, grads, E, step.learning_rate, u=u, flush=flush)
    U, lr, c = ELEMENTWISE_ULPS * u, step.learning_rate, step.constants
    out = {}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for name in network.parameter_shapes():
            P = np.asarray(params[name], np.float64)
            g, E_g = np.asarray(grads[f"d{name}"], np.float64), np.asarray(E[f"d{name}"], np.float64)
            s = {k: np.asarray(v, np.float64) for k, v in step.state_of(name, P).items()}
            new = {}
            if step.rule == "momentum":
                v = c["momentum"] * s["v"] + g
                new["v"] = E_g + u * (c["momentum"] * np.abs(s["v"]) + np.abs(v))
                W = P - lr * v
                E_W = lr * new["v"] + u * (lr * np.abs(v) + np.abs(W))
                values = {"v": v}
            elif step.rule == "momentum_velocity":
                v = c["momentum"] * s["v"] - lr * g
                new["v"] = lr * E_g + U * (c["momentum"] * np.abs(s["v"]) + lr * np.abs(g) + np.abs(v))
                W = P + v
                E_W = new["v"] + u * np.abs(W)
                values = {"v": v}
            else:  # rmsprop, adam: a quotient of a (first moment) and the root of a second moment
                rho = c["decay"] if step.rule == "rmsprop" else c["beta2"]
                v = rho * s["v"] + (1 - rho) * g * g
                new["v"] = 2 * (1 - rho) * np.abs(g) * E_g + U * (rho * s["v"] + (1 - rho) * g * g + v)
                values = {"v": v}
                if step.rule == "rmsprop":
                    top, E_top, bottom, E_bottom = g, E_g, v, new["v"]
                else:
                    b1, t = c["beta1"], step.t + 1
                    m = b1 * s["m"] + (1 - b1) * g
                    new["m"] = (1 - b1) * E_g + U * (b1 * np.abs(s["m"]) + (1 - b1) * np.abs(g) + np.abs(m))
                    values["m"] = m
                    c1, c2 = 1 - b1 ** t, 1 - rho ** t
                    top, bottom = m / c1, v / c2
                    E_top, E_bottom = new["m"] / c1 + U * np.abs(top), new["v"] / c2 + U * bottom
                root = np.sqrt(bottom)
                d = root + c["eps"]
                E_d = np.where(root > 0, E_bottom / (2 * root), np.sqrt(E_bottom)) + U * root
                q = top / d
                E_q = E_g / d if step.rule == "rmsprop" else E_top / d
                E_q = E_q + np.abs(top) * E_d / (d * d) + U * np.abs(q)
                W = P - lr * q
                E_W = lr * E_q + u * (lr * np.abs(q) + np.abs(W))
            out[f"{name}_next"] = E_W + _flushable(W, flush)
            for k, E_k in new.items():
                out[f"{k}{name}_next"] = E_k + _flushable(values[k], flush)
    return out


def finite_difference_error(truncation: float, E_L: float, step: float) -> float:
    """How far a float64 finite-difference estimate may be from the derivative it estimates.

    ``truncation`` is Richardson's spread ``|D2 - D1| / 3``; ``E_L`` the rounding of one float64
    loss evaluation (:func:`loss_error` in float64: the magnitudes of the terms summed and of what
    enters them, not ``|L|``); ``step`` the h the evaluations are differenced over::

        PROJECTION_ERROR_FACTOR * (truncation + RICHARDSON_ROUNDING * K * E_L / h)
    """
    return PROJECTION_ERROR_FACTOR * (truncation + RICHARDSON_ROUNDING * K * E_L / step)


def projection_tolerance(E_dot: float, G_dot: float, n: int, truncation: float, E_L: float,
                         step: float) -> float:
    """The most ``<G, v>`` (G of n elements) may differ from a float64 finite-difference estimate of it.

    ``E_dot = <E, |v|>`` is the engine's own rounding along v, ``G_dot = <|G|, |v|>``
    the magnitude of the float64 dot product; the estimate carries its own error,
    :func:`finite_difference_error` (its truncation, and the rounding ``E_L`` of the loss
    evaluations it differences over the step)::

        tol = K * E_dot + K * sqrt(n) * u64 * G_dot + finite_difference_error + FLOOR[float64]
    """
    u = UNIT_ROUNDOFF["float64"]
    return (K * E_dot + K * float(np.sqrt(n)) * u * G_dot + finite_difference_error(truncation, E_L, step)
            + FLOOR["float64"])


def projection_judges(fd_error: float, resolve: float) -> bool:
    """Whether an estimate with error ``fd_error`` can tell a right projection of size ``resolve`` from a wrong one.

    ``fd_error <= PROJECTION_RESOLUTION * resolve``; otherwise the direction is not judged
    (the reference's own inaccuracy is not the engine's error, nor its agreement).
    """
    return fd_error <= PROJECTION_RESOLUTION * resolve


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
