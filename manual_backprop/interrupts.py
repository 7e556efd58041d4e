"""Ctrl-C held back while a framework's native code is being imported (a leaf: imports nothing of the package).

A KeyboardInterrupt raised while jaxlib is being imported passes through its C++ (nanobind)
code, which turns it into ``std::terminate``: the process aborts (exit -6) with no word. The
command line's SIGINT handler (:mod:`manual_backprop.cli`) asks :func:`holding` first: inside
:func:`held` the interrupt is recorded (:func:`defer`) and raised the moment the block ends,
where it is reported as every other interrupt (one line, exit 130).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

_depth = 0
_pending = False


@contextmanager
def held() -> Iterator[None]:
    """Within the block a Ctrl-C is recorded, not raised; it is raised when the block ends."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if _depth == 0 and _pending:
        _pending = False
        raise KeyboardInterrupt


def holding() -> bool:
    """Whether an interrupt now must wait (inside :func:`held`)."""
    return _depth > 0


def defer() -> None:
    """Record an interrupt that arrived inside :func:`held`."""
    global _pending
    _pending = True
