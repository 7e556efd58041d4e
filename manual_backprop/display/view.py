"""Every report read into one shape: the table, the headline, and each tensor's verdict and true value.

A :class:`View` is what the notebook table, the plain-text ``repr`` and the page show; it is
made from a report object by its attributes (duck typing, so that this package imports none of
``checking``, ``validation``, ``testing``):

- a ``validate`` report (``claims``, ``truth``, ``steps``): the terminal's columns tensor,
  claimed, true, verdict; every tensor of the pass on the picture, a claimed one coloured by
  its verdict (right, own error, carried), one not claimed grey (not judged) with its true value;
- a ``check`` report (``trace``, ``checks``, ``references``): the columns tensor, shape, one
  max|Δ| per reference, margin, verdict, and the value (the engine's, which the references
  judged); a tensor no reference judged is grey (not judged), never right;
- a network check (``trials``, ``network``): the trials' table, then the tensors of the first
  failing trial (or of the first trial) as a ``validate`` report: your value and the true one;
- a layer or loss check (``checks`` a list, ``subject``): one row per check.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import cells


@dataclass
class Tensor:
    """One tensor as drawn: its verdict's kind and words, its shape, its true value (None: unknown)."""

    name: str
    kind: str
    verdict: str
    shape: tuple[int, ...]
    true: np.ndarray | None = None
    claimed: np.ndarray | None = None


@dataclass
class View:
    title: str
    subtitle: list[str]
    ok: bool
    #: The first wrong tensor, and the sentences under it (its diagnosis), shown above the table.
    first: str | None
    headline: list[str]
    columns: list[str]
    #: Each row: its cells as plain text lines and as HTML, and the verdict's kind.
    rows: list[tuple[list[str], list[str], str]]
    footer: list[str] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    network: Any = None
    params: dict[str, np.ndarray] | None = None
    #: More tables (title, columns, rows) shown after the main one.
    more: list[tuple[str, list[str], list[tuple[list[str], list[str], str]]]] = field(default_factory=list)


def _html_element(text: str, wrong: bool) -> str:
    text = html.escape(text)
    return f'<span class="mb-bad">{text}{cells.MARK}</span>' if wrong else text


def _text_element(text: str, wrong: bool) -> str:
    return f"{text}{cells.MARK}" if wrong else text


def _plain(value: Any) -> tuple[str, str]:
    lines = cells.plain_lines(value)
    return "\n".join(lines), "<br>".join(html.escape(x) for x in lines)


def make_view(report: Any, *, whole: float | None = None, layout: Callable | None = None) -> View:
    """The :class:`View` of any report of the package (``whole``, ``layout``: validation's rules for
    writing a claim, passed by the reports that have claims)."""
    if hasattr(report, "claims") and hasattr(report, "truth"):
        return _validation(report, whole, layout)
    if hasattr(report, "trace") and isinstance(getattr(report, "checks", None), dict):
        return _check(report)
    if hasattr(report, "trials") and hasattr(report, "network") and hasattr(report, "first_failing"):
        return _network(report, whole, layout)
    if isinstance(getattr(report, "checks", None), list):
        return _layer(report)
    raise TypeError(f"no view of a {type(report).__name__}")


# --- validate ------------------------------------------------------------------------------------

def _validation(report: Any, whole: float | None, layout: Callable | None, title: str | None = None) -> View:
    case = report.case
    net = case.network
    rows = []
    tensors: dict[str, Tensor] = {}
    for name, c in report.claims.items():
        verdict, kind = cells.claim_verdict(c)
        claimed_t, true_t = cells.claim_lines(c.check, whole, layout, _text_element)
        claimed_h, true_h = cells.claim_lines(c.check, whole, layout, _html_element)
        rows.append(([name, "\n".join(claimed_t), "\n".join(true_t), verdict],
                     [html.escape(name), "<br>".join(claimed_h), "<br>".join(true_h), html.escape(verdict)], kind))
        tensors[name] = Tensor(name, kind, verdict, tuple(np.shape(c.check.true)), np.asarray(c.check.true),
                               np.asarray(c.check.claimed))
    drawn = list(net.names()) + [n for n in report.steps if n.endswith("_next") and n in report.truth.values]
    unclaimed = []
    for name in drawn:
        if name in tensors or name not in report.truth.values:
            continue
        value = case.shown(name, report.truth.values[name])
        given = name in ("X", "Y")
        kind, verdict = ("data", "given") if given else ("not_judged", "not claimed (not judged)")
        tensors[name] = Tensor(name, kind, verdict, tuple(value.shape), value)
        t, h = _plain(value)
        unclaimed.append(([name, str(tuple(value.shape)), t, verdict],
                          [html.escape(name), html.escape(str(tuple(value.shape))), h, html.escape(verdict)], kind))
    for name, value in case.params.items():
        value = case.shown(name, value)
        tensors.setdefault(name, Tensor(name, "data", "given", tuple(np.shape(value)), value))
    first = report.first_wrong
    headline = []
    if first is None:
        headline.append(report.summary()[0])
    else:
        lines = report.summary()
        headline.append(lines[0])
        for name in report.own_errors:
            c = report.claims[name]
            headline.append(f"{name}: " + (c.diagnosis or "no classic mistake reproduces these numbers at their "
                                                           "written precision."))
            headline += list(c.notes)
        f = report.claims[first]
        if f.error == "carried" and f.diagnosis:
            headline.append(f.diagnosis)
        if report.carried_errors:
            headline.append("Carried, the right rule applied to a wrong input: " + ", ".join(
                f"{n} (from {', '.join(report.claims[n].carried_from)})" for n in report.carried_errors) + ".")
    subtitle = [f"network {case.describe_network()} · batch {case.batch} · {case.source}",
                f"{cells.claims_judged(report)}; {cells.MARK} marks a wrong element"]
    view = View(title or case.title or "validate", subtitle, report.ok, first, headline,
                ["tensor", "claimed", "true", "verdict"], rows, [report.summary()[-1]], tensors, net,
                {k: np.asarray(v) for k, v in case.params.items()})
    if unclaimed:
        view.more.append(("Not claimed: the true values", ["tensor", "shape", "true", "verdict"], unclaimed))
    return view


