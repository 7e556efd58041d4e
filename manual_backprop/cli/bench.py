"""``manual-backprop bench --code FILE.py:NAME``: your forward + backward against the fast engine, torch,
``jax.jit`` and the matrix-multiply floor, on the same network and batches (:mod:`manual_backprop.bench.code`).

Writes ``bench.json`` (pytest-benchmark's form, so ``manual-backprop report`` reads it and
``report --compare`` compares two runs), ``report.md`` and ``report.png`` into ``--output``.
Exit 0 when the report is written, 1 when your code's result disagrees with the engine or your code
raises (nothing is timed then), 2 for bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from ..bench import report as benchreport
from ..bench.code import BATCHES, bench_code, refuse
from ..errors import InputError
from ..files import check_writable_folder, write_atomically
from .common import add_case_options, case_from_args, print_json, printable
from .validate import code_option, load_code

INLINE = ("sizes", "activations", "loss", "reduction", "seed")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="time your own forward + backward against the fast engine, torch, jax.jit and the floor",
        description="Run your code (NAME in FILE.py: fn(params, X, Y), a class, or an object with params and "
                    "loss(X, y), as for `validate --code`) on the network at each batch size, check its loss "
                    "and gradients against the checking engine (outside the timed region), then time it side "
                    "by side with the fast engine, torch eager, jax.jit and the matrix-multiply floors in "
                    "interleaved rounds. Writes bench.json, report.md and report.png. Exit 0 when the report "
                    "is written, 1 when your result is wrong or your code raises, 2 for bad input.")
    add_case_options(p, default_note="the seed-002 network")
    p.add_argument("--code", metavar="FILE.py:NAME", required=True,
                   help="your code: NAME is fn(params, X, Y), a class, or an object with params and loss(X, y)")
    p.add_argument("--batches", metavar="B1,B2,...", default=",".join(map(str, BATCHES)),
                   help=f"batch sizes to time at (default {','.join(map(str, BATCHES))})")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per batch size (default 5)")
    p.add_argument("--output", metavar="DIR", default="bench-report",
                   help="folder for bench.json, report.md and report.png (default: ./bench-report)")
    p.add_argument("--json", action="store_true", help="one JSON object on standard output")
    p.set_defaults(run=run)


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"--batches must be positive integers separated by commas, got {text!r}") from None
    if not values or any(b < 1 for b in values):
        raise InputError(f"--batches must be positive integers separated by commas, got {text!r}")
    return tuple(dict.fromkeys(values))


def run(args: argparse.Namespace) -> int:
    from ..testing.network import UserCode

    batches = _batches(args.batches)
    if not 1 <= args.rounds <= 1000:
        raise InputError(f"--rounds must be between 1 and 1000, got {args.rounds}")
    path, name = code_option(args.code)
    case = case_from_args(args, inline_options=INLINE)
    refuse(case)
    progress = None if args.json else (lambda text: sys.stderr.write(printable(text) + "\n"))
    with contextlib.redirect_stdout(sys.stderr):  # the user's prints must not mix with the report (--json)
        code = UserCode(load_code(path, name), case.network, name, case.convention)
        problem = code.setup()  # a class is instantiated: its __init__ is the user's code
    if problem is not None:
        return _failed(args, problem)
    existed = Path(args.output).exists()
    out = check_writable_folder(args.output)  # before the work: a bad folder costs nothing
    files = {k: out / f for k, f in (("json", "bench.json"), ("md", "report.md"), ("png", "report.png"))}
    for target in files.values():
        if target.is_dir():
            raise InputError(f"cannot write to {target}: it is a folder")
    with contextlib.redirect_stdout(sys.stderr):
        outcome = bench_code(code, case, batches, args.rounds, progress)
    if outcome.failure is not None:
        return _failed(args, outcome.failure, outcome.checks, folder=None if existed else out)
    report = benchreport.build(outcome.data, str(files["json"]))
    report.project_targets = False
    text = benchreport.markdown(
        report, title=f"{name} on the bench",
        intro=f"Your code: `{args.code}` ({code.form}) on {case.network.describe()} from {case.source}; "
              f"its loss and gradients agreed with the checking engine at every batch before timing. "
              f"yours/fast, yours/floor, yours/torch and yours/jax are your time over theirs in each round "
              f"(below 1: yours is faster)."
              + (f" Not installed, so left out: {', '.join(outcome.left_out)}." if outcome.left_out else ""))
    png = benchreport.plot(report, files["png"])
    write_atomically(files["json"], json.dumps(outcome.data, indent=1) + "\n")
    write_atomically(files["md"], text)
    if args.json:
        print_json({**benchreport.summary(report, None), "ok": True, "code": args.code,
                    "checks": outcome.checks, "results": str(files["json"]), "report": str(files["md"]),
                    "plot": str(png) if png else None})
    else:
        sys.stdout.write(text)
        sys.stdout.write(f"\nwrote {files['json']}, {files['md']}" + (f" and {png}" if png else "") + "\n")
    return 0


def _failed(args: argparse.Namespace, message: str, checks: dict | None = None, folder: Path | None = None) -> int:
    """Your code raised or disagreed: one line (or the JSON), exit 1, nothing timed or written.

    ``folder``: the output folder this run made, removed again (it is empty).
    """
    if folder is not None:
        with contextlib.suppress(OSError):
            folder.rmdir()
    if args.json:
        print_json({"ok": False, "code": args.code, "error": message, "checks": checks or {}})
    else:
        sys.stdout.write(printable(f"{args.code}: {message}") + "\n")
    return 1
