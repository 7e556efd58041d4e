"""``manual-backprop report RESULTS.json``: a Markdown table and a plot from a benchmark run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bench import report as benchreport
from ..errors import InputError
from .common import print_json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="turn a benchmark run (pytest-benchmark JSON) into a table and a plot",
        description="Read the JSON written by `pytest benchmarks --benchmark-json=RESULTS.json` and write "
                    "report.md (medians, the target ratios, kernels, memory, environment) and report.png "
                    "(time against batch size, log-log). Exit code 1 when --compare finds a regression.")
    p.add_argument("results", metavar="RESULTS.json", help="a pytest-benchmark JSON file")
    p.add_argument("--compare", metavar="OLD.json", help="an older run to compare with; regressions are flagged")
    p.add_argument("--threshold", type=float, default=1.25, metavar="RATIO",
                   help="new/old median above which a benchmark counts as a regression (default 1.25)")
    p.add_argument("--output", metavar="DIR", default="benchmark-report",
                   help="folder for report.md and report.png (default: ./benchmark-report)")
    p.add_argument("--json", action="store_true", help="one JSON object on standard output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.threshold <= 0:
        raise InputError(f"--threshold must be a positive ratio, got {args.threshold}")
    report = benchreport.build(benchreport.load(args.results), args.results)
    if not report.times and not report.kernels and not report.memory:
        raise InputError(f"{args.results}: no benchmarks from manual_backprop's benchmarks/ folder in it")
    comparison = None
    if args.compare:
        old = benchreport.build(benchreport.load(args.compare), args.compare)
        comparison = benchreport.compare(report, old, args.threshold)
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--output {out}: cannot create the folder ({exc.strerror or exc})") from None
    text = benchreport.markdown(report, comparison)
    (out / "report.md").write_text(text, encoding="utf-8")
    png = benchreport.plot(report, out / "report.png")
    regressed = any(c["regression"] for c in comparison or [])
    if args.json:
        print_json({**benchreport.summary(report, comparison),
                    "report": str(out / "report.md"), "plot": str(png) if png else None})
    else:
        sys.stdout.write(text)
        sys.stdout.write(f"\nwrote {out / 'report.md'}" + (f" and {png}" if png else "") + "\n")
    return 1 if regressed else 0
