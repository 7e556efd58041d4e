"""``validate``: judge a hand derivation's claims, tell own errors from carried ones, name the mistake.

>>> from manual_backprop import load_example, validate
>>> report = validate(load_example("seed-003-derivation"))
>>> report.ok, report.first_wrong, report.own_errors
(False, 'dZ1', ['dZ1'])
>>> report.claims["dZ1"].fits[0].mistake.id
'relu_mask_missing'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compare import tolerance
from ..description.case import Case, Claim
from ..description.convention import is_delta
from ..environment import describe
from ..errors import InputError
from .claims import ClaimCheck, in_layout, judge, judged_resolutions
from .diagnosis import Fit, find_fits
from .replay import (
    StudentTrace,
    off_truth,
    origins,
    read_as_exact,
    reproduces,
    spread,
    student_trace,
)
from .steps import Step, derivation_steps
from .truth import Truth, true_values

FORWARD_KINDS = ("data", "linear", "activation", "loss")


@dataclass
class ClaimReport:
    """One claim: its verdict, whether its error is its own, and the mistake that explains it."""

    check: ClaimCheck
    step: Step
    error: str | None = None                      # None (right), "own" or "carried"
    carried_from: list[str] = field(default_factory=list)
    carried_through: list[str] = field(default_factory=list)  # unwritten wrong steps in between
    from_your_inputs: np.ndarray | None = None    # the right rule applied to the student's own inputs
    fits: list[Fit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.check.name

    @property
    def ok(self) -> bool:
        return self.check.ok

    @property
    def diagnosis(self) -> str | None:
        """One sentence: the mistake, or where a carried error comes from; None if nothing fits."""
        if self.ok:
            return None
        if self.error == "carried":
            inputs = ", ".join(self.carried_from)
            through = f" (through {', '.join(self.carried_through)}, not written down)" if self.carried_through else ""
            verb = "gives" if len(self.carried_from) == 1 else "give"
            return (f"Carried from {inputs}{through}: the rule {self.step.formula} is right, "
                    f"and your {inputs} {verb} these numbers.")
        if not self.fits:
            return None
        also = [f.mistake.title for f in self.fits[1:]]
        return self.fits[0].sentence + (f" (The same numbers also come from {' or '.join(also)}.)" if also else "")

    def to_json(self) -> dict[str, Any]:
        out = self.check.to_json()
        out.update(error=self.error, carried_from=self.carried_from, carried_through=self.carried_through,
                   diagnosis=self.diagnosis,
                   mistakes=[f.to_json() for f in self.fits], notes=self.notes, formula=self.step.formula)
        if self.from_your_inputs is not None:
            out["from_your_inputs"] = self.from_your_inputs.tolist()
        return out


@dataclass
class Validation:
    """Every claim of a derivation, judged, in derivation order (forward, backward, extras)."""

    case: Case
    truth: Truth
    steps: dict[str, Step]
    claims: dict[str, ClaimReport]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.claims.values())

    @property
    def first_wrong(self) -> str | None:
        """The first wrong claim, forward then backward: a wrong forward value spoils all after it."""
        return next((n for n, c in self.claims.items() if not c.ok), None)

    @property
    def own_errors(self) -> list[str]:
        return [n for n, c in self.claims.items() if c.error == "own"]

    @property
    def carried_errors(self) -> list[str]:
        return [n for n, c in self.claims.items() if c.error == "carried"]

    def summary(self) -> list[str]:
        """The verdict in a few sentences, the first naming the first wrong claim."""
        n = len(self.claims)
        if self.ok:
            return [f"All {n} claims are right at the precision they were written with."]
        first = self.claims[self.first_wrong]
        lines = [f"First wrong claim: {first.name}, "
                 + ("wrong on its own." if first.error == "own" else f"carried from {', '.join(first.carried_from)}.")]
        own = self.own_errors
        lines.append(f"Wrong on their own: {', '.join(own)}." if own else "No claim is wrong on its own.")
        if self.carried_errors:
            lines.append(f"Carried (the right rule applied to a wrong input): {', '.join(self.carried_errors)}.")
        right = sum(c.ok for c in self.claims.values())
        lines.append(f"{right} of {n} claims are right; {len(own)} wrong on their own, "
                     f"{len(self.carried_errors)} carried.")
        return lines

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object (the README's "--json" section), with ``checks.claimed`` per claimed tensor."""
        tensors = {}
        for name in self.steps:
            if name not in self.truth.values:
                continue
            like = np.shape(self.case.claimed[name].value) if name in self.case.claimed else None
            value = self.case.shown(name, self.truth.values[name], like)
            entry: dict[str, Any] = {"shape": list(value.shape), "value": value.tolist(), "checks": {}}
            if name in self.claims:
                entry["checks"]["claimed"] = self.claims[name].to_json()
            tensors[name] = entry
        return {
            "ok": self.ok,
            "first_divergence": self.first_wrong,
            "own_errors": self.own_errors,
            "carried_errors": self.carried_errors,
            "claims": list(self.claims),
            "summary": self.summary(),
            "network": self.case.describe_network(),
            "title": self.case.title,
            "source": self.case.source,
            "tensors": tensors,
            "environment": describe(self.case.seed),
        }

    # --- how it looks in a notebook and on a page (manual_backprop.display) ---------------------

    def _display_options(self) -> dict[str, Any]:
        from .claims import WHOLE

        return {"whole": WHOLE, "layout": in_layout}

    def _repr_html_(self) -> str:
        """The notebook table: the terminal's columns (tensor, claimed, true, verdict), verdicts coloured."""
        from ..display.html import report_html

        return report_html(self, **self._display_options())

    def __repr__(self) -> str:
        from ..display.html import report_text

        return report_text(self, **self._display_options())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        from ..display.html import pretty

        pretty(self, printer, cycle, **self._display_options())

    def to_html(self, path: Any = None, *, backend: str | None = None) -> str:
        """One self-contained HTML page: the network with every tensor on it, coloured by verdict, and
        the table; written atomically to ``path`` when given. ``backend``: ``"graphviz"`` or ``"own"``."""
        from ..display.html import page
        from ..files import write_atomically

        text = page(self, backend=backend, **self._display_options())
        if path is not None:
            write_atomically(path, text)
        return text


