"""``manual-backprop validate``: a hand derivation's claims beside the truth, and the mistake behind a wrong one.

With ``--code FILE.py:NAME`` it judges the user's own NumPy code instead of a
``[claimed]`` table: NAME (a function ``fn(params, X, Y)``, a class, or an
instance with ``params`` and ``loss(X, y)``) is imported from FILE.py and run
on the network's trials by :func:`~manual_backprop.testing.network.check_network`
(the file's parameters and data for the first trial). Exit 0 when every
trial is right, 1 when something is wrong (the code raising included), 2 for a
bad ``--code`` value, a missing file, an import that raises, a missing NAME or
a NAME of no recognised form (one line on standard error).
"""

from __future__ import annotations

import argparse
import sys

from ..description.catalog import load_example
from ..description.netfile import load_case
from ..display import cells
from ..display.cells import MARK, MAX_COLS, MAX_ROWS  # noqa: F401  (the table's limits, one place)
from ..display.output import add_output_options, check_output_options, write_outputs
from ..environment import describe, summary
from ..errors import InputError
from ..validation import Validation, validate
from ..validation.claims import WHOLE, in_layout
from .common import print_json, printable


def add_parser(sub) -> None:
    p = sub.add_parser(
        "validate", help="judge a hand derivation's [claimed] tensors and name the mistake behind a wrong one",
        description="Compare the file's [claimed] tensors with the true values at the precision they were "
                    "written with, tell a step's own error from one carried from an earlier step, and name "
                    "the classic mistake that reproduces a wrong claim (or none). Exit 0 if every claim is "
                    "right, 1 if some claim is wrong, 2 if the input is wrong.")
    p.add_argument("file", nargs="?", metavar="FILE", help="a network file (TOML) with a [claimed] table")
    p.add_argument("--example", metavar="NAME", help="a shipped example (see `manual-backprop examples`)")
    p.add_argument("--code", metavar="FILE.py:NAME",
                   help="judge your own code instead of [claimed]: NAME is fn(params, X, Y), a class, or an "
                        "object with params and loss(X, y), imported from FILE.py")
    p.add_argument("--layout", choices=("row", "column"),
                   help="read the file's tensors in this layout (overrides its [network] layout)")
    p.add_argument("--deltas", choices=("gradient", "per_sample"),
                   help="where the file's deltas keep the mean's 1/N (overrides its [network] deltas)")
    p.add_argument("--json", action="store_true", help="one JSON object on standard output")
    add_output_options(p)
    p.set_defaults(run=run)


def _load(args: argparse.Namespace):
    """The file or example, read in the layout and deltas the options name (the file's own otherwise)."""
    overrides = {k: getattr(args, k) for k in ("layout", "deltas") if getattr(args, k, None) is not None} or None
    return load_case(args.file, overrides) if args.file else load_example(args.example, overrides)


def run(args: argparse.Namespace) -> int:
    if args.file and args.example:
        raise InputError("give one of FILE or --example, not both")
    if not args.file and not args.example:
        raise InputError("validate needs a FILE with a [claimed] table, or --example NAME")
    check_output_options(args)
    if args.code is not None:
        return run_code(args)
    case = _load(args)
    report = validate(case)
    write_outputs(report, args)
    if args.json:
        print_json(report.to_json())
    else:
        render(report)
    return 0 if report.ok else 1


def run_code(args: argparse.Namespace) -> int:
    """``validate NETWORK.toml --code FILE.py:NAME``: the report of :func:`check_network`, 0 / 1 / 2."""
    import contextlib

    from ..testing.network import check_network

    path, name = code_option(args.code)
    case = _load(args)
    with contextlib.redirect_stdout(sys.stderr):  # the user's prints must not mix with the report (--json)
        code = load_code(path, name)
        report = check_network(code, case, name=name)
    write_outputs(report, args)
    if args.json:
        out = report.to_json()
        out["code"] = args.code
        out["environment"] = describe(case.seed)
        print_json(out)
    else:
        sys.stdout.write(printable_lines(report.message()) + "\n")
    return 0 if report.ok else 1


