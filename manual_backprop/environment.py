"""What a run needs to be rerun elsewhere: versions, BLAS, threads, seed."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import numpy as np


def version_of(dist: str) -> str | None:
    """The installed version of the distribution ``dist``, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def blas() -> str:
    """NumPy's BLAS as NumPy reports it, e.g. ``scipy-openblas 0.3.31``."""
    try:
        cfg = np.show_config(mode="dicts")
        info = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except Exception:  # pragma: no cover - very old NumPy
        return "unknown"


def threads() -> dict[str, Any]:
    """BLAS threads per library (threadpoolctl, when installed) and the CPU count."""
    out: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return out
    for pool in threadpool_info():
        out[f"{pool.get('internal_api')}:{os.path.basename(pool.get('filepath', ''))}"] = pool.get("num_threads")
    return out


def describe(seed: int | None = None) -> dict[str, Any]:
    """Versions of Python, NumPy, torch and JAX, the BLAS, the thread counts, and the seed."""
    return {
        "seed": seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "manual_backprop": version_of("manual-backprop"),
        "numpy": np.__version__,
        "torch": version_of("torch"),
        "jax": version_of("jax"),
        "jaxlib": version_of("jaxlib"),
        "blas": blas(),
        "threads": threads(),
    }


def summary(env: dict[str, Any]) -> str:
    """:func:`describe` on one line, for a human report: what to match to rerun a disagreement elsewhere."""
    threads = env.get("threads", {})
    blas_threads = sorted({n for k, n in threads.items() if k != "cpu_count" and n is not None})
    parts = [f"Python {env.get('python')}", f"NumPy {env.get('numpy')}"]
    parts += [f"{name} {env[key]}" for key, name in (("torch", "torch"), ("jax", "JAX")) if env.get(key)]
    parts.append(f"BLAS {env.get('blas')}"
                 + (f" ({'/'.join(map(str, blas_threads))} thread{'s' if blas_threads != [1] else ''})" if blas_threads else ""))
    parts.append(f"{threads.get('cpu_count')} CPUs")
    parts.append(f"seed {env.get('seed')}")
    return " · ".join(parts)
