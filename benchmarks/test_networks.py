"""Whole forward + backward of the three networks, every implementation, every batch size.

One pytest-benchmark group per grid point (network, dtype, batch), so each
table compares the implementations on the same work. Every result is checked
against the engine before the clock starts.
"""

from __future__ import annotations

import importlib.util

import pytest

from . import impls
from .conftest import start_clean
from .grid import POINTS, check_against_engine, check_floor, prepared_case

CASES = [(p, impl) for p in POINTS for impl in impls.IMPLS]


def _needs(library: str) -> None:
    if library in ("torch", "jax") and importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed")


@pytest.mark.parametrize(("point", "impl"), CASES, ids=[f"{p.id}-{i}" for p, i in CASES])
def test_forward_backward(benchmark, point, impl):
    _needs(impls.LIBRARY[impl])
    case, T = prepared_case(point)
    quick = benchmark.disabled
    prepared = impls.build(impl, case, T, quick=quick)
    benchmark.group = point.group
    benchmark.extra_info.update(kind="network", network=point.network, dtype=point.dtype,
                                batch=point.batch, impl=impl, library=impls.LIBRARY[impl])
    if quick:  # CI: one call, then the check
        benchmark(prepared.call)
        _check(point, case, prepared, benchmark.extra_info)
    else:  # warm-up call and check, then a pause for any spinning BLAS thread, then the clock
        prepared.call()
        _check(point, case, prepared, benchmark.extra_info)
        start_clean(benchmark)
        benchmark(prepared.call)
    benchmark.extra_info.update(prepared.extra)


def _check(point, case, prepared, info) -> None:
    """The implementation's result against the engine's (floors: against their own products in float64).

    By the project's comparator and tolerance policy, element by element.
    """
    L, grads = prepared.result()
    if prepared.is_floor:
        checks = check_floor(case, info["impl"], grads, impls.floor_reference(case))
    else:
        rows = prepared.extra.get("loop_samples")
        checks = check_against_engine(point, info["impl"], L, grads, rows if rows != case.batch else None)
    info["max_rel_err"] = max((c.max_rel_err for c in checks if c.max_rel_err is not None), default=None)
    info["margin"] = max((c.margin for c in checks if c.margin is not None), default=None)
    failed = [c for c in checks if not c.ok]
    assert not failed, failed[0].message(ours=info["impl"], where=f"{info['impl']} at {point.group}")
