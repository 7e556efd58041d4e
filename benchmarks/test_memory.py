"""Peak extra memory of one forward + backward of 1024x4 at batch 4096, float32, per implementation.

Each measurement runs in a fresh process (see ``benchmarks/memory.py``); the
figure goes into the benchmark's ``extra_info["peak_extra_mib"]`` (the time
recorded is the whole subprocess, and means nothing). With
``--benchmark-disable`` (CI) the batch is 64, to keep the check quick.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ("numpy_fast", "numpy_trace", "torch", "jax")


@pytest.mark.parametrize("impl", IMPLS)
def test_peak_memory(benchmark, impl):
    if impl in ("torch", "jax") and importlib.util.find_spec(impl) is None:
        pytest.skip(f"{impl} is not installed")
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to read the peak resident set")
    batch = 64 if benchmark.disabled else 4096
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    cmd = [sys.executable, "-m", "benchmarks.memory", impl, "1024x4", "float32", str(batch)]
    box = {}

    def measure():
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        box.update(json.loads(done.stdout.strip().splitlines()[-1]))

    benchmark.group = "memory 1024x4 float32"
    benchmark.pedantic(measure, rounds=1, iterations=1)
    assert box["peak_extra_mib"] >= 0
    benchmark.extra_info.update(kind="memory", impl=impl, network="1024x4", dtype="float32", batch=batch,
                                peak_extra_mib=box["peak_extra_mib"], rss_before_mib=box["rss_before_mib"])
