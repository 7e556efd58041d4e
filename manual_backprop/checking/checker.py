"""``check``: run the engine and every reference on one case, and compare every tensor.

>>> from manual_backprop import load_example, check
>>> report = check(load_example("seed-002"))
>>> report.ok, report.first_divergence, report.not_judged
(True, None, [])

A tensor no reference judged is never counted as agreement: a gradient (a
backward tensor, a per-sample gradient, a descent step) that no reference
could judge makes the check fail to pass (``ok`` False, exit 1) without being
a divergence (``first_divergence`` names only a tensor some reference
disagrees with). Forward tensors judged by no reference (finite differences
alone cannot judge them) are listed too, but do not by themselves fail.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..compare import (
    TensorCheck,
    compare_arrays,
    compare_projections,
    compare_traces,
    compared_names,
    error_scales,
)
from ..compare.comparator import NOT_JUDGED
from ..description.case import Case, as_float64
from ..description.optimizer import sgd
from ..engine.trace import Trace
from ..errors import InputError
from .overflow import ensure_representable, ensure_step_representable, run_quietly, unfused_gradient_left_out
from .rounding import Verdict, explain_float32_failure, needs_explaining

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
    #: For a failed float32 check: rounding or bug, from the same case re-run in float64 (see rounding.py).
    float32_failure: Verdict | None = None
    #: Names judged beyond the trace (per-sample gradients, the descent step), in order.
    extra: list[str] = field(default_factory=list)
    #: The rounding scale E of every tensor (compare.tolerance.error_scales).
    scales: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: Each reference's framework version, from the process that ran it (``torch 2.13.0+cpu``).
    versions: dict[str, str] = field(default_factory=dict)
    #: Sentences the report must show (what could not be judged, and why).
    notices: list[str] = field(default_factory=list)
    #: Tensors left out of the check, each with why (a fused network's dA_L where it is infinite): never
    #: compared, so never counted as agreement; a notice says so.
    left_out: dict[str, str] = field(default_factory=dict)
    #: False only in the view the float32 verdict reads (:func:`_failures_only`): there, a tensor no
    #: reference judged does not count against ``ok``.
    require_judged: bool = field(default=True, repr=False)

    @property
    def order(self) -> list[str]:
        return [n for n in compared_names(self.case.network) if n not in self.left_out] + self.extra

    @property
    def gradients(self) -> list[str]:
        """The tensors a check must judge to pass: backward tensors, per-sample gradients, descent steps."""
        return [n for n in self.case.network.backward_names() if n not in self.left_out] + self.extra

    def judged(self, name: str) -> bool:
        """Whether some reference judged ``name`` (agreeing or not)."""
        return any(c.judged for c in self.checks.get(name, {}).values())

    @property
    def not_judged(self) -> list[str]:
        """The gradients no reference judged, in order: each one keeps ``ok`` False."""
        return [n for n in self.gradients if not self.judged(n)]

    @property
    def forward_not_judged(self) -> list[str]:
        """Forward tensors (Z, A, L) no reference judged: finite differences alone cannot judge them."""
        gradients = set(self.gradients)
        return [n for n in self.order if n not in gradients and not self.judged(n)]

    @property
    def failing(self) -> list[str]:
        """Every tensor some reference disagrees with, in order."""
        return [n for n in self.order if any(c.failed for c in self.checks.get(n, {}).values())]

    @property
    def ok(self) -> bool:
        """No reference disagrees with any tensor, and every gradient was judged by some reference."""
        return not self.failing and not (self.require_judged and self.not_judged)

    @property
    def first_divergence(self) -> str | None:
        """The first tensor, forward then backward order, that some reference disagrees with (not judged is not)."""
        failing = self.failing
        return failing[0] if failing else None

    @property
    def claims_not_judged(self) -> list[str]:
        """The case's claimed names (``[claimed]`` of the file), in the file's order: ``check`` compares
        the engine with the references and judges none of them (``validate`` does)."""
        return list(self.case.claimed or {})

    def step_before(self, name: str) -> str | None:
        """The tensor judged just before ``name`` (its upstream step in backward order)."""
        order = self.order
        i = order.index(name)
        return order[i - 1] if i > 0 else None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object (the README's "--json" section)."""
        tensors = {}
        for name in self.order:
            value = self.case.shown(name, self.trace[name])  # in the file's layout, bias shapes and 1/N
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
            "not_judged": self.not_judged,
            "forward_not_judged": self.forward_not_judged,
            "claims_not_judged": self.claims_not_judged,
            "notices": self.notices,
            "left_out": self.left_out,
            "network": self.case.describe_network(),
            "title": self.case.title,
            "source": self.case.source,
            "references": self.references,
            "skipped_references": self.skipped,
            "tensors": tensors,
            "float32_failure": self.float32_failure.to_json() if self.float32_failure is not None else None,
            "environment": self.environment,
            "timings_s": self.timings,
        }
        if first is not None:
            out["step_before_first_divergence"] = self.step_before(first)
        return out

    # --- how it looks in a notebook and on a page (manual_backprop.display) ---------------------

    def _repr_html_(self) -> str:
        """The notebook table: the terminal's columns (tensor, shape, max|Δ| per reference, margin,
        verdict) and each tensor's value; verdicts coloured, a tensor not judged grey."""
        from ..display.html import report_html

        return report_html(self)

    def __repr__(self) -> str:
        from ..display.html import report_text

        return report_text(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        from ..display.html import pretty

        pretty(self, printer, cycle)

    def to_html(self, path: Any = None, *, backend: str | None = None) -> str:
        """One self-contained HTML page: the network with every tensor on it, coloured by verdict, and
        the table; written atomically to ``path`` when given. ``backend``: ``"graphviz"`` or ``"own"``."""
        from ..display.html import page
        from ..files import write_atomically

        text = page(self, backend=backend)
        if path is not None:
            write_atomically(path, text)
        return text


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
          engine_trace: Trace | None = None, per_sample: bool = False,
          learning_rate: float | None = None, parallel: bool = False) -> CheckReport:
    """Run ``case`` through the engine and the references, and compare every tensor.

    ``against=None`` means every installed reference (a missing framework is
    skipped and noted in ``report.skipped``); naming one that is not installed
    raises :class:`~manual_backprop.errors.InputError` with the install hint.
    ``per_sample`` adds ``dWl_per_sample`` and ``dbl_per_sample``; a learning
    rate (or the case's ``[sgd]`` table) adds ``Wl_next`` and ``bl_next``, both
    judged against torch and JAX; with finite differences alone they are
    ``not judged`` (fd sees only the batch gradient), which keeps ``ok`` False.
    ``parallel`` runs torch and JAX each in a process of its own, their imports overlapping
    (:mod:`.parallel`; the command line's ``check`` asks for it).
    """
    from ..environment import describe

    names, explicit = resolve_references(against)
    from ..engine.sgd import check_learning_rate

    # --lr asks for the plain step at that rate; otherwise the case's own ([optimizer], else [sgd])
    step = sgd(check_learning_rate(learning_rate, "--lr")) if learning_rate is not None else case.step
    if per_sample:
        from ..engine.per_sample import refuse_batchnorm
        refuse_batchnorm(case.network)
    if step is not None and case.network.has_norm:
        raise InputError(f"{case.source}: an optimiser step ([sgd], [optimizer], --lr) is not checked on a network "
                         f"with a norm yet: its Wl_next, gammal_next are not named; check the gradients alone")
    with blas_threads_for(case):
        parallel = parallel and not per_sample and step is None
        report = _check(case, names, explicit, device, engine_trace, describe, parallel)
        if per_sample or step is not None:
            _check_beyond_the_trace(report, per_sample, step, learning_rate)
        if report.first_divergence is not None and needs_explaining(report):
            t0 = time.perf_counter()
            report64 = check(as_float64(case), against=report.references, per_sample=per_sample,
                             learning_rate=learning_rate)
            # rounding or bug is a question about disagreements: what no reference judged plays no part
            report.float32_failure = explain_float32_failure(_failures_only(report), _failures_only(report64))
            report.timings["float64 re-run"] = time.perf_counter() - t0
    return report


