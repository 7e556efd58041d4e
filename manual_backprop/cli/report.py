"""``manual-backprop report RESULTS.json``: a Markdown table and a plot from a benchmark run."""

from __future__ import annotations

import argparse
import math
import sys

from ..bench import report as benchreport
from ..errors import InputError
from ..files import check_writable_folder, write_atomically
from .common import print_json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="turn a benchmark run (pytest-benchmark JSON) into a table and a plot",
        description="Read the JSON written by `pytest benchmarks --benchmark-json=RESULTS.json` and write "
                    "report.md (medians, the target ratios, kernels, memory, environment) and report.png "
                    "(time against batch size, log-log). Exit code 1 when --compare finds a regression.")
    p.add_argument("results", metavar="RESULTS.json", help="a pytest-benchmark JSON file")
    p.add_argument("--compare", metavar="OLD.json",
                   help="an older run to compare with: regressions are flagged, and every target's "
                        "verdict is set beside the older run's")
    p.add_argument("--threshold", type=_ratio, default=1.25, metavar="RATIO",
                   help="new/old median above which a benchmark counts as a regression (default 1.25)")
    p.add_argument("--output", metavar="DIR", default="benchmark-report",
                   help="folder for report.md and report.png (default: ./benchmark-report)")
    p.add_argument("--json", action="store_true", help="one JSON object on standard output")
    p.set_defaults(run=run)


def _ratio(text: str) -> float:
    """--threshold: a positive finite number (argparse's float takes "nan" and "inf", which hide regressions)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive ratio such as 1.25, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite ratio such as 1.25, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    threshold = args.threshold
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise InputError(f"--threshold must be a positive finite ratio, got {threshold}")
    report = benchreport.build(benchreport.load(args.results), args.results)
    if not report.times and not report.kernels and not report.memory:
        raise InputError(f"{args.results}: no benchmarks from manual_backprop's benchmarks/ folder in it")
    comparison = verdict_pairs = None
    if args.compare:
        old = benchreport.build(benchreport.load(args.compare), args.compare)
        comparison = benchreport.compare(report, old, threshold)  # two runs with nothing in common: an error
        verdict_pairs = benchreport.verdicts(report, old)
    # Before the work: the folder must take files, and the files' names must not be folders.
    out = check_writable_folder(args.output)
    md_path, png_path = out / "report.md", out / "report.png"
    for target in (md_path, png_path):
        if target.is_dir():
            raise InputError(f"cannot write to {target}: it is a folder")
    text = benchreport.markdown(report, comparison, verdict_pairs=verdict_pairs)
    # The plot first (the step that can fail), then the Markdown; each file is whole or untouched.
    png = benchreport.plot(report, png_path)
    write_atomically(md_path, text)
    regressed = any(c["regression"] for c in comparison or [])
    if args.json:
        print_json({**benchreport.summary(report, comparison, verdict_pairs),
                    "report": str(md_path), "plot": str(png) if png else None})
    else:
        sys.stdout.write(text)
        sys.stdout.write(f"\nwrote {md_path}" + (f" and {png}" if png else "") + "\n")
    return 1 if regressed else 0
