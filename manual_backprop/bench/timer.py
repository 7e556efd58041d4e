"""Implementations timed side by side, and their ratios with a spread.

Timed one after the other, minutes apart, two implementations see different
machines: this one's speed drifts by tens of percent between runs, and that
drift lands in their ratio. So the implementations of one group are timed
interleaved, ``A B C … A B C …``: round ``r`` times each of them once (a block
of calls long enough to read the clock well), and a ratio is taken **within**
each round::

    ratio_r = t_A[r] / t_B[r]          r = 1 .. R
    ratio   = median_r ratio_r,   spread = [ratio_(k), ratio_(R+1-k)]

where ``ratio_(1) <= … <= ratio_(R)`` are the rounds' ratios in order, and
``k`` is the largest with ``P(Binomial(R, 1/2) < k) <= 1%``
(:func:`median_interval`): the distribution-free confidence interval of the
median, holding the true median ratio with at least 98% confidence whatever
the noise's distribution. With 7 rounds it is the whole range (k = 1); with
11 the 2nd to the 10th; with 15 the 3rd to the 13th, so that one or two
rounds disturbed by another tenant of the machine cannot decide a verdict
alone. With fewer than 7 rounds it is the whole range, of lower confidence.

A target ``ratio <= limit`` is *missed* only when the whole spread misses it
(``ratio_(k) > limit``), *holds* when the whole spread holds it, and is
*within the noise* when the spread straddles the limit (:meth:`Spread.verdict`).
A verdict within the noise after the planned rounds gets more of them, one at
a time, until it is decided or a cap is reached (:meth:`Interleaved.more_rounds`):
on a shared machine, a ratio clear of its target by 10% was otherwise missed
in one run and within the noise in the next. (Stopping when decided makes the
interval's confidence lower than its nominal 98%; the cap bounds how much.)

Between two blocks the timer can pause (``gap_s``): after a multi-threaded
call, OpenBLAS and OpenMP keep a worker spinning for about 0.1 s, and on a
2-core machine the next implementation would start on one core. A pause has
a cost of its own, measured here: torch eager at 784-256-256-10 batch 64 took
1.14 ms per call in blocks that each follow a 0.25 s sleep, 0.85 ms without
the sleeps (parked threads, an idle virtual CPU). So after a pause a quarter
of the block runs untimed before the block is timed.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

# A block of calls lasts at least this long (the clock's own cost is then negligible).
BLOCK_S = 0.02
MAX_CALLS = 100_000


@dataclass(frozen=True)
class Spread:
    """The median of per-round values and its confidence interval (``lo``, ``hi``)."""

    median: float
    lo: float
    hi: float

    @classmethod
    def of(cls, values: Iterable[float]) -> "Spread":
        """The median of ``values`` and its confidence interval (:func:`median_interval`)."""
        v = sorted(float(x) for x in values)
        if not v:
            raise ValueError("a spread of no values")
        k = median_interval(len(v))
        return cls(statistics.median(v), v[k - 1], v[len(v) - k])

    def verdict(self, limit: float, kind: str = "<=") -> str:
        """``"holds"``, ``"missed"`` (the whole spread misses ``limit``) or ``"noise"`` (it straddles it)."""
        if kind == "<=":
            return "holds" if self.hi <= limit else "missed" if self.lo > limit else "noise"
        return "holds" if self.lo >= limit else "missed" if self.hi < limit else "noise"

    def text(self) -> str:
        def f(x: float) -> str:
            return f"{x:.2f}" if x < 100 else f"{x:.0f}"
        return f(self.median) if self.lo == self.hi else f"{f(self.median)} ({f(self.lo)}–{f(self.hi)})"


def median_interval(n: int, alpha: float = 0.01) -> int:
    """``k`` such that ``[x_(k), x_(n+1-k)]`` of ``n`` sorted values holds their distribution's median with
    probability at least ``1 - 2 alpha``: the largest k with ``P(Binomial(n, 1/2) <= k - 1) <= alpha``
    (at least 1: with too few values, the whole range)."""
    k, below = 1, 0.5 ** n  # below = P(B <= k - 1) for the next k
    while k < (n + 1) // 2 and below + math.comb(n, k) * 0.5 ** n <= alpha:
        below += math.comb(n, k) * 0.5 ** n
        k += 1
    return k


def per_round_ratio(times: Mapping[str, Sequence[float]], num: str, den: str | Sequence[str]) -> Spread | None:
    """``num``'s time over ``den``'s in each round (``den`` several names: the fastest of them in that round).

    None when a name has no times or the rounds differ in number.
    """
    dens = [den] if isinstance(den, str) else list(den)
    dens = [d for d in dens if d in times]
    if num not in times or not dens:
        return None
    rows = [times[num]] + [times[d] for d in dens]
    if len({len(r) for r in rows}) != 1 or not rows[0]:
        return None
    return Spread.of(a / min(r[i] for r in rows[1:]) for i, a in enumerate(rows[0]))


@dataclass
class Interleaved:
    """Time ``calls`` (name -> a function of no arguments) interleaved, round after round.

    :meth:`calibrate` picks each one's block length; each :meth:`round` then
    times every call in order, with ``gap_s`` of sleep before a block whose
    ``library`` (name -> "numpy", "torch", "jax") is not the previous block's:
    a pool's spinning worker slows another library's threads, never its own
    next call. Without ``library``, the pause comes before every block.
    ``times[name]`` holds seconds per call, one entry per round.
    """

    calls: Mapping[str, Callable[[], object]]
    gap_s: float = 0.0
    library: Mapping[str, str] | None = None
    block_s: float = BLOCK_S
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], None] = time.sleep
    iterations: dict[str, int] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)
    _last: str | None = field(default=None, repr=False)

    def calibrate(self) -> None:
        """Each call's block: 1, 2, 5, 10, … calls until a block lasts ``block_s`` (as :mod:`timeit`'s autorange)."""
        for name, fn in self.calls.items():
            fn()  # untimed: a first call may start threads or fill caches
            n = 1
            while True:
                t = self._block(fn, n)
                if t >= self.block_s or n >= MAX_CALLS:
                    break
                n = min(MAX_CALLS, max(n * 2, math.ceil(n * self.block_s / max(t, 1e-9) * 1.2)))
            self.iterations[name] = n

    def round(self) -> None:
        """One round: every call's block, in order."""
        for name, fn in self.calls.items():
            lib = self.library.get(name, name) if self.library is not None else None
            n = self.iterations.get(name, 1)
            if self.gap_s and (lib is None or lib != self._last):
                self.sleep(self.gap_s)
                self._block(fn, max(1, n // 4))  # untimed: wake the library's threads after the pause
            self._last = lib
            self.times.setdefault(name, []).append(self._block(fn, n) / n)

    def run(self, rounds: int, progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
        if not self.iterations:
            self.calibrate()
        for r in range(rounds):
            self.round()
            if progress is not None:
                progress(r + 1)
        return self.times

    def more_rounds(self, undecided: Callable[[Mapping[str, Sequence[float]]], bool], max_rounds: int) -> int:
        """Sequential rounds: one more round while ``undecided(self.times)``, up to ``max_rounds`` in all.

        A verdict that the rounds so far leave within the noise gets more rounds, so that a ratio whose
        median is clear of its target is not left undecided by a few disturbed rounds. How many were added.
        """
        added = 0
        while min((len(t) for t in self.times.values()), default=0) < max_rounds and undecided(self.times):
            self.round()
            added += 1
        return added

    def _block(self, fn: Callable[[], object], n: int) -> float:
        """Seconds for ``n`` calls, with the garbage collector off meanwhile (as :mod:`timeit` does)."""
        clock = self.clock
        collecting = gc.isenabled()
        gc.disable()
        try:
            t0 = clock()
            for _ in range(n):
                fn()
            return clock() - t0
        finally:
            if collecting:
                gc.enable()
