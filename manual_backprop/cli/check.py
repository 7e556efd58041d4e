"""``manual-backprop check``: every tensor of the hand-derived pass against PyTorch, JAX and finite differences."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..checking.checker import CheckReport, check
from ..compare import K
from ..display import cells
from ..display.output import add_output_options, check_output_options, write_outputs
from ..environment import summary
from .common import add_case_options, case_from_args, print_json, printable


def add_parser(sub) -> None:
    p = sub.add_parser(
        "check", help="compare every tensor of the NumPy backward with PyTorch, JAX and finite differences",
        description="Run the NumPy forward and hand-derived backward, run the same network in every "
                    "installed reference, and compare every tensor by name. Exit 0 if all agree, "
                    "1 if some tensor disagrees, 2 if the input is wrong.")
    add_case_options(p)
    p.add_argument("--against", metavar="REFS", help="comma-separated references: torch,jax,fd (default: every installed one)")
    p.add_argument("--device", metavar="DEV", help="where torch and JAX run: cpu (default) or cuda")
    p.add_argument("--json", action="store_true", help="one JSON object on standard output")
    p.add_argument("--profile", action="store_true", help="show where the time went (engine, each reference, comparison)")
    p.add_argument("--per-sample", action="store_true",
                   help="also check dWl_per_sample and dbl_per_sample against torch.func and jax.vmap")
    p.add_argument("--lr", type=float, metavar="RATE",
                   help="also take one descent step W - lr*dW and check Wl_next, bl_next (default: the file's [sgd])")
    p.add_argument("--values", action="store_true",
                   help="after the table, print every tensor's true value (the engine's, as --json gives it) in "
                        "full: the shortest decimals that read back as the same float; with --json it changes "
                        "nothing (the JSON already holds every value)")
    add_output_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.lr is not None:  # options first: a bad one costs no work
        from ..engine.sgd import check_learning_rate

        check_learning_rate(args.lr, "--lr")
    check_output_options(args)
    case = case_from_args(args)
    against = args.against.split(",") if args.against is not None else None
    report = check(case, against=against, device=args.device, per_sample=args.per_sample, learning_rate=args.lr,
                   parallel=True)
    write_outputs(report, args)
    if args.json:
        print_json(report.to_json())
    else:
        render(report, profile=args.profile, values=args.values)
    return 0 if report.ok else 1


def _fmt(x: float | None) -> str:
    return cells.fmt(x)


def _index(name: str, idx: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, idx))}]" if idx else name


def verdict(report: CheckReport, name: str) -> str:
    """The verdict column (one rule, :func:`manual_backprop.display.cells.check_verdict`)."""
    return cells.check_verdict(report, name)[0]


def _cell(report: CheckReport, name: str, ref: str) -> str:
    """One reference's max|Δ| for one tensor: ``-`` if it has nothing to say there."""
    return cells.reference_cell(report, name, ref)


def _margins(report: CheckReport, name: str | None = None) -> list[float]:
    """The margins the verdicts rest on (after the kink allowance), of one tensor or of all."""
    return cells.margins(report, name)


def _judge_hint() -> str:
    from .. import references

    if any(references.is_installed(r) for r in ("torch", "jax")):
        return "name torch or jax in --against to judge them"
    return "install torch or JAX to judge them"


