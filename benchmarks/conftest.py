"""Fairness between libraries, and the environment saved with every run.

After a multi-threaded call, OpenBLAS (NumPy's BLAS here) keeps a worker
thread spinning for about 0.1 s; on a 2-core machine a torch or JAX call
that starts inside that window gets one core and looks up to 2x slower. So
every timed benchmark first does its NumPy work (building inputs, the warm-up
call, the check against the engine); the interleaved timer then pauses
``machine.GAP_S`` wherever the library changes (:mod:`manual_backprop.bench.timer`).
With ``--benchmark-disable`` (CI: each benchmark runs once as a test) there
is no pause.
"""

from __future__ import annotations

import time

from manual_backprop.bench import machine


def pytest_addoption(parser):
    parser.addoption(
        "--rounds-until-decided", type=int, default=90, metavar="N",
        help="a network point whose target is within the noise after --benchmark-min-rounds rounds gets "
             "more rounds, one at a time, until every verdict is decided or N rounds in all (default 90)")


def start_clean(benchmark) -> None:
    """Let any spinning BLAS thread from earlier work time out before the clock starts."""
    if not getattr(benchmark, "disabled", False):
        time.sleep(machine.GAP_S)


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["manual_backprop"] = machine.machine_info(machine.GAP_S)