def _failures_only(report: CheckReport) -> CheckReport:
    """A view of ``report`` without its not-judged checks, whose ``ok`` means "nothing disagrees"."""
    view = copy.copy(report)
    view.checks = {n: {r: c for r, c in per.items() if c.judged} for n, per in report.checks.items()}
    view.require_judged = False
    return view


def _check_beyond_the_trace(report: CheckReport, per_sample: bool, step, learning_rate: float | None) -> None:
    """Per-sample gradients and one optimiser step (``step``; ``learning_rate`` when --lr asked for it),
    against the frameworks' own training tools (torch.optim, and the update written out in JAX)."""
    from .. import references
    from ..compare import per_sample_error_scales, step_error_scales
    from ..engine.per_sample import per_sample_gradients
    from ..engine.sgd import next_parameters

    case, trace, E = report.case, report.trace, report.scales
    frameworks = [r for r in report.references if r != "fd"]
    if not frameworks:
        asked = " and ".join(what for what, on in (("the per-sample gradients (--per-sample)", per_sample),
                                                   ("the optimiser step", step is not None)) if on)
        report.notices.append(f"{asked} need torch or JAX: finite differences of the loss judge the batch "
                              f"gradient only, so they are not judged")
    tables: list[tuple[dict, dict, str, Any]] = []  # (ours, error scales, what, the reference's call)
    if per_sample:
        ours = per_sample_gradients(case, trace)
        tables.append((ours, per_sample_error_scales(case.network, trace, E), "per_sample_gradients",
                       lambda module: module.per_sample_gradients(case)))
    if step is not None and step.steps > 1 and learning_rate is None and frameworks:
        _check_trajectory(report, frameworks)
    elif step is not None:
        ensure_step_representable(case, step, trace)  # a step beyond the dtype is an input error, never a failure
        ours = next_parameters(case, learning_rate, trace)
        tables.append((ours, step_error_scales(case.network, case.params, trace, E, step), "next_parameters",
                       lambda module: module.next_parameters(case, learning_rate)))
    for ours, scales, function, call in tables:
        theirs = {}
        for ref in frameworks:
            module = references.load(ref)
            t0 = time.perf_counter()
            theirs[ref] = call(module)
            report.timings[f"{ref}:{function}"] = time.perf_counter() - t0
        for name, value in ours.items():
            trace[name] = value
            report.extra.append(name)
            report.checks[name] = {
                ref: compare_arrays(name, ref, value, theirs[ref].get(name), scales[name], case.network.dtype)
                for ref in frameworks
            }
            if not frameworks and "fd" in report.references:
                report.checks[name]["fd"] = TensorCheck(
                    name, "fd", NOT_JUDGED,
                    note="finite differences of the loss cannot judge it: torch or JAX can")