def _refuse_unjudgeable_dAL(case: Case) -> None:
    """A claimed dA_L of a fused loss where it is infinite (the output saturated in the network's dtype): exit 2."""
    from ..checking.overflow import run_quietly, unfused_gradient_left_out
    from ..compare import error_scales

    net = case.network
    name = f"dA{net.depth}"
    if not net.fused or name not in case.claimed:
        return
    trace = run_quietly(case)
    with np.errstate(all="ignore"):
        E = error_scales(net, case.params, trace, case.T)
    why = unfused_gradient_left_out(case, trace, E)
    if why is not None:
        raise InputError(f"{case.source}: [claimed] {name} cannot be judged: {why}; claim dZ{net.depth} instead")


def validate(case: Case) -> Validation:
    """Judge every claim of ``case`` (``case.claimed``) against the engine's float64 truth."""
    if not case.claimed:
        raise InputError(f"{case.source}: no [claimed] values to validate; claim any of "
                         f"{', '.join(case.network.names())}")
    if case.step is None:
        steps_next = [n for n in case.claimed if n.endswith("_next")]
        if steps_next:
            raise InputError(f"{case.source}: [claimed] {steps_next[0]} needs [sgd] learning_rate or [optimizer]")
    steps = derivation_steps(case)
    made = [n for n in case.claimed if n not in steps]
    if made:  # a state name the step's optimiser does not keep (vW1_next for sgd, mW1_next for rmsprop)
        keeps = ", ".join(case.step.optimizer.state) if case.step and case.step.optimizer.state else "no state"
        raise InputError(f"{case.source}: [claimed] {made[0]} is not made by this step: "
                         f"{case.step.rule if case.step else 'the network'} keeps {keeps}")
    _refuse_unjudgeable_dAL(case)
    truth = true_values(case)
    net, u = case.network, truth.u
    resolution = judged_resolutions(case.claimed)  # as written: whole numbers read beside their decimals
    claimed = [n for n in steps if n in case.claimed]
    engine = {n: Claim(case.in_engine_form(n, case.claimed[n].value), case.in_engine_form(n, resolution[n]))
              for n in claimed}  # judged in the engine's form; shown back in the user's at the end
    checks = {n: judge(n, engine[n], truth.values[n], truth.E[n], net.dtype, engine[n].resolution) for n in claimed}
    as_written = {n: (in_layout(checks[n].claimed, truth.values[n]), in_layout(checks[n].resolution, truth.values[n]))
                  for n in claimed}
    # A right claim stands for the true value: the student made it from the same right inputs, and its
    # rounding must not blur what follows (a Z1 written 0.00000000 is exactly 0, and so is its mask).
    fixed = {n: (truth.values[n], np.zeros(truth.values[n].shape)) if checks[n].ok else as_written[n]
             for n in claimed}
    traces = _Traces(steps, {"student": fixed, "written": as_written}, u)

    def wrong_in(student: StudentTrace):
        def wrong(name: str) -> bool:
            if name in checks:
                return not checks[name].ok
            return off_truth(student.values[name], student.radius[name], truth.values[name],
                             tolerance(truth.E[name], net.dtype), u)
        return wrong

    reports = {}
    for name in claimed:
        report = ClaimReport(checks[name], steps[name])
        if not report.ok:
            _explain(report, steps, case, truth, traces, set(claimed), wrong_in)
        reports[name] = report
    for name, report in reports.items():  # shown as written: the file's layout, bias shapes and 1/N
        _as_written(report, case, resolution[name])
    return Validation(case, truth, steps, reports)


