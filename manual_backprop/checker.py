"""``check``: run the engine and every reference on one case, and compare every tensor.

>>> from manual_backprop import load_example, check
>>> report = check(load_example("seed-002"))
>>> report.ok, report.first_divergence
(True, None)
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .case import Case
from .compare import TensorCheck, compare_projections, compare_traces, compared_names, error_scales
from .engine import Trace
from .errors import InputError
from .overflow import ensure_representable, run_quietly

ALL_REFERENCES = ("torch", "jax", "fd")

#: Below this many multiply-adds per forward pass, BLAS runs on one thread.
SMALL_PRODUCT_FLOPS = 2**27


@dataclass
class CheckReport:
    """The engine's trace and, per tensor and per reference, the verdict."""

    case: Case
    trace: Trace
    references: list[str]
    checks: dict[str, dict[str, TensorCheck]]
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def order(self) -> list[str]:
        return compared_names(self.case.network)

    @property
    def ok(self) -> bool:
        return all(c.ok for per_ref in self.checks.values() for c in per_ref.values())

    @property
    def first_divergence(self) -> str | None:
        """The first tensor, forward then backward order, that some reference disagrees with."""
        for name in self.order:
            if any(not c.ok for c in self.checks.get(name, {}).values()):
                return name
        return None

    def step_before(self, name: str) -> str | None:
        """The tensor judged just before ``name`` (its upstream step in backward order)."""
        order = self.order
        i = order.index(name)
        return order[i - 1] if i > 0 else None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object of ../PRODUCT.md."""
        tensors = {}
        for name in self.order:
            value = np.asarray(self.trace[name])
            tensors[name] = {
                "shape": list(value.shape),
                "dtype": str(value.dtype),
                "value": value.tolist(),
                "checks": {ref: c.to_json() for ref, c in self.checks.get(name, {}).items()},
            }
        first = self.first_divergence
        out: dict[str, Any] = {
            "ok": self.ok,
            "first_divergence": first,
            "network": self.case.network.describe(),
            "title": self.case.title,
            "source": self.case.source,
            "references": self.references,
            "skipped_references": self.skipped,
            "tensors": tensors,
            "environment": self.environment,
            "timings_s": self.timings,
        }
        if first is not None:
            out["step_before_first_divergence"] = self.step_before(first)
        return out


def resolve_references(against: Sequence[str] | None) -> tuple[list[str], bool]:
    """The references to run, and whether the user named them (then a missing one is an error)."""
    if against is None:
        return list(ALL_REFERENCES), False
    names = []
    for name in against:
        name = name.strip().lower()
        if name not in ALL_REFERENCES:
            raise InputError(f"unknown reference {name!r}; known: {', '.join(ALL_REFERENCES)}")
        if name not in names:
            names.append(name)
    if not names:
        raise InputError("--against names no reference; known: " + ", ".join(ALL_REFERENCES))
    return names, True


def check(case: Case, against: Sequence[str] | None = None, device: str | None = None,
          engine_trace: Trace | None = None) -> CheckReport:
    """Run ``case`` through the engine and the references, and compare every tensor.

    ``against=None`` means every installed reference (a missing framework is
    skipped and noted in ``report.skipped``); naming one that is not installed
    raises :class:`~manual_backprop.errors.InputError` with the install hint.
    """
    from .environment import describe

    names, explicit = resolve_references(against)
    with blas_threads_for(case):
        return _check(case, names, explicit, device, engine_trace, describe)


def blas_threads_for(case: Case):
    """One BLAS thread for small networks, the default for large ones.

    Measured here: OpenBLAS's thread start-up and spinning make a small
    product tens of times slower with 2 threads than with 1, and a check runs
    hundreds of small forward passes (finite differences, tolerances).
    """
    from threadpoolctl import threadpool_limits

    net = case.network
    flops = case.batch * sum(a * b for a, b in zip(net.sizes, net.sizes[1:]))
    return threadpool_limits(limits=1, user_api="blas") if flops < SMALL_PRODUCT_FLOPS else nullcontext()


def _check(case, names, explicit, device, engine_trace, describe) -> CheckReport:
    import references  # the reference implementations ship beside the engine

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    trace = engine_trace if engine_trace is not None else run_quietly(case)
    timings["engine"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):  # an overflow is reported just below, never warned about
        E = error_scales(case.network, case.params, trace, case.T)
    timings["tolerances"] = time.perf_counter() - t0
    ensure_representable(case, trace, E)

    checks: dict[str, dict[str, TensorCheck]] = {name: {} for name in compared_names(case.network)}
    used, skipped = [], {}
    for ref in names:
        if not references.is_installed(ref):
            if explicit:
                references.load(ref)  # raises MissingReference with the install hint
            skipped[ref] = f"{ref} is not installed ({references.INSTALL_HINTS.get(ref, '')})"
            continue
        module = references.load(ref)
        t0 = time.perf_counter()
        result = module.run(case, device=device)
        timings[ref] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if ref == "fd":
            per = compare_projections(case.network, trace, result, E, ref)
        else:
            per = compare_traces(case.network, case.params, trace, result, ref, E)
        timings[f"compare:{ref}"] = time.perf_counter() - t0
        for name, c in per.items():
            checks[name][ref] = c
        used.append(ref)
    return CheckReport(case, trace, used, checks, skipped, timings, describe(case.seed))