def render(report: CheckReport, profile: bool = False, file=None, values: bool = False) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = file or sys.stdout
    console = Console(file=out, highlight=False, width=None if out.isatty() else 120)
    case = report.case
    from .. import references

    if case.title:  # escaped: a title or path with [brackets] is the user's text, not markup
        console.print(f"[bold]{escape(printable(case.title))}[/bold]")
    console.print(f"network {case.describe_network()} · batch {case.batch} · seed {case.seed} · {escape(printable(case.source))}")
    versions = []
    for r in report.references:
        if report.versions.get(r):  # from the process that ran it: nothing is imported here for it
            versions.append(f"{r} {report.versions[r]}")
            continue
        try:
            versions.append(f"{r} {references.load(r).version()}")
        except Exception:  # the version is decoration; never fail a report on it
            versions.append(r)
    console.print("references: " + (", ".join(versions) if versions else "none"))
    console.print(f"[dim]environment: {escape(summary(report.environment))}[/dim]", soft_wrap=True)
    for r, why in report.skipped.items():
        console.print(f"[yellow]skipped {r}: {why}[/yellow]")

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("tensor")
    table.add_column("shape")
    for r in report.references:
        table.add_column(f"{r} max|Δ|", justify="right")
    table.add_column("margin", justify="right")
    table.add_column("verdict")
    for name in report.order:
        margins = _margins(report, name)
        v = verdict(report, name)
        style = ("red" if v.startswith(("FAIL", "NOT JUDGED")) else
                 "yellow" if "kink" in v else "dim" if v == "not judged" else "")
        table.add_row(
            name, str(tuple(report.case.shown(name, report.trace[name]).shape)),
            *[_cell(report, name, r) for r in report.references],
            _fmt(max(margins)) if margins else "-",
            f"[{style}]{v}[/{style}]" if style else v,
        )
    console.print(table)
    console.print("[dim]margin = worst |Δ| / tolerance, over the references (≤ 1 passes; after the kink "
                  f"allowance where one applies); tolerance = {K:g}·√n·u·magnitude + floor (README)[/dim]")

    for notice in report.notices:
        console.print(f"[yellow]{escape(notice)}[/yellow]", soft_wrap=True)
    first = report.first_divergence
    not_judged, forward = report.not_judged, report.forward_not_judged
    refs = ", ".join(report.references) or "no reference"
    if not_judged:
        console.print(f"[red bold]{len(not_judged)} tensor(s) were not judged by any reference: "
                      f"{', '.join(not_judged)}; {_judge_hint()}.[/red bold]", soft_wrap=True)
        for name in not_judged[:3]:
            for r, c in report.checks.get(name, {}).items():
                if c.note:
                    console.print(f"  {name}: {r}: {escape(c.note)}", soft_wrap=True)
    if first is None:
        margins = _margins(report)
        kinks = [n for n in report.order if "kink" in verdict(report, n)]
        judged = [n for n in report.order if report.judged(n)]
        largest = f"largest margin {_fmt(max(margins)) if margins else '-'} of the tolerance"
        if not_judged:
            console.print(f"The {len(judged)} tensor(s) judged agree with {refs} ({largest}); "
                          "not judged is not agreement.", soft_wrap=True)
        elif forward:
            console.print(f"[green]All {len(judged)} gradients agree with {refs} ({largest}).[/green]")
        else:
            console.print(f"[green]All {len(report.order)} tensors agree with {refs} ({largest}).[/green]")
        if forward:
            console.print(f"[dim]{', '.join(forward)} (forward values) were not judged: finite differences "
                          "differentiate the engine's own forward, so they cannot judge it; torch or JAX would.[/dim]",
                          soft_wrap=True)
        if kinks:
            alone = [c.margin for n in kinks for c in report.checks[n].values()
                     if c.status == "kink" and c.margin is not None]
            console.print(f"[yellow]{', '.join(kinks)}: agree once rounding at a ReLU kink is allowed for "
                          f"(margin {_fmt(max(alone)) if alone else '-'} of the rounding tolerance alone).[/yellow]",
                          soft_wrap=True)
    else:
        bad = report.failing
        console.print(f"[red bold]First divergence: {first}[/red bold] ({len(bad)} tensor(s) disagree: {', '.join(bad)})")
        for r, c in report.checks[first].items():
            if not c.failed:
                continue
            if c.worst is not None and c.status in ("fail", "nonfinite"):  # the comparator's one sentence
                console.print(f"  worst element {escape(c.message(ours='numpy'))}", soft_wrap=True)
            elif c.note:
                console.print(f"  {r}: {escape(c.note)}")
        before = report.step_before(first)
        if before is not None:
            state = ("also disagrees" if verdict(report, before).startswith("FAIL") else
                     "was not judged by any reference" if not report.judged(before) else
                     "agrees with every reference that judged it")
            line = f"  step before: {before} {state}"
            prev = np.asarray(report.trace[before])
            # an element index of the same tensor shape (finite differences' worst is a direction, not an element)
            worst = next((c.worst for c in report.checks[first].values()
                          if c.failed and c.worst and "directions" not in c.extra
                          and len(c.worst.index) == prev.ndim), None)
            if worst is not None and prev.shape == np.shape(report.trace[first]) and worst.index:
                line += f"; {_index(before, worst.index)} = {float(prev[worst.index]):.10g}"
            console.print(line)
        if report.float32_failure is not None:
            cause = report.float32_failure
            console.print(f"[{'yellow' if cause.cause == 'rounding' else 'red'}]  rounding or bug? "
                          f"re-run in float64: {cause.headline}[/]")
            console.print(f"    {cause.detail}", soft_wrap=True)
    unjudged = cells.claims_not_judged(report)
    if unjudged:
        console.print(f"[yellow]{escape(unjudged)}[/yellow]", soft_wrap=True)
    if show_per_sample(report):
        render_per_sample(report, console)
    if values:
        render_values(report, console)
    if profile:
        t = report.timings
        console.print("time: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items())
                      + f" (total {sum(t.values()) * 1e3:.1f} ms)")