def _as_written(report: ClaimReport, case: Case, resolution: np.ndarray) -> None:
    """``report`` shown in the user's convention (:mod:`~manual_backprop.description.convention`): the claim as
    written, the true value, the tolerance and the wrong elements in its layout, its bias shape, its 1/N."""
    check, claim = report.check, case.claimed[report.name]
    name, like = check.name, np.shape(claim.value)

    def show(a):
        return case.shown(name, a, like)

    where = np.arange(check.claimed.size).reshape(check.claimed.shape)  # where each element goes
    worst = check.worst
    if worst is not None and check.claimed.shape == check.true.shape:
        flat = int(where[worst]) if where.ndim else 0
        at = np.argwhere(show(where) == flat)
        worst = tuple(int(i) for i in at[0]) if at.size else ()
    factor = case.convention.delta_factor(case.network.reduction, case.batch) if is_delta(name) else 1.0
    report.check = dataclasses.replace(
        check, claimed=np.asarray(claim.value, dtype=np.float64), true=show(check.true),
        written=np.asarray(claim.resolution, dtype=np.float64), resolution=resolution,
        tolerance=show(check.tolerance), wrong=None if check.wrong is None else show(check.wrong),
        max_abs_err=None if check.max_abs_err is None else check.max_abs_err * factor, worst=worst)
    if report.from_your_inputs is not None:
        report.from_your_inputs = show(report.from_your_inputs)


