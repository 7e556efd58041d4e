"""Fairness between libraries, and the environment saved with every run.

After a multi-threaded call, OpenBLAS (NumPy's BLAS here) keeps a worker
thread spinning for about 0.1 s; on a 2-core machine a torch or JAX
benchmark that starts inside that window gets one core and looks up to 2x
slower. So every timed benchmark first does its NumPy work (building inputs,
the warm-up call, the check against the engine) and then sleeps ``GAP_S``
before the clock starts; no NumPy BLAS call happens while torch or JAX is
timed. With ``--benchmark-disable`` (CI: each benchmark runs once as a test)
there is no pause.
"""

from __future__ import annotations

import time

import pytest

GAP_S = 0.25


def start_clean(benchmark) -> None:
    """Let any spinning BLAS thread from earlier work time out before the clock starts."""
    if not getattr(benchmark, "disabled", False):
        time.sleep(GAP_S)


def pytest_benchmark_update_machine_info(config, machine_info):
    from manual_backprop.environment import describe

    env = describe()
    try:
        from threadpoolctl import threadpool_info

        env["blas_pools"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                             for p in threadpool_info()]
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "other"
    except ImportError:  # pragma: no cover
        pass
    env["gap_s"] = GAP_S
    machine_info["manual_backprop"] = env


@pytest.fixture
def clean_start():
    return start_clean
