"""Replay a derivation: each step recomputed with the right rule from the student's own inputs.

The student's trace holds, for every name, the claimed value where there is
a claim (:func:`~.validation.validate` passes a right claim as the true
value), and otherwise what the right rule makes from the student's earlier
values (so an unwritten ``A2`` is ``identity(Z2)`` of the claimed ``Z2``).
Every value carries a radius: the claim's precision where claimed, and for
a derived value the precision of its inputs carried through the rule
(:func:`spread`).

A wrong claim is then told apart::

    carried   the right rule applied to the claimed inputs gives the claim:
              the step is right, an input was wrong (dZ1 from a wrong dA1)
    own       the claim differs from the rule applied to the true inputs
              (it is wrong) and from the rule applied to the claimed ones

"Applied to the claimed inputs" means to the numbers as written, known no
more loosely than the claim itself is written (:func:`read_as_exact`): a
claim written to 8 decimals was not made from a ``dZ1 = 0.0`` known only to
± 0.05, but from that 0.0 (or from the true dZ1, when 0.0 is right), so an
input written with fewer digits than the claim is read as exact to the
claim's precision. An input written to the claim's precision keeps its
rounding, which a claim computed from the unrounded value carries (dW1 to
8 decimals, made from a dZ1 printed to 8).
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import numpy as np

from ..compare.tolerance import REPLAY_ULPS
from .steps import Step, Values

#: At most this many inputs moved one by one in :func:`spread`; beyond, random sign patterns bound it.
MAX_PROBES = 256
RANDOM_PATTERNS = 8


class _Reads(Mapping):
    """A view of a mapping that records which names were read."""

    def __init__(self, values: Values) -> None:
        self.values, self.names = values, []

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.names:
            self.names.append(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def spread(fn: Callable[[Values], np.ndarray], values: Values, radius: Mapping[str, np.ndarray],
           u: float) -> tuple[np.ndarray, np.ndarray]:
    """``(fn(values), bound)``: how far ``fn`` can move while each input moves within its radius.

    First order, element by element: each input element with a radius above
    rounding is moved by ``+r`` and ``-r`` in turn and the larger change is
    added up, which is exact for the linear rules of backprop and finds a
    ReLU mask that a claim's precision leaves undecided (Z within r of 0).
    """
    with np.errstate(all="ignore"):  # a replay from huge claimed values may overflow: Inf matches no claim
        return _spread(fn, values, radius, u)


def _spread(fn, values, radius, u):
    reads = _Reads(values)
    base = np.asarray(fn(reads), dtype=np.float64)
    bound = np.zeros(base.shape)
    probes = []
    for name in reads.names:
        r = radius.get(name)
        if r is None:
            continue
        v = np.asarray(values[name], dtype=np.float64)
        r = np.broadcast_to(r, v.shape)
        probes += [(name, k, float(r.flat[k])) for k in np.flatnonzero(r > REPLAY_ULPS * u * np.abs(v))]
    if len(probes) <= MAX_PROBES:
        for name, k, r in probes:
            moved = np.zeros(base.shape)
            for sign in (1.0, -1.0):
                w = np.array(values[name], dtype=np.float64)
                w.flat[k] += sign * r
                moved = np.maximum(moved, _change(fn, values, name, w, base))
            bound += moved
        return base, bound
    # Many coarse inputs (a large tensor written to a few decimals): move them all at once, with random
    # signs. For a linear rule each pattern gives |J (r s)|, whose size is about the RMS of the terms
    # of |J| r; Cauchy-Schwarz bounds |J| r by sqrt(count) times that RMS, and 3x covers the randomness.
    rng = np.random.default_rng(0)
    names = sorted({p[0] for p in probes})
    for _ in range(RANDOM_PATTERNS):
        moved = {n: np.asarray(values[n], np.float64)
                 + rng.choice([-1.0, 1.0], np.shape(values[n])) * np.broadcast_to(radius[n], np.shape(values[n]))
                 for n in names}
        bound = np.maximum(bound, np.abs(np.asarray(fn(ChainMap(moved, values)), np.float64) - base))
    return base, 3 * np.sqrt(len(probes)) * bound


def _change(fn, values, name, w, base) -> np.ndarray:
    out = np.asarray(fn(ChainMap({name: w}, values)), dtype=np.float64)
    return np.abs(out - base) if out.shape == base.shape else np.full(base.shape, np.inf)


@dataclass
class StudentTrace:
    """A derivation as the student holds it: every value, and how precisely it is known."""

    values: dict[str, np.ndarray]
    radius: dict[str, np.ndarray]


def student_trace(steps: Mapping[str, Step], fixed: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  u: float) -> StudentTrace:
    """Walk the steps: a name in ``fixed`` takes its (value, radius), any other is made by its rule."""
    trace = StudentTrace({}, {})
    for name, step in steps.items():
        if name in fixed:
            trace.values[name], trace.radius[name] = fixed[name]
        else:
            trace.values[name], trace.radius[name] = spread(step.rule, trace.values, trace.radius, u)
    return trace


def read_as_exact(fixed: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  finest: float | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``fixed`` with no radius above ``finest``: a short number beside a claim written with more
    digits is what the student worked from (exact to the claim's precision), not a rounding."""
    if finest is None:
        return dict(fixed)
    return {n: (v, np.minimum(r, finest)) for n, (v, r) in fixed.items()}


def reproduces(claimed: np.ndarray, resolution: np.ndarray, tol: np.ndarray, value: np.ndarray,
               radius: np.ndarray, u: float) -> bool:
    """Whether ``value`` (known within ``radius``) gives the claimed numbers at their precision.

    ``tol`` is the claimed tensor's rounding tolerance, in the true layout.
    """
    value = np.asarray(value, dtype=np.float64)
    if value.shape != claimed.shape:
        return False
    if tol.shape != claimed.shape:
        tol = tol.T if tol.T.shape == claimed.shape else np.full(claimed.shape, float(np.max(tol)))
    slack = resolution + radius + tol + REPLAY_ULPS * u * np.abs(value)
    return bool(np.all(np.abs(claimed - value) <= slack))


def off_truth(value: np.ndarray, radius: np.ndarray, true: np.ndarray, tol: np.ndarray, u: float) -> bool:
    """Whether a student's value is wrong beyond its own precision."""
    true = np.asarray(true, dtype=np.float64)
    return np.shape(value) != true.shape or not reproduces(true, np.zeros(true.shape), tol, value, radius, u)


def origins(name: str, steps: Mapping[str, Step], claimed: set[str],
            wrong: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """The claimed names a wrong input of ``name`` comes from, and the unwritten wrong steps between."""
    found: list[str] = []
    through: list[str] = []
    for i in steps[name].inputs:
        if not wrong(i):
            continue
        if i in claimed:
            found += [i] if i not in found else []
            continue
        through += [i] if i not in through else []
        more, between = origins(i, steps, claimed, wrong)
        found += [o for o in more if o not in found]
        through += [t for t in between if t not in through]
    return found, through