def _check_trajectory(report: CheckReport, frameworks: list[str]) -> None:
    """``steps = k``: every step compared with the frameworks' step from the engine's previous one.

    Each step starts from the engine's parameters and state after the step before (teacher-forced),
    so each is judged with the rounding scales of one step, never the compounded ones of k: a wrong
    rule shows at the first step, and the first step and tensor that disagree are named. The trace
    and the checks keep the last step's results (or the first failing step's).
    """
    from .. import references
    from ..compare import step_error_scales
    from ..engine.sgd import trajectory

    case = report.case
    chosen, first_bad = None, None
    with np.errstate(all="ignore"):
        steps = trajectory(case, report.trace)
    for j, (start, trace, ours) in enumerate(steps, start=1):
        ensure_representable(start, trace)
        ensure_step_representable(start, start.step, trace)
        E = error_scales(start.network, start.params, trace, start.T)
        scales = step_error_scales(start.network, start.params, trace, E, start.step)
        theirs = {ref: references.load(ref).next_parameters(start) for ref in frameworks}
        checks = {name: {ref: compare_arrays(name, ref, value, theirs[ref].get(name), scales[name],
                                             start.network.dtype) for ref in frameworks}
                  for name, value in ours.items()}
        chosen = (j, ours, checks)
        if any(not c.ok for per in checks.values() for c in per.values()):
            first_bad = chosen
            break
    j, ours, checks = first_bad or chosen
    for name, value in ours.items():
        report.trace[name] = value
        report.extra.append(name)
        report.checks[name] = checks[name]
    k = case.step.steps
    if first_bad is None:
        report.notices.append(f"{k} {case.step.rule} steps, each from the engine's step before it: every "
                              f"parameter and state agrees with {', '.join(frameworks)} after every step")
    else:
        bad = next(n for n, per in checks.items() if any(not c.ok for c in per.values()))
        report.notices.append(f"{k} {case.step.rule} steps: the first that disagrees is step {j} of {k}, at {bad} "
                              f"(the table shows that step)")


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


