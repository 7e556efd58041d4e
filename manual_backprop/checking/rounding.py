"""Rounding or bug? A float32 disagreement, re-run in float64, says which.

A float32 check can fail for two reasons. A wrong rule makes an error that
does not depend on the precision: run the same case in float64 and the same
disagreement is still there, many orders of magnitude above float64's
rounding. Rounding that the float32 tolerance did not foresee shrinks by
2**29 in float64 and disappears. So the case is checked again with its
parameters and data in float64 (every float32 is exactly a float64: the
numbers are the same, only the arithmetic is wider), against the same
references:

- still failing in float64: ``"bug"``;
- every tensor agreeing in float64: ``"rounding"``, with the factor by which
  the float32 tolerance was missed.

One thing comes before the float64 re-run: a float32 disagreement that lies
within a reference's flush range is never a bug, whatever float64 says. JAX
flushes results below the smallest normal float32 to 0 and reads subnormal
operands as 0, and that difference is carried on by the products that follow
(:func:`~manual_backprop.compare.tolerance.flush_scales`); in float64 those
numbers are normal, and the re-run may fail for another reason of the same
kind (a float64 subnormal, far smaller) that says nothing about a rule. So when
every element that missed its tolerance is within ``K F + FLOOR`` of the
reference (``F`` the flush scale), the cause is ``"rounding"``, flushed.

A float32 failure that is not a difference of values (a wrong dtype or
shape, NaN or Inf, a missing tensor) is never rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compare import FLOOR, K, TensorCheck, tolerance
from ..compare.tolerance import FLUSH, flush_scales

if TYPE_CHECKING:  # pragma: no cover
    from .checker import CheckReport


@dataclass(frozen=True)
class Verdict:
    """Why a float32 check failed: ``cause`` is ``"rounding"`` or ``"bug"``."""

    cause: str
    tensor: str                       # the float32 first divergence
    reference: str                    # the reference that missed its tolerance by most there
    status: str                       # that check's float32 status (fail, dtype, nonfinite, ...)
    margin: float | None              # worst |Δ| / tolerance in float32 (above 1: by how much it was missed)
    float64_margin: float | None      # the same tensor and reference, in float64
    float64_first_divergence: str | None
    #: Every float32 disagreement lies within the reference's flush range: the largest
    #: ``|Δ| / (K F + FLOOR)`` over the elements that missed their tolerance (at most 1). None: not flushed.
    flush_margin: float | None = None

    @property
    def headline(self) -> str:
        return "float32 rounding, not a bug" if self.cause == "rounding" else "a bug, not rounding"

    @property
    def detail(self) -> str:
        """The evidence, in one line."""
        if self.cause == "rounding" and self.flush_margin is not None:
            return (f"every float32 disagreement lies within {self.reference}'s flush range (values below the "
                    f"smallest normal float32, {_fmt(FLUSH['float32'])}, read or made 0 and carried through the "
                    f"products that follow; {self.tensor} at {_fmt(self.flush_margin)} of what flushing explains)")
        if self.cause == "rounding":
            return (f"in float64 every tensor agrees ({self.tensor} margin {_fmt(self.float64_margin)}); "
                    f"in float32 {self.tensor} missed its tolerance by a factor of {_fmt(self.margin)} "
                    f"against {self.reference}")
        if self.float64_first_divergence is None:
            return (f"{self.tensor} fails in float32 with status {self.status!r} against {self.reference}, "
                    f"which no rounding explains")
        return (f"the disagreement is still there in float64 (first divergence {self.float64_first_divergence}, "
                f"{self.tensor} margin {_fmt(self.float64_margin)} against {self.reference})")

    @property
    def sentence(self) -> str:
        return f"{self.headline}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "tensor": self.tensor, "reference": self.reference, "status": self.status,
                "margin": self.margin, "float64_margin": self.float64_margin,
                "float64_first_divergence": self.float64_first_divergence, "flush_margin": self.flush_margin,
                "explanation": self.sentence}


def needs_explaining(report: CheckReport) -> bool:
    """A float32 check that failed against at least one reference: worth re-running in float64."""
    return report.case.network.dtype == "float32" and not report.ok and bool(report.references)


def explain_float32_failure(report: CheckReport, report64: CheckReport) -> Verdict:
    """Rounding or bug, from a failed float32 check and the same check of the case in float64.

    ``report64`` is the check of :func:`~manual_backprop.description.case.as_float64` of the
    case, against the same references and judging the same tensors beyond the trace.
    """
    first = report.first_divergence
    failing = [c for per in report.checks.values() for c in per.values() if c.ok is False]
    at_first = [c for c in report.checks[first].values() if c.ok is False]
    worst = max(at_first, key=lambda c: -1.0 if c.margin is None or np.isnan(c.margin) else c.margin)
    c64 = report64.checks.get(first, {}).get(worst.reference)
    values_only = all(c.status == "fail" for c in failing)
    flushed = flush_margin(report, failing) if values_only else None
    cause = "rounding" if flushed is not None or (report64.ok and values_only) else "bug"
    return Verdict(cause, first, worst.reference, worst.status, worst.margin,
                   c64.margin if c64 is not None else None, report64.first_divergence, flushed)


def flush_margin(report: CheckReport, failing: list[TensorCheck]) -> float | None:
    """The largest ``|Δ| / (K F + FLOOR)`` over every element that missed its tolerance, if at most 1.

    ``F`` is :func:`~manual_backprop.compare.tolerance.flush_scales` of the float32 trace: how
    far flushing subnormals to 0 may move each value. None when some failing element lies
    beyond it, or the failure is not one a flush can make (finite differences, which run in
    float64 and flush nothing; a tensor beyond the trace). The failing references are run
    again for their values (the report keeps only the worst element); JAX has them compiled.
    """
    from .. import references

    case, trace = report.case, report.trace
    names = set(case.network.names())
    if not failing or any(c.reference == "fd" or c.name not in names for c in failing):
        return None
    F = flush_scales(case.network, case.params, trace, case.T)
    worst = 0.0
    for ref in sorted({c.reference for c in failing}):
        theirs = references.load(ref).run(case)
        for c in (c for c in failing if c.reference == ref):
            ours, other = np.asarray(trace[c.name], np.float64), np.asarray(theirs[c.name], np.float64)
            err = np.abs(ours - other)
            missed = err > tolerance(np.asarray(report.scales[c.name], np.float64), case.network.dtype)
            flush = K * F[c.name] + FLOOR[case.network.dtype]
            if not missed.any() or (err[missed] > flush[missed]).any():
                return None  # beyond the flush range (or not the failure the check saw: nothing to explain)
            worst = max(worst, float((err[missed] / flush[missed]).max()))
    return worst


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}"