# --- check ---------------------------------------------------------------------------------------

def _check(report: Any) -> View:
    case = report.case
    net = case.network
    rows, tensors = [], {}
    first = report.first_divergence
    for name in report.order:
        row = cells.check_row(report, name)
        verdict, kind = cells.check_verdict(report, name)
        value = case.shown(name, report.trace[name])
        t, h = _plain(value)
        rows.append((row + [t], [html.escape(x) for x in row] + [h], kind))
        tensors[name] = Tensor(name, kind, verdict, tuple(value.shape), value)
    for name in ("X", "Y"):
        if name in report.trace:
            value = case.shown(name, report.trace[name])
            tensors[name] = Tensor(name, "data", "given", tuple(value.shape), value)
    for name, value in case.params.items():
        value = case.shown(name, value)
        tensors.setdefault(name, Tensor(name, "data", "given", tuple(np.shape(value)), value))
    refs = ", ".join(report.references) or "no reference"
    headline = []
    if first is not None:
        bad = report.failing
        headline.append(f"First divergence: {first} ({len(bad)} tensor(s) disagree: {', '.join(bad)})")
        for r, c in report.checks[first].items():
            if c.failed:
                headline.append(f"worst element {c.message(ours='numpy')}" if c.worst is not None
                                and c.status in ("fail", "nonfinite") else f"{r}: {c.note or c.status}")
        if report.float32_failure is not None:
            cause = report.float32_failure
            headline.append(f"float32: {cause.headline}: {cause.detail}")
    elif report.not_judged:
        headline.append(f"{len(report.not_judged)} tensor(s) were not judged by any reference: "
                        f"{', '.join(report.not_judged)}; not judged is not agreement.")
    else:
        m = cells.margins(report)
        headline.append(f"All {len(report.order)} tensors agree with {refs} "
                        f"(largest margin {cells.fmt(max(m)) if m else '-'} of the tolerance)."
                        if not report.forward_not_judged else
                        f"All gradients agree with {refs}; {', '.join(report.forward_not_judged)} "
                        f"(forward values) were not judged.")
    headline += list(report.notices)
    subtitle = [f"network {case.describe_network()} · batch {case.batch} · seed {case.seed} · {case.source}",
                "references: " + refs]
    subtitle += [f"skipped {r}: {why}" for r, why in report.skipped.items()]
    footer = ["margin = worst |Δ| / tolerance, over the references (≤ 1 passes; after the kink allowance where "
              "one applies); value = the engine's, as the references judged it"]
    unjudged = cells.claims_not_judged(report)
    if unjudged:
        footer.append(unjudged)
    return View(case.title or "check", subtitle, report.ok, first, headline,
                cells.check_columns(report) + ["value"], rows, footer, tensors, net,
                {k: np.asarray(v) for k, v in case.params.items()})


# --- a network check (your code) and a layer or loss check --------------------------------------

def _network(report: Any, whole: float | None, layout: Callable | None) -> View:
    rows = []
    for t in report.trials:
        kind = "right" if t.ok else ("not_judged" if t.validation is None else "wrong")
        texts = [t.name, str(t.batch), t.dtype, t.verdict()]
        rows.append((texts, [html.escape(x) for x in texts], kind))
    failing = report.first_failing
    shown = failing if failing is not None and failing.validation is not None else next(
        (t for t in report.trials if t.validation is not None), None)
    view = View(f"{report.name}: {report.form}", [f"network {report.network.describe()} · {report.source}"],
                report.ok, report.first_wrong, report.summary(), ["trial", "batch", "dtype", "verdict"], rows,
                [report.truth[0].upper() + report.truth[1:] + "."] if report.truth else [], {}, report.network)
    if shown is not None and shown.validation.claims:
        inner = _validation(shown.validation, whole, layout)
        inner.columns = ["tensor", "yours", "true", "verdict"]
        view.more.append((f"Tensors of the {shown.name} trial (in derivation order)", inner.columns, inner.rows))
        view.more += inner.more
        view.tensors, view.params = inner.tensors, inner.params
    return view


def _layer(report: Any) -> View:
    rows = []
    for c in report.checks:
        kind = "right" if c.ok else "not_judged" if c.ok is None else "wrong"
        texts = [c.name, str(c.extra.get("trial", "")), c.reference, c.status, cells.fmt(c.max_abs_err),
                 cells.fmt(c.margin), c.note if c.ok is not False or c.status == "error" else c.message(ours="yours")]
        rows.append((texts, [html.escape(x) for x in texts], kind))
    head = [] if report.ok else [report.message()]
    return View(report.subject(), [f"called as {report.form}", "references: " + ", ".join(report.references)],
                report.ok, report.first_wrong, head or [report.message()],
                ["tensor", "trial", "reference", "status", "max|Δ|", "margin", "note"], rows)
