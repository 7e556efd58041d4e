"""The ``manual-backprop`` command line: one module per subcommand.

Each subcommand module has ``add_parser(subparsers)`` and ``run(args) -> int``.
A user's mistake (:class:`~manual_backprop.errors.InputError`) becomes one
line on standard error and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import InputError

# Subcommands in the order ``--help`` lists them; each is a module of this package.
COMMANDS = ("check", "validate", "examples", "train", "report")

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2 (argparse prints usage too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"manual-backprop: {message}\n")
        raise SystemExit(EXIT_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="manual-backprop",
        description="Check hand-derived NumPy backpropagation against PyTorch, JAX and finite differences.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # a subcommand not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["check", *(argv or [])])
    try:
        return int(args.run(args))
    except InputError as exc:
        sys.stderr.write(f"manual-backprop: {one_line(exc)}\n")
        return EXIT_INPUT
    except MemoryError:
        sys.stderr.write("manual-backprop: out of memory: the network or the batch is too large for this machine\n")
        return EXIT_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("manual-backprop: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK


def one_line(exc: BaseException) -> str:
    """The error's message on one line (a message quoting the user's text could hold a newline)."""
    return " ".join(str(exc).split())


def console_main() -> None:
    """Entry point of the console script."""
    sys.exit(main())
