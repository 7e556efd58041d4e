"""Fair scores: one item per graded tensor, from validate's verdicts.

For each item of ``[points]`` (a claimed tensor) and ``[points.code]`` (a tensor the code returns):

- **right** (at the precision it was written with, plus the tolerance policy: never a fixed 1e-8):
  the item's points, unless the answer is degenerate (below);
- **carried** (the right rule applied to the student's own wrong inputs gives their numbers): the
  points too, under ``carried = "keep"`` (the default: an error is not punished twice), none under
  ``"lose"``;
- a **degenerate** answer (all zeros, or an input handed back, where the truth is neither within the
  tolerance policy alone) earns nothing, right or carried: zeros all the way down, or a ``0.0``
  written to one decimal for a truth of 0.02, score 0;
- **own error**, **not handed in**, **unreadable** (a claim of the wrong shape, a value that is not
  a number), or the code failing (a crash, a hang, an exit): no points, and the reason;
- code only: a tensor right on the random trial but wrong on another (one sample, the ReLU kink,
  float32) loses its points, and the feedback says which trial.

The code's cache is the student's own: their forward runs before their backward on every trial,
and nothing is drawn for them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..description.case import Case
from ..validation import Validation


@dataclass
class Item:
    """One graded item of one student."""

    name: str                      # "dW1", or "code:dW1"
    max_points: float
    points: float = 0.0
    verdict: str = "not handed in"
    diagnosis: str | None = None
    theirs: Any = None             # the student's value (a list), when there is one
    right: Any = None              # the true value, where the rubric shows it

    @property
    def full(self) -> bool:
        return self.points == self.max_points


@dataclass
class StudentResult:
    """Everything one submission earned, and why."""

    student: str
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # the submission's own problems (a file, the code)
    output: str = ""                                 # what the student's code printed (its start)

    @property
    def score(self) -> float:
        return float(sum(i.points for i in self.items))

    @property
    def max_score(self) -> float:
        return float(sum(i.max_points for i in self.items))

    def to_json(self) -> dict[str, Any]:
        return {"student": self.student, "score": self.score, "max_score": self.max_score,
                "items": [asdict(i) for i in self.items], "notes": self.notes, "output": self.output}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StudentResult:
        return cls(d["student"], [Item(**i) for i in d["items"]], list(d["notes"]), d["output"])


def degenerate(value: np.ndarray, true: np.ndarray, allowed: np.ndarray, case: Case) -> bool:
    """An answer that is zeros, or one of the inputs handed back (X, Y, a parameter), where the truth is not."""
    value, true = np.asarray(value, np.float64), np.asarray(true, np.float64)
    if value.shape != true.shape:
        return False
    if np.all(value == 0) and not np.all(np.abs(true) <= allowed):
        return True
    inputs = [case.shown("X", case.X), case.shown("Y", case.Y) if case.Y.ndim == 2 else None]
    inputs += [case.shown(n, p) for n, p in case.params.items()]
    return any(a is not None and np.shape(a) == value.shape and np.array_equal(np.asarray(a, np.float64), value)
               and not np.all(np.abs(true - value) <= allowed) for a in inputs)


def score_claims(items: dict[str, float], report: Validation | None, unreadable: dict[str, str],
                 carried: str, show: bool, prefix: str = "") -> list[Item]:
    """The items of one validation: each tensor's points by the rules above."""
    out = []
    for name, most in items.items():
        item = Item(prefix + name, most)
        out.append(item)
        if name in unreadable:
            item.verdict, item.diagnosis = "unreadable", unreadable[name]
            continue
        if report is None or name not in report.claims:
            continue
        c = report.claims[name]
        check = c.check
        item.theirs = check.claimed.tolist()
        if show:
            item.right = np.asarray(check.true).tolist()
        # zeros, or an input handed back, where the truth is neither within the tolerance alone: no points,
        # whatever the verdict (a 0.0 written to one decimal is "right" for a truth of 0.02)
        hollow = check.claimed.shape == check.true.shape and degenerate(check.claimed, check.true, check.tolerance,
                                                                        report.case)
        if c.ok and hollow:
            item.verdict = "right only at the precision written, and a degenerate answer (zeros or an input " \
                           "handed back): no points"
            continue
        if c.ok:
            item.points, item.verdict = most, "right"
            continue
        item.diagnosis = c.diagnosis or (" ".join(c.notes) or None) or check.message()
        if c.error == "carried":
            if hollow:
                item.verdict = f"carried from {', '.join(c.carried_from)}, but a degenerate answer (zeros or an " \
                               f"input handed back): no points"
            elif carried == "keep":
                item.points = most
                item.verdict = f"carried from {', '.join(c.carried_from)}: right from your own inputs, points kept"
            else:
                item.verdict = f"carried from {', '.join(c.carried_from)} (this rubric counts carried errors)"
        else:
            item.verdict = "own error"
    return out