class _Traces:
    """The student's trace, made on demand and kept: from ``"student"`` (a right claim as the true value)
    or ``"written"`` (every claim as written), with no claim known more loosely than ``finest``.

    A claim is judged from its inputs as written (:func:`~.replay.read_as_exact`), so ``finest`` is the
    finest resolution it was written with; ``None`` keeps every claim's own rounding (the ± box of a
    short number), which only says whether a note on short inputs is due.
    """

    def __init__(self, steps: dict[str, Step], bases: dict[str, dict], u: float) -> None:
        self.steps, self.bases, self.u = steps, bases, u
        self.coarsest = max((float(np.max(r)) for _, r in bases["written"].values() if np.size(r)), default=0.0)
        self._made: dict[tuple[str, float | None], StudentTrace] = {}

    def get(self, base: str, finest: float | None = None) -> StudentTrace:
        if finest is not None and finest >= self.coarsest:
            finest = None  # no claim is written coarser: the trace with every rounding, made once
        key = (base, finest)
        if key not in self._made:
            self._made[key] = student_trace(self.steps, read_as_exact(self.bases[base], finest), self.u)
        return self._made[key]

    def written_resolution(self, name: str) -> float:
        """The coarsest resolution ``name`` was judged at (it is claimed)."""
        return float(np.max(self.bases["written"][name][1]))


def _explain(report: ClaimReport, steps, case: Case, truth: Truth, traces: _Traces,
             claimed: set[str], wrong_in) -> None:
    """Own or carried, and the mistake behind an own error."""
    check, step, u = report.check, report.step, truth.u
    if check.status == "shape":
        report.error = "own"
        written = np.shape(case.claimed[check.name].value)
        report.notes.append(f"{check.name} has shape {written}, expected {case.shown(check.name, check.true).shape}.")
        return
    # the student's inputs as written: one with fewer digits than this claim (a 0.5 beside a claim to
    # 8 decimals) is read as exact to the claim's precision, not as anything within its own rounding
    finest = float(np.min(check.resolution)) if check.resolution.size else None
    student = traces.get("student", finest)
    wrong = wrong_in(student)
    if step.inputs:
        report.from_your_inputs, radius = spread(step.rule, student.values, student.radius, u)
        if reproduces(check.claimed, check.resolution, check.tolerance, report.from_your_inputs, radius, u):
            report.error = "carried"
            found, through = origins(step.name, steps, claimed, wrong)
            report.carried_from = [n for n in steps if n in found]
            report.carried_through = [n for n in steps if n in through]
            return
    report.error = "own"
    # a mistake applied to the true values of the right claims, else to the claims as written (rounded)
    coarse = traces.get("written", finest)
    report.fits = find_fits(check, steps, case, student, claimed, u) \
        or find_fits(check, steps, case, coarse, claimed, u)
    if not report.fits and step.inputs:
        # no mistake, but perhaps the rounding of right claims, carried at a finer precision
        value, radius = spread(step.rule, coarse.values, coarse.radius, u)
        if reproduces(check.claimed, check.resolution, check.tolerance, value, radius, u):
            report.error, report.carried_from = "carried", _imprecise(step, coarse, student)
            report.notes.append(f"{check.name} is as right as the precision of "
                                f"{', '.join(report.carried_from)} allows, but not at its own.")
            return
    if check.status == "transposed":
        written = np.shape(case.claimed[check.name].value)
        report.notes.append(f"{check.name} is written with shape {written}; the {case.convention.layout}-vector "
                            f"convention makes it {case.shown(check.name, check.true).shape}.")
    if not report.fits:
        report.notes.append(_does_not_follow(report, wrong, case))
        report.notes += _short_inputs(check, step, steps, traces, claimed, finest, u)
    report.notes += _equal_inputs_differ(check, step, case)


def _short_inputs(check: ClaimCheck, step: Step, steps, traces: _Traces, claimed: set[str],
                  finest: float | None, u: float) -> list[str]:
    """A note when the claim lies within the rounding of inputs written with fewer digits than it, but
    does not follow from them as written: ``dZ1 was written with 1 decimal; read as exact, ...``."""
    if finest is None or not step.inputs:
        return []
    short = [n for n in _claimed_sources(step.name, steps, claimed) if traces.written_resolution(n) > finest]
    if not short:
        return []
    for base in ("student", "written"):
        loose = traces.get(base)
        value, radius = spread(step.rule, loose.values, loose.radius, u)
        if reproduces(check.claimed, check.resolution, check.tolerance, value, radius, u):
            break
    else:
        return []
    by_digits: dict[str, list[str]] = {}
    for n in short:
        by_digits.setdefault(_digits(traces.written_resolution(n)), []).append(n)
    parts = [" and ".join(names) + ("" if i else " were" if len(names) > 1 else " was") + f" written {digits}"
             for i, (digits, names) in enumerate(by_digits.items())]
    one = len(short) == 1
    return [f"{', and '.join(parts)}; read as exact, {'it does' if one else 'they do'} not give these numbers."]


