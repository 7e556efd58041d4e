"""The ``manual-backprop`` command line: one module per subcommand.

Each subcommand module has ``add_parser(subparsers)`` and ``run(args) -> int``.
A user's mistake (:class:`~manual_backprop.errors.InputError`) becomes one
line on standard error and exit code 2, never a traceback. Ctrl-C, whenever it
comes, is one line and exit code 130: :func:`console_main` takes over SIGINT
before anything else runs, and an interrupt that a library swallowed (JAX's
garbage-collection callback) is still reported as one.
"""

from __future__ import annotations

import _thread
import argparse
import importlib
import os
import signal
import sys
import threading

from .. import interrupts
from ..errors import InputError

# Subcommands in the order ``--help`` lists them; each is a module of this package.
COMMANDS = ("check", "validate", "examples", "train", "grade", "bench", "report")

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
INTERRUPTED = "manual-backprop: interrupted\n"


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
    """Run one command; the exit code. Options without a subcommand go to ``check``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        code = _main(argv)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception:
        if not _interrupt.received:
            raise
        code = EXIT_INTERRUPTED  # a library turned the interrupt into an error of its own
    if code == EXIT_INTERRUPTED or _interrupt.received:
        _interrupt.quiet()
        _write_stderr(INTERRUPTED)
        return EXIT_INTERRUPTED
    return code


def _main(argv: list[str]) -> int:
    parser = build_parser()
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["check", *argv]  # with no subcommand it runs check
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except InputError as exc:
        sys.stderr.write(f"manual-backprop: {one_line(exc)}\n")
        return EXIT_INPUT
    except MemoryError:
        sys.stderr.write("manual-backprop: out of memory: the network or the batch is too large for this machine\n")
        return EXIT_INPUT
    except BrokenPipeError:
        return EXIT_OK


def one_line(exc: BaseException) -> str:
    """The error's message on one line (a message quoting the user's text could hold a newline)."""
    from .common import printable

    return printable(" ".join(str(exc).split()))


class _Interrupt:
    """SIGINT, taken over: every Ctrl-C is recorded, and the first one raises KeyboardInterrupt.

    Python's own handler raises KeyboardInterrupt wherever the program happens to be; raised
    inside a garbage-collection callback or a ``__del__`` it is printed as "Exception ignored"
    and lost. Here the interrupt is recorded first, a lost one is raised again, and the exit
    code says interrupted even if nothing caught it.
    """

    def __init__(self) -> None:
        self.received = False
        self.raising = True

    def install(self) -> None:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            return  # started with interrupts ignored (nohup, a background job): leave it so
        signal.signal(signal.SIGINT, self._handler)
        self._hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable

    def quiet(self) -> None:
        """From now on a Ctrl-C is recorded, never raised (the interrupt is being reported)."""
        self.raising = False

    def _handler(self, signum, frame) -> None:
        self.received = True
        if self.raising:
            if interrupts.holding():  # inside a framework's native import: raised when it ends
                interrupts.defer()
                return
            raise KeyboardInterrupt

    def _unraisable(self, info) -> None:
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            if self.raising:  # swallowed where it was raised: raise it again, once out of there
                again = threading.Timer(0.01, _thread.interrupt_main)
                again.daemon = True
                again.start()
            return
        self._hook(info)


_interrupt = _Interrupt()


def _write_stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _exit_on_interrupt(signum, frame) -> None:
    """SIGINT while the interpreter shuts down: say so and leave at once, with no traceback."""
    os.write(2, INTERRUPTED.encode())
    os._exit(EXIT_INTERRUPTED)


def console_main() -> None:
    """Entry point of the console script (and of ``python -m manual_backprop``)."""
    _interrupt.install()
    try:
        code = main()
        sys.stdout.flush()
    except KeyboardInterrupt:
        _interrupt.quiet()
        code = EXIT_INTERRUPTED
        _write_stderr(INTERRUPTED)
    except BrokenPipeError:  # the reader left (``| head``): nothing more to say, and no flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_OK
    if code == EXIT_INTERRUPTED:  # leave now: tearing torch and JAX down can take seconds, or end by SIGINT
        _flush_quietly()
        os._exit(EXIT_INTERRUPTED)
    if signal.getsignal(signal.SIGINT) == _interrupt._handler:
        signal.signal(signal.SIGINT, _exit_on_interrupt)
    sys.exit(code)


def _flush_quietly() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
