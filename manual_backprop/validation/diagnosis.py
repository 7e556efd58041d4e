"""Which classic mistake reproduces a wrong claim, if any.

For a claim wrong on its own, every mistake of :mod:`.mistakes` that can
happen at its step is applied to the student's own inputs; a mistake fits
only when it gives the claimed numbers at their written precision (with the
precision of those inputs carried along). If none fits at the claimed step
itself, the mistake may sit in a step the student did not write down (a
claimed ``dW1`` whose unwritten ``dZ1`` lost its mask): each unwritten step
upstream is tried, nearest first, and its mistaken value carried to the
claim by the right rules. Nothing fits: no diagnosis, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..description.case import Case
from .claims import ClaimCheck
from .mistakes import MISTAKES, Candidate, Mistake
from .replay import StudentTrace, reproduces, spread
from .steps import Step, downstream


@dataclass(frozen=True)
class Fit:
    """A mistake that reproduces a claim: where it was made, and the sentence that says so."""

    mistake: Mistake
    step: str                  # the step where it was made
    claim: str                 # the claim it reproduces (the same name, or one downstream)
    sentence: str

    @property
    def unwritten(self) -> bool:
        return self.step != self.claim

    def to_json(self) -> dict:
        return {"id": self.mistake.id, "title": self.mistake.title, "step": self.step, "sentence": self.sentence}


def find_fits(check: ClaimCheck, steps: Mapping[str, Step], case: Case, student: StudentTrace,
              claimed: set[str], u: float) -> list[Fit]:
    """Every mistake that reproduces ``check``'s claim: at its own step, else at the nearest unwritten one."""
    fits = _fits_at(check.name, check, steps, case, student, claimed, u)
    if fits:
        return fits
    for name in unwritten_upstream(check.name, steps, claimed):
        fits = _fits_at(name, check, steps, case, student, claimed, u)
        if fits:
            return fits
    return []


def unwritten_upstream(name: str, steps: Mapping[str, Step], claimed: set[str]) -> list[str]:
    """The steps ``name`` depends on through unclaimed steps only, nearest (latest) first."""
    found: set[str] = set()
    todo = list(steps[name].inputs)
    while todo:
        i = todo.pop()
        if i in found or i in claimed or steps[i].kind == "data":
            continue
        found.add(i)
        todo += steps[i].inputs
    return [n for n in reversed(steps) if n in found]


def _fits_at(site: str, check: ClaimCheck, steps: Mapping[str, Step], case: Case, student: StudentTrace,
             claimed: set[str], u: float) -> list[Fit]:
    fits = []
    for mistake in MISTAKES:
        if site != check.name and not mistake.upstream:
            continue
        for candidate in mistake.candidates(steps[site], case):
            value = _value(candidate, site, check.name, steps, student, claimed, u)
            if value is not None and reproduces(check.claimed, check.resolution, check.tolerance, *value, u):
                sentence = mistake.explain(steps[site], case, candidate)
                if site != check.name:
                    sentence = (f"{check.name} follows by the right rules from {site}, which was not written "
                                f"down and has a mistake: {sentence}")
                fits.append(Fit(mistake, site, check.name, sentence))
                break
    return fits


def _value(candidate: Candidate, site: str, target: str, steps: Mapping[str, Step], student: StudentTrace,
           claimed: set[str], u: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The candidate's value at ``site``, carried to ``target`` by the right rules (None if it cannot run)."""
    try:
        made = spread(candidate.rule, student.values, student.radius, u)
        if site == target:
            return made
        values, radius = dict(student.values), dict(student.radius)
        values[site], radius[site] = made
        for name in downstream(steps, site):
            if name in claimed and name != target:
                continue
            values[name], radius[name] = spread(steps[name].rule, values, radius, u)
            if name == target:
                return values[name], radius[name]
    except ValueError:  # a candidate whose shapes do not fit this network's (a transposed product)
        return None
    return None