def _check(case, names, explicit, device, engine_trace, describe, parallel: bool = False) -> CheckReport:
    from .. import references
    from .parallel import FRAMEWORKS, start

    frameworks = [r for r in names if r in FRAMEWORKS and references.is_installed(r)]
    workers = start(frameworks, case, device) if parallel else None
    try:
        return _compare_all(case, names, explicit, device, engine_trace, describe, workers)
    except BaseException:
        if workers is not None:
            workers.close(cancel=True)
            workers = None
        raise
    finally:
        if workers is not None:
            workers.close()


def _compare_all(case, names, explicit, device, engine_trace, describe, workers) -> CheckReport:
    from .. import references

    timings: dict[str, float] = {}
    versions: dict[str, str] = {}
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
    # the references of this process first (finite differences): the workers import meanwhile
    order = sorted(names, key=lambda r: workers is not None and r in workers.futures)
    for ref in order:
        if not references.is_installed(ref):
            if explicit:
                references.load(ref)  # raises MissingReference with the install hint
            skipped[ref] = f"{ref} is not installed ({references.INSTALL_HINTS.get(ref, '')})"
            continue
        if workers is not None and ref in workers.futures:  # run in its own process, while the engine ran here
            t0 = time.perf_counter()
            result, loaded, timings[ref], versions[ref] = workers.result(ref)
            timings[f"import:{ref} (its own process)"] = loaded
            timings[f"wait:{ref}"] = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            module = references.load(ref)  # its framework's import, the first time in this process
            loaded = time.perf_counter() - t0
            if loaded > 1e-3:
                timings[f"import:{ref}"] = loaded
            t0 = time.perf_counter()
            result = module.run(case, device=device)
            timings[ref] = time.perf_counter() - t0
            try:
                versions[ref] = module.version()
            except Exception:  # noqa: BLE001  (the version is decoration; never fail a report on it)
                versions[ref] = ""
        t0 = time.perf_counter()
        if ref == "fd":
            per = compare_projections(case.network, trace, result, E, ref, params=case.params)
        else:
            per = compare_traces(case.network, case.params, trace, result, ref, E)
        timings[f"compare:{ref}"] = time.perf_counter() - t0
        for name, c in per.items():
            checks[name][ref] = c
        used.append(ref)
    used = [r for r in names if r in used]
    checks = {name: {r: per[r] for r in used if r in per} for name, per in checks.items()}
    report = CheckReport(case, trace, used, checks, skipped, timings, describe(case.seed))
    report.scales = E
    report.versions = versions
    why = unfused_gradient_left_out(case, trace, E)
    if why is not None:  # dL/dA_L is infinite (or undetermined) there: no reference can judge it
        L = case.network.depth
        report.left_out[f"dA{L}"] = why
        checks.pop(f"dA{L}", None)
        report.notices.append(f"dA{L} is left out (not judged, not counted): {why}; "
                              f"the fused dZ{L} = c·(A{L} − Y) is judged instead")
    return report