def printable_lines(text: str) -> str:
    """Each line of ``text`` made safe for a terminal (the user's own words are in it)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def code_option(value: str) -> tuple[str, str]:
    """``FILE.py:NAME`` split at its last colon (a Windows drive's colon stays in FILE)."""
    path, sep, name = value.rpartition(":")
    if not sep or not path or not name:
        raise InputError(f"--code must be FILE.py:NAME (a function, class or object in a Python file), "
                         f"got {value!r}")
    if not name.isidentifier():
        raise InputError(f"--code {value!r}: {name!r} is not a Python name")
    return path, name


def load_code(path: str, name: str):
    """``NAME`` from the Python file at ``path``, imported with the file's folder on ``sys.path``.

    A missing file, an import that raises (``importing my_net.py raised NameError: ...``) or a
    missing NAME is an :class:`InputError`; only KeyboardInterrupt and SystemExit escape.
    """
    import hashlib
    import importlib.util
    from pathlib import Path

    from ..testing.signatures import exception as _exception

    file = Path(path)
    if not file.is_file():
        raise InputError(f"--code: no such file {path!r}" if not file.exists() else f"--code: {path!r} is not a file")
    if file.suffix != ".py":
        raise InputError(f"--code: {path!r} is not a Python file (FILE.py:NAME)")
    folder = str(file.resolve().parent)
    module_name = "manual_backprop_user_code_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    try:
        spec = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(spec)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001
        raise InputError(f"importing {file.name} raised {_exception(e)}") from None
    sys.path.insert(0, folder)
    sys.modules[module_name] = module  # dataclasses and pickling look their module up
    try:
        spec.loader.exec_module(module)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001  (the user's module, whatever it raises)
        sys.modules.pop(module_name, None)
        raise InputError(f"importing {file.name} raised {_exception(e)}") from None
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    if not hasattr(module, name):
        defined = [n for n, v in vars(module).items()
                   if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module_name]
        hint = f"; it defines {', '.join(defined)}" if defined else ""
        raise InputError(f"{file.name} has no {name!r}{hint}")
    return getattr(module, name)


def render(report: Validation, file=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = file or sys.stdout
    console = Console(file=out, highlight=False, width=None if out.isatty() else 120)
    case = report.case
    if case.title:
        console.print(f"[bold]{escape(printable(case.title))}[/bold]")
    console.print(f"network {case.describe_network()} · batch {case.batch} · {escape(printable(case.source))}")
    console.print(f"[dim]environment: {escape(summary(describe(case.seed)))}[/dim]")
    console.print(f"{cells.claims_judged(report)}; {MARK} marks a wrong element")

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("tensor", "claimed", "true"):
        table.add_column(column)
    table.add_column("verdict", no_wrap=True)
    for name, c in report.claims.items():
        check = c.check
        table.add_row(name, *_claim_cells(check), _verdict(c))
    console.print(table)

    if report.ok:
        console.print(f"[green]{report.summary()[0]}[/green]")
        return
    first = report.claims[report.first_wrong]
    console.print(f"[red bold]{report.summary()[0]}[/red bold]")
    for name in report.own_errors:
        c = report.claims[name]
        _say(console, f"{name}: " + (c.diagnosis or "no classic mistake reproduces these numbers at their "
                                                     "written precision."), 2)
        for note in c.notes:
            _say(console, note, 4)
    if first.error == "carried":
        _say(console, first.diagnosis, 2)
    if report.carried_errors:
        carried = ", ".join(f"{n} (from {', '.join(report.claims[n].carried_from)})" for n in report.carried_errors)
        _say(console, f"Carried, the right rule applied to a wrong input: {carried}.", 0)
    console.print(report.summary()[-1])


def _say(console, text: str, indent: int) -> None:
    """A sentence wrapped to the console, its continuation lines indented under its first."""
    import textwrap

    width = max(40, (console.width or 120) - 1)
    console.print(textwrap.fill(text, width, initial_indent=" " * indent, subsequent_indent=" " * (indent + 2),
                                break_on_hyphens=False), markup=False, soft_wrap=True)


def _verdict(c) -> str:
    """The verdict column (one rule, :func:`manual_backprop.display.cells.claim_verdict`), coloured."""
    text, kind = cells.claim_verdict(c)
    return {"carried": f"[yellow]{text}[/yellow]", "own": f"[red bold]{text}[/red bold]"}.get(kind, text)


def _element(text: str, wrong: bool) -> str:
    from rich.markup import escape

    return f"[red]{escape(text)}{MARK}[/red]" if wrong else escape(text)


def _claim_cells(check) -> tuple[str, str]:
    """The claimed and the true cell of one claim, as rich markup (:func:`manual_backprop.display.cells.claim_lines`)."""
    claimed, true = cells.claim_lines(check, WHOLE, in_layout, _element)
    return "\n".join(claimed), "\n".join(true)
