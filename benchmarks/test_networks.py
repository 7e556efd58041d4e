"""Whole forward + backward of the three networks, every implementation side by side, every batch size.

One benchmark per grid point (network, dtype, batch). Its implementations are
timed interleaved, ``A B C … A B C …`` (:class:`manual_backprop.bench.timer.Interleaved`),
so each round's ratios compare them on the same machine state; the round
count is pytest-benchmark's ``--benchmark-min-rounds``, and a target the
rounds leave within the noise gets more rounds, up to ``--rounds-until-decided``
in all (``extra_info["rounds_added"]``). pytest-benchmark's own statistics
for the point are those of a whole planned round; each
implementation's time per round is in ``extra_info["impls"][impl]["times"]``,
which is what ``manual-backprop report`` reads.

Every result is checked against the engine before the clock starts (after
the clock, in a run that only checks: ``--benchmark-disable``).
"""

from __future__ import annotations

import importlib.util

import pytest

from manual_backprop.bench import impls
from manual_backprop.bench.grid import POINTS, prepared_case
from manual_backprop.bench.machine import GAP_S
from manual_backprop.bench.report import point_verdicts
from manual_backprop.bench.timer import Interleaved


def _available(library: str) -> bool:
    return library not in ("torch", "jax") or importlib.util.find_spec(library) is not None


@pytest.mark.parametrize("point", POINTS, ids=[p.id for p in POINTS])
def test_forward_backward(benchmark, request, point):
    case, T = prepared_case(point)
    quick = benchmark.disabled
    info = benchmark.extra_info
    info.update(kind="network", network=point.network, dtype=point.dtype, batch=point.batch)
    built = {impl: impls.build(impl, case, T, quick=quick) for impl in impls.IMPLS
             if _available(impls.LIBRARY[impl])}
    info["left_out"] = [impl for impl in impls.IMPLS if impl not in built]  # a framework not installed
    timer = Interleaved({impl: p.call for impl, p in built.items()},
                        gap_s=0.0 if quick or not impls.needs_gap(case) else GAP_S, library=impls.LIBRARY)
    benchmark.group = point.group
    if quick:  # CI: every implementation once, then the checks
        benchmark.pedantic(timer.round)
        checked = {impl: _checked(point, case, impl, p) for impl, p in built.items()}
    else:  # a warm-up call and the check for each (all NumPy work first), then the rounds
        checked = {}
        for impl, prepared in built.items():
            prepared.call()
            checked[impl] = _checked(point, case, impl, prepared)
        timer.calibrate()
        benchmark.pedantic(timer.round, rounds=request.config.getoption("benchmark_min_rounds"))

        def undecided(times) -> bool:
            entries = {impl: {"times": times[impl], **p.extra} for impl, p in built.items()}
            return "noise" in point_verdicts(point.network, point.dtype, point.batch, entries).values()

        info["rounds_added"] = timer.more_rounds(undecided, request.config.getoption("rounds_until_decided"))
    info["impls"] = {impl: {"times": timer.times[impl], "iterations": timer.iterations.get(impl, 1),
                            **checked[impl], **built[impl].extra} for impl in built}


def _checked(point, case, impl, prepared) -> dict:
    """The implementation's result against the engine's (floors: against their own products in float64),
    by the project's comparator and tolerance policy, element by element; the worst error and margin."""
    checks = impls.check(case, impl, prepared)
    failed = [c for c in checks if not c.ok]
    assert not failed, failed[0].message(ours=impl, where=f"{impl} at {point.group}")
    return {"max_rel_err": max((c.max_rel_err for c in checks if c.max_rel_err is not None), default=None),
            "margin": max((c.margin for c in checks if c.margin is not None), default=None)}
