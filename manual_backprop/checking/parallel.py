"""The frameworks' imports overlapped: torch and JAX each run the case in a process of its own.

A cold ``manual-backprop check`` spends most of its time importing torch and JAX (about 2 s and
1.5 s here, one after the other), for a few milliseconds of work. :func:`start` forks one worker
per framework at the start of the check, before the engine runs: each imports its framework and
runs the case while the engine, the tolerances and finite differences run here, so the wait is
the slower import, not the sum. What a worker returns is its trace (NumPy arrays), the time of
its import and of its run, and its framework's version: this process imports no framework.

Used only where it pays and is safe (:func:`usable`): the command line's ``check`` of the batch
gradient, on POSIX (fork), when no framework is imported here yet; never for the per-sample
gradients or an optimiser step, which call the frameworks' own tools here. Set
``MANUAL_BACKPROP_PARALLEL=off`` to run every reference in this process.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor

from ..description.case import Case

FRAMEWORKS = ("torch", "jax")
PACKAGES = {"torch": "torch", "jax": "jax"}


def usable(frameworks: list[str]) -> bool:
    """Fork workers for ``frameworks``? Only on POSIX, when asked, and when none is imported here yet."""
    if os.environ.get("MANUAL_BACKPROP_PARALLEL", "").strip().lower() in ("off", "0", "no", "false"):
        return False
    if not hasattr(os, "fork") or not frameworks:
        return False
    return not any(PACKAGES[f] in sys.modules for f in FRAMEWORKS)


def _work(ref: str, case: Case, device: str | None) -> tuple[dict, float, float, str]:
    """In the worker: import the reference, run the case; its trace, the two times, the version."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the workers
    from .. import references

    t0 = time.perf_counter()
    module = references.load(ref)
    t1 = time.perf_counter()
    result = module.run(case, device=device)
    t2 = time.perf_counter()
    try:
        version = str(module.version())  # a plain str: torch's TorchVersion would import torch to unpickle
    except Exception:  # noqa: BLE001  (decoration only)
        version = ""
    return result, t1 - t0, t2 - t1, version


class Workers:
    """One forked process per framework, each already running the case."""

    def __init__(self, frameworks: list[str], case: Case, device: str | None):
        import multiprocessing

        self.pool = ProcessPoolExecutor(max_workers=len(frameworks), mp_context=multiprocessing.get_context("fork"))
        self.futures: dict[str, Future] = {ref: self.pool.submit(_work, ref, case, device) for ref in frameworks}

    def result(self, ref: str) -> tuple[dict, float, float, str]:
        return self.futures[ref].result()

    def close(self, cancel: bool = False) -> None:
        if cancel:  # Ctrl-C or an error here: the workers ignore SIGINT, so end them
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


def start(frameworks: list[str], case: Case, device: str | None) -> Workers | None:
    """The workers for ``frameworks`` (see :func:`usable`), or None to run them here."""
    return Workers(frameworks, case, device) if usable(frameworks) else None


__all__ = ["FRAMEWORKS", "Workers", "start", "usable"]
