"""The machine a timing ran on, saved with every run (benchmarks/ and ``bench --code``)."""

from __future__ import annotations

import os
from typing import Any

# The pause between two libraries' blocks of calls (see :mod:`~manual_backprop.bench.timer`):
# after a multi-threaded call, OpenBLAS keeps a worker spinning for about 0.1 s.
GAP_S = 0.25


def machine_info(gap_s: float = GAP_S) -> dict[str, Any]:
    """Versions, BLAS and its thread pools, torch's threads and BLAS, and the pause used."""
    from ..environment import describe

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
    env["gap_s"] = gap_s
    # OpenBLAS picks its kernels from the processor unless this says which (it can make GEMM 1.7x slower).
    env["openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE")
    return env


def cpu_name() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what :mod:`platform` says, else "?"."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"
