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
from .grid import CHECK_RTOL, POINTS, engine_answer, prepared_case, relative_error

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
    """The implementation's result against the engine's (floors: against their own products in float64)."""
    L, grads = prepared.result()
    rtol = CHECK_RTOL[point.dtype]
    if prepared.is_floor:
        want = impls.floor_reference(case)
        errors = {name: relative_error(grads[name], want[name]) for name in want}
        rtol = max(rtol, 1e-5)
    else:
        rows = prepared.extra.get("loop_samples")
        L_ref, grads_ref = engine_answer(point, rows if rows != case.batch else None)
        errors = {name: relative_error(grads[name], grads_ref[name]) for name in grads_ref}
        errors["L"] = relative_error(L, L_ref)
    worst = max(errors, key=errors.get)
    info["max_rel_err"] = errors[worst]
    assert errors[worst] <= rtol, (f"{info['impl']} at {point.group}: d{worst} off by "
                                   f"{errors[worst]:.2e} (norm-wise relative) from the engine")
