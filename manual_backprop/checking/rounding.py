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

A float32 failure that is not a difference of values (a wrong dtype or
shape, NaN or Inf, a missing tensor) is never rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

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

    @property
    def headline(self) -> str:
        return "float32 rounding, not a bug" if self.cause == "rounding" else "a bug, not rounding"

    @property
    def detail(self) -> str:
        """The evidence, in one line."""
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
                "float64_first_divergence": self.float64_first_divergence, "explanation": self.sentence}


def needs_explaining(report: CheckReport) -> bool:
    """A float32 check that failed against at least one reference: worth re-running in float64."""
    return report.case.network.dtype == "float32" and not report.ok and bool(report.references)


def explain_float32_failure(report: CheckReport, report64: CheckReport) -> Verdict:
    """Rounding or bug, from a failed float32 check and the same check of the case in float64.

    ``report64`` is the check of :func:`~manual_backprop.description.case.as_float64` of the
    case, against the same references and judging the same tensors beyond the trace.
    """
    first = report.first_divergence
    failing = [c for per in report.checks.values() for c in per.values() if not c.ok]
    at_first = [c for c in report.checks[first].values() if not c.ok]
    worst = max(at_first, key=lambda c: -1.0 if c.margin is None or np.isnan(c.margin) else c.margin)
    c64 = report64.checks.get(first, {}).get(worst.reference)
    values_only = all(c.status == "fail" for c in failing)
    cause = "rounding" if report64.ok and values_only else "bug"
    return Verdict(cause, first, worst.reference, worst.status, worst.margin,
                   c64.margin if c64 is not None else None, report64.first_divergence)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}"
