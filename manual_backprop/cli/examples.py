"""``manual-backprop examples``: list the worked examples shipped with the package."""

from __future__ import annotations

import argparse

from ..description.catalog import example_names, load_example
from .common import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("examples", help="list the shipped worked examples",
                       description="List the worked examples shipped with the package. "
                                   "Use one with `check --example NAME` or `validate --example NAME`.")
    p.add_argument("--json", action="store_true", help="one JSON object on standard output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in example_names():
        case = load_example(name)
        rows.append({"name": name, "title": case.title, "network": case.network.describe(),
                     "batch": case.batch, "claims": sorted(case.claimed)})
    if args.json:
        print_json({"ok": True, "examples": rows})
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, box=None, pad_edge=False)
    table.add_column("name", style="bold")
    table.add_column("network")
    table.add_column("claims", justify="right")
    table.add_column("title")
    for r in rows:
        table.add_row(r["name"], r["network"], str(len(r["claims"])) if r["claims"] else "-", r["title"])
    console = Console(width=None if _tty() else 160)
    console.print(table)
    console.print("Every example runs with `manual-backprop check --example NAME`; one with claims "
                  "(a derivation) with `manual-backprop validate --example NAME`.")
    return 0


def _tty() -> bool:
    import sys

    return sys.stdout.isatty()