def value_text(value, dtype: str) -> str:
    """A tensor's value (``--json``'s nested lists) in full, as NumPy prints it: every element with the
    fewest decimals that read back as the same number of ``dtype`` (``floatmode="unique"``, the
    ``repr`` of each float), never summarised with "...", one matrix row per line."""
    try:
        a = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):  # a NaN or Inf written as a string, an unexpected dtype
        a = np.asarray(value, dtype=np.float64)
    return np.array2string(a, separator=", ", floatmode="unique", threshold=sys.maxsize,
                           max_line_width=sys.maxsize, suppress_small=False)


def render_values(report: CheckReport, console) -> None:
    """``--values``: each tensor's name, shape and value, in the order of the table, taken from the
    ``--json`` object (so that they are exactly what it gives: the file's layout among them)."""
    from rich.markup import escape

    tensors = report.to_json()["tensors"]
    console.print("Values (the engine's, as --json gives them; each float in full):")
    for name in report.order:
        t = tensors[name]
        console.print(f"{name} {tuple(t['shape'])}")
        console.print(escape(value_text(t["value"], t.get("dtype", "float64"))), soft_wrap=True, highlight=False)


#: Networks this small get seed 000's table: one row per sample, each gradient as that sample alone sees it.
#: With --per-sample, the table is shown up to 8 samples and 64 parameters.
PER_SAMPLE_ROWS, PER_SAMPLE_PARAMETERS = 2, 16


def show_per_sample(report: CheckReport) -> bool:
    case = report.case
    n_params = sum(int(np.prod(s)) for s in case.network.parameter_shapes().values())
    if report.extra and any(n.endswith("_per_sample") for n in report.extra):
        return case.batch <= 4 * PER_SAMPLE_ROWS and n_params <= 4 * PER_SAMPLE_PARAMETERS
    return case.batch <= PER_SAMPLE_ROWS and n_params <= PER_SAMPLE_PARAMETERS


def render_per_sample(report: CheckReport, console) -> None:
    """Seed 000's table: for each sample i, the gradients of its own term l_i."""
    from rich.table import Table

    from ..engine.per_sample import normalisation, per_sample_rows

    net = report.case.network
    rows = per_sample_rows(net, report.trace)
    names = ["dX"]
    for l in range(1, net.depth + 1):
        names += [n for n in (f"dW{l}", f"db{l}", f"dZ{l}", f"dA{l}") if n in rows[0]]
    c = normalisation(net, report.case.batch)
    penalty = " plus the L2 term's gradient, which is no sample's" if net.regularized else ""
    console.print(f"Per sample (the gradients of each sample's own term l_i; the batch gradient is "
                  f"{_fmt(c)} × their sum{penalty}):")
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("tensor", no_wrap=True)
    table.add_column("sample", justify="right", no_wrap=True)
    table.add_column("its own gradient")
    for n in names:
        for i, row in enumerate(rows):
            table.add_row(n if i == 0 else "", str(i), _compact(row[n]))
    console.print(table)


def _compact(a) -> str:
    """``[[0.1, -0.2], [0, 0]]``: 5 significant digits, no padding."""
    a = np.asarray(a)
    if a.ndim == 0:
        v = float(a)
        return "0" if v == 0 else f"{v:.5g}"
    return "[" + ", ".join(_compact(x) for x in a) + "]"