def _digits(resolution: float) -> str:
    """How a number of this resolution was written: ``with 1 decimal``, ``in whole numbers``."""
    d = max(0, round(float(-np.log10(2 * resolution))))
    return "in whole numbers" if d == 0 else f"with {d} decimal" + ("s" if d > 1 else "")


def _claimed_sources(name: str, steps, claimed: set[str]) -> list[str]:
    """The claims step ``name`` reads, directly or through steps not written down."""
    found, seen, todo = set(), set(), list(steps[name].inputs)
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        if i in claimed:
            found.add(i)
        elif steps[i].kind != "data":
            todo += steps[i].inputs
    return [n for n in steps if n in found]


def _imprecise(step: Step, written: StudentTrace, student: StudentTrace) -> list[str]:
    """The inputs of ``step`` that the claims as written round (a carried rounding, not a carried
    mistake): known only within a radius, or not the value the right claims stand for."""
    return [i for i in step.inputs if np.any(written.radius.get(i, 0) > 0)
            or not np.array_equal(written.values[i], student.values[i])]


def _does_not_follow(report: ClaimReport, wrong, case: Case) -> str:
    """What the right rule gives, from the true inputs and from the student's (when they differ), in the
    user's convention."""
    step = report.step

    def _short(a):
        return _short_array(case.shown(step.name, a, np.shape(case.claimed[step.name].value)))

    if step.kind == "data":
        return f"{step.name} is not the data the file gives."
    bad = [i for i in step.inputs if wrong(i)]
    if step.kind in FORWARD_KINDS:
        given, them = (("the stated weights and inputs", "them") if step.kind == "linear"
                       else ("the stated network", "it"))
        text = (f"{step.name} does not follow from {given}: with {them}, {step.formula} = "
                f"{_short(report.check.true)}")
        if bad and report.from_your_inputs is not None:
            text += f"; from your {', '.join(bad)} it would be {_short(report.from_your_inputs)}"
        return text + "."
    if bad and report.from_your_inputs is not None:
        return (f"{step.name} does not follow from your {', '.join(bad)} either: "
                f"{step.formula} gives {_short(report.from_your_inputs)}.")
    return f"{step.formula} gives {_short(report.check.true)}."


def _equal_inputs_differ(check: ClaimCheck, step: Step, case: Case) -> list[str]:
    """Two samples with the same X must have the same forward rows."""
    if step.kind not in ("linear", "activation") or check.status != "wrong":
        return []
    X = case.X
    for i in range(X.shape[0]):
        for j in range(i + 1, X.shape[0]):
            if np.array_equal(X[i], X[j]):
                gap = np.abs(check.claimed[i] - check.claimed[j])
                if np.any(gap > check.resolution[i] + check.resolution[j]):
                    return [(f"Samples {i} and {j} have the same X, so their rows of {check.name} "
                             f"must be equal; the claimed rows differ.")]
    return []


def _short_array(a: np.ndarray) -> str:
    """A small array the way a student writes it: ``[[0.25, 0.05], [0.25, 0.05]]``."""
    a = np.asarray(a, dtype=np.float64)
    if a.size > 12:
        return f"an array of shape {a.shape}"
    return np.array2string(a, separator=", ", formatter={"float_kind": lambda x: f"{x:.6g}"},
                           max_line_width=400).replace("\n", "")
