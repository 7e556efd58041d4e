"""The framework-free reference: float64 central differences along random directions.

For a gradient ``G = dL/dT`` of any named tensor T (a parameter, the input, or
an intermediate Z or A), and a random unit direction v::

    <G, v>  ~  (L(T + h v) - L(T - h v)) / 2h

Steps h and h/2 are combined by Richardson extrapolation, whose spread also
estimates the truncation error: four forward passes per direction, whatever
the size of T, so a few random directions check a tensor of hundreds of
thousands of entries as cheaply as a small one. The forward pass is the
engine's, run in float64 (a float32 case is cast explicitly for this
reference only); it differentiates the loss with respect to an intermediate
tensor by adding the perturbation as the tensor is made.

**The step.** It starts at ``RELATIVE_STEP`` times the size of T (at least
1), and is cut, from what the first evaluation at ``+h`` shows, when

- it would cross a ReLU kink on either side: a central difference across a
  kink returns part of one slope and part of the other, which no convention
  gives. The pre-activations of a kinked layer move about linearly with the
  step (exactly, in the first kinked layer the target feeds, while no mask
  changes), by ``|Z(+h) - Z|``: a unit whose ``Z`` lies ``gap`` from the kink
  reaches it at the step ``h gap / |Z(+h) - Z|``, and the least of these is the
  *reach*, the largest step that crosses no kink. The step becomes
  ``KINK_SAFETY`` times the reach, and that first evaluation is the only one
  spent (five passes in all, against four); each evaluation also checks the
  masks themselves, and a step that crossed after all (a deeper layer, whose
  Z is only about linear) is cut again, up to ``ATTEMPTS`` times;
- it moves some pre-activation by more than ``MAX_MOVE``: beyond that the
  difference leaves the regime where Richardson's spread measures its
  truncation (a logit of 1e4 perturbed by 1e4 x RELATIVE_STEP).

A direction whose reach is 0 (a unit exactly at the kink that the direction
moves), or that still crosses a kink after ``ATTEMPTS`` tries, is marked
``at_kink``; it is not judged. Nor is one whose perturbed loss is not finite
(``overflow``: parameters near the float64 maximum, moved by a step relative
to their size); the evaluations run with NumPy's warnings off. A direction judged at a very small step
carries a large rounding error (the loss evaluations' rounding, divided by
the step): how large is reported as magnitudes, and the comparator
(:func:`manual_backprop.compare.compare_projections`) decides whether the
estimate can still tell a right gradient from a wrong one, or cannot judge it.

How far the estimate may be off is reported as magnitudes, never as a
tolerance: the truncation estimate ``|D2 - D1| / 3`` and the step ``h``. The
rounding of one loss evaluation is the tolerance policy's own ``E_L`` (the
magnitudes of the terms summed and of what enters them), applied by the
comparator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..description.case import Case, cast_arrays
from ..description.network import layer_of
from ..engine.trace import forward
from ..kernels import ACTIVATIONS, LOSSES
from ..kernels.losses import one_hot

#: Random directions per tensor.
DIRECTIONS = 2
#: Step, relative to the root-mean-square size of the tensor (or 1, if larger).
RELATIVE_STEP = 1e-3
#: The step taken, as a fraction of the largest step that crosses no kink (the pre-activations move only
#: about linearly with it).
KINK_SAFETY = 0.5
#: The most one step may move any pre-activation: beyond it the difference's truncation is not measured.
MAX_MOVE = 1e-2
#: Tries at a smaller step per direction, before it is given up as crossing a kink.
ATTEMPTS = 4
#: A step this many times smaller than the first is not tried: the direction is at a kink.
SMALLEST_STEP = 1e-12
#: dA_L of a fused loss: the step moves no weighted output by more than this fraction of its distance to
#: the pole (A = 0, or 1), where the loss written from A is singular.
POLE_SAFETY = 0.1


@dataclass(frozen=True)
class Projection:
    """One directional derivative: ``<G, direction>`` is estimated as ``estimate``.

    ``truncation`` is the Richardson spread ``|D2 - D1| / 3``; ``step`` the h
    of the differences; ``reach`` the largest step that crosses no ReLU kink
    (inf without kinks); ``at_kink`` True when no step could be found that
    crosses none (then ``estimate`` is NaN); ``evaluations`` the forward passes spent.
    ``overflow``: some evaluation's loss was not finite (the step took a parameter or a value beyond
    float64); then ``estimate`` is NaN and the direction judges nothing.
    ``flat``: every evaluation gave exactly the unperturbed loss, though the
    step changed every entry it moves: the loss does not depend on T along
    the direction at all (a dead ReLU layer, a saturated sigmoid), so the
    derivative is exactly 0, not 0 within noise.
    """

    direction: np.ndarray
    estimate: float
    truncation: float
    step: float
    at_kink: bool
    reach: float = float("inf")
    evaluations: int = 4
    flat: bool = False
    overflow: bool = False


def target_of(grad_name: str) -> str:
    """The tensor a gradient is taken with respect to: ``dW2`` -> ``W2``, ``dX`` -> ``X``."""
    return grad_name[1:]


def version() -> str:
    return f"numpy {np.__version__} (float64 central differences)"


def run(case: Case, directions: int = DIRECTIONS, seed: int | None = None,
        device: str | None = None) -> dict[str, list[Projection]]:
    """Directional derivatives of the loss for every backward tensor of ``case``."""
    with np.errstate(all="ignore"):  # a perturbed loss that overflows marks its direction, never warns
        return _run(case, directions, seed)


def _run(case: Case, directions: int, seed: int | None) -> dict[str, list[Projection]]:
    net = case.network
    net64 = replace(net, dtype="float64")
    params, X, Y, T = cast_arrays(case, np.float64)
    base = forward(net64, params, X, Y, T)
    kinks = {l: ACTIVATIONS[a].kink for l, a in enumerate(net.activations, start=1)
             if ACTIVATIONS[a].kink is not None}
    pre = {l: net.pre_activation(l) for l in range(1, net.depth + 1)}  # what each activation reads: Zl, or Sl
    gaps = {l: np.abs(base[pre[l]] - k) for l, k in kinks.items()}  # how far each unit is from its kink
    sides = {l: base[pre[l]] > k for l, k in kinks.items()}

    rng = np.random.default_rng([case.seed if seed is None else seed, 2])
    out: dict[str, list[Projection]] = {}
    for grad_name in net.backward_names():
        if net.fused and grad_name == f"dA{net.depth}":  # the fused forward never reads A_L
            own = np.random.default_rng([case.seed if seed is None else seed, 3])  # the others' directions unchanged
            out[grad_name] = [_through_unfused_loss(net64, base, T, own) for _ in range(directions)]
            continue
        target = target_of(grad_name)
        value = params[target] if target in params else (X if target == "X" else base[target])
        # the first layer whose Z the target moves: Wl, bl, Zl -> l; Al -> l + 1; X -> 1
        first = (layer_of(target) or 0) + (1 if target.startswith(("A", "X")) else 0)
        moved = range(max(first, 1), net.depth + 1)
        h0 = RELATIVE_STEP * max(1.0, rms(value))
        projections = []
        for _ in range(directions):
            v = rng.standard_normal(value.shape)
            v /= np.linalg.norm(v)
            p = _directional(net64, params, X, Y, T, base, target, v, h0, moved, gaps, sides, kinks, pre)
            if p.estimate == 0 and p.truncation == 0 and p.flat:
                # the loss never moved: a zero derivative, if the step really moved every entry of v
                half = 0.5 * p.step * v
                moved_all = bool(np.all((value + half != value) | (v == 0)))
                p = replace(p, flat=moved_all)
            projections.append(p)
        out[grad_name] = projections
    return out


def _through_unfused_loss(net64, base, T, rng) -> Projection:
    """One direction of dA_L for a fused loss, through the loss written from A_L (``unfused_terms``).

    The engine's forward computes a fused loss from Z_L, so perturbing A_L there moves nothing;
    dA_L is the derivative of the same loss written as a function of A_L, evaluated at
    ``A_L + t v``. The step keeps every weighted entry ``POLE_SAFETY`` of its way from the pole
    (A = 0, or A = 1 for bce's second term), where the terms' derivatives grow without bound;
    each entry of ``h v`` is rounded to a multiple of twice the spacing of the numbers it is
    added to, so that ``A ± h v`` and ``A ± h v / 2`` are exact and the estimate differentiates
    along exactly ``v`` (the direction returned).
    """
    L = net64.depth
    loss = LOSSES[net64.loss]
    Z, A = base[f"Z{L}"], base[f"A{L}"]
    W = one_hot(T, A.shape[1], A.dtype) if T.ndim == 1 else T
    dist = np.where(W != 0, A, np.inf)
    if net64.loss == "bce":
        dist = np.minimum(dist, np.where(W != 1, 1 - A, np.inf))
    v = rng.standard_normal(A.shape)
    v /= np.linalg.norm(v)
    moving = v != 0
    reach = float((dist[moving] / np.abs(v[moving])).min()) if moving.any() else float("inf")
    h = min(RELATIVE_STEP * max(1.0, rms(A)), POLE_SAFETY * reach)
    delta = h * v
    q = 2 * np.spacing(np.abs(A) + np.abs(delta))
    delta = np.round(delta / q) * q
    c = net64.normaliser(A.shape[0])

    def at(s: float) -> float:
        return float(c * loss.unfused_terms(Z, A + s * delta, T).sum())

    return richardson(delta / h, h, at(1.0), at(-1.0), at(0.5), at(-0.5), at(0.0), reach)


def _directional(net64, params, X, Y, T, base, target, v, h0, moved, gaps, sides, kinks, pre) -> Projection:
    """One direction: find a step that crosses no kink and stays in the asymptotic regime, and difference.

    The first evaluation, at ``+h``, measures how fast every pre-activation
    moves: if a kinked unit would reach its kink within ``h`` on either side
    (or some unit moves by more than ``MAX_MOVE``), ``h`` is cut at once and
    that evaluation is the only one spent; otherwise it is the first of the four.
    """
    evaluations = 0

    def at(t: float, measure: bool = True) -> tuple[float, bool, float, float]:
        """``(L, crossed a kink, reach, move)`` at step t; the perturbed trace is dropped at once (memory).

        Without ``measure`` only the masks are compared (reach and move are inf and 0).
        """
        nonlocal evaluations
        evaluations += 1
        tr = forward(net64, params, X, Y, T, {target: t * v}, reuse=base)
        crossed, reach, move = False, float("inf"), 0.0
        if not measure:
            crossed = any(not np.array_equal(tr[pre[l]] > kinks[l], sides[l]) for l in moved if l in kinks)
            return float(tr["L"]), crossed, reach, move
        for l in moved:
            shift = np.abs(tr[pre[l]] - base[pre[l]])  # how far each unit moved over the step
            move = max(move, float(shift.max()) if shift.size else 0.0)
            if l in kinks:
                crossed = crossed or not np.array_equal(tr[pre[l]] > kinks[l], sides[l])
                reach = min(reach, _reach(shift, abs(t), gaps[l]))
        return float(tr["L"]), crossed, reach, move

    def shorter(h: float, crossed: bool, reach: float, move: float, last: bool) -> float:
        """The step to try instead of h (h itself if h will do)."""
        smaller = h
        if crossed or reach < h:
            smaller = KINK_SAFETY * reach if reach < h else h / 4  # crossed, though the velocity said not
        if move > MAX_MOVE and not last:  # on the last try, a large move is judged as it is
            smaller = min(smaller, 0.5 * h * MAX_MOVE / move)
        return smaller

    h, reach = h0, float("inf")
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        fp, cp, rp, mp = at(h)
        reach = min(reach, rp)
        smaller = shorter(h, cp, rp, mp, last)
        if smaller == h:
            fm, cm, rm, mm = at(-h)
            reach = min(reach, rm)
            smaller = shorter(h, cm, rm, mm, last)
        if smaller < h:
            if not smaller > h0 * SMALLEST_STEP:  # a unit exactly at the kink, moved: no step crosses none
                break
            h = smaller
            continue
        gp, cq, _, _ = at(0.5 * h, measure=False)
        gm, cr, _, _ = at(-0.5 * h, measure=False)
        if cq or cr:  # crossed between the steps (a deeper layer's kink): shrink and try again
            h /= 4
            continue
        return richardson(v, h, fp, fm, gp, gm, float(base["L"]), reach, evaluations)
    return Projection(v, float("nan"), float("nan"), h, True, 0.0 if reach == float("inf") else reach, evaluations)


def richardson(v: np.ndarray, h: float, fp: float, fm: float, gp: float, gm: float, L0: float,
               reach: float = float("inf"), evaluations: int = 4) -> Projection:
    """The directional derivative along ``v`` from the loss at ``±h`` (fp, fm) and ``±h/2`` (gp, gm).

    ``D1 = (fp - fm) / 2h`` and ``D2 = (gp - gm) / h`` are central differences at the two steps;
    Richardson's ``(4 D2 - D1) / 3`` cancels their h² error, and ``|D2 - D1| / 3`` estimates what is
    left. A loss that is not finite at some step judges nothing (``overflow``); one that never moved
    from ``L0`` is ``flat``.
    """
    if not np.isfinite([fp, fm, gp, gm]).all():
        return Projection(v, float("nan"), float("nan"), h, False, reach, evaluations, overflow=True)
    D1 = (fp - fm) / (2 * h)
    D2 = (gp - gm) / h
    flat = fp == fm == gp == gm == L0
    return Projection(v, (4 * D2 - D1) / 3, abs(D2 - D1) / 3, h, False, reach, evaluations, flat)


def _reach(shift: np.ndarray, t: float, gap: np.ndarray) -> float:
    """The largest step along which no unit of a kinked layer reaches its kink.

    Each unit moved by ``shift`` over a step of ``t`` and lies ``gap`` from its
    kink; moving about linearly, it reaches the kink at ``gap / (shift / t)``.
    """
    moving = shift > 0
    if not moving.any():
        return float("inf")
    return float((gap[moving] / shift[moving]).min()) * t


def rms(a: np.ndarray) -> float:
    """Root-mean-square size, scaled first so that squaring values near the float maximum does not overflow."""
    m = float(np.abs(a).max()) if a.size else 0.0
    return m * float(np.sqrt(np.mean((a / m) ** 2))) if m > 0 else 0.0
