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

from .case import Case, make_case
from .network import Network

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


def explain_float32_failure(case: Case, report: CheckReport, per_sample: bool = False,
                            learning_rate: float | None = None) -> Verdict | None:
    """Re-run a failed float32 check in float64 and say whether it is rounding or a bug (None if not applicable).

    ``per_sample`` and ``learning_rate`` repeat what the float32 check judged beyond the trace.
    """
    from .checker import check  # the checker calls this module: import late

    if case.network.dtype != "float32" or report.ok or not report.references:
        return None
    first = report.first_divergence
    failing = [c for per in report.checks.values() for c in per.values() if not c.ok]
    at_first = [c for c in report.checks[first].values() if not c.ok]
    worst = max(at_first, key=lambda c: -1.0 if c.margin is None or np.isnan(c.margin) else c.margin)

    report64 = check(as_float64(case), against=report.references, per_sample=per_sample,
                     learning_rate=learning_rate)
    c64 = report64.checks.get(first, {}).get(worst.reference)
    values_only = all(c.status == "fail" for c in failing)
    cause = "rounding" if report64.ok and values_only else "bug"
    return Verdict(cause, first, worst.reference, worst.status, worst.margin,
                   c64.margin if c64 is not None else None, report64.first_divergence)


def as_float64(case: Case) -> Case:
    """The same case in float64: the same numbers (float32 widens exactly), float64 arithmetic."""
    net = case.network
    net64 = Network(net.sizes, net.activations, net.loss, net.reduction, "float64")
    params = {k: v.astype(np.float64) for k, v in case.params.items()}
    Y = case.Y.astype(np.float64) if case.Y.ndim == 2 else case.Y
    return make_case(net64, params, case.X.astype(np.float64), Y, seed=case.seed, title=case.title,
                     learning_rate=case.learning_rate, source=case.source)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}"
