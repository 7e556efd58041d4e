"""Peak extra memory of one forward + backward, measured in a process of its own.

    python -m benchmarks.memory IMPL NETWORK DTYPE BATCH      # prints one JSON object

Run with ``MALLOC_MMAP_THRESHOLD_=131072`` (``test_memory`` sets it), so that
every large array is its own mapping and freed memory leaves the resident
set: the peak resident set then follows the live arrays. "Extra" is the peak
during one call minus the resident set just before it, with the inputs and
parameters already allocated and the returned gradients counted; the call
is a warm one (libraries initialised, JAX compiled, the previous call's
result freed). The fast engine is called without a workspace, so its buffers
are allocated inside the measured call and counted.
"""

from __future__ import annotations

import gc
import json
import sys

MiB = 1024 * 1024


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(impl: str, network: str, dtype: str, batch: int) -> dict:
    from manual_backprop.bench import impls
    from manual_backprop.bench.grid import Point, prepared_case

    case, T = prepared_case(Point(network, dtype, batch))
    if impl == "numpy_fast":
        from manual_backprop.engine import fast

        box = {}

        def call():
            box["out"] = fast.value_and_grad(case.network, case.params, case.X, T)
    else:
        prepared = impls.build(impl, case, T)
        call, box = prepared.call, prepared.box
    call()  # warm: imports, lazy initialisation, compilation
    box.clear()
    gc.collect()
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (VmHWM) to the current one
    call()
    peak = _status("VmHWM")
    return {"impl": impl, "network": network, "dtype": dtype, "batch": batch,
            "peak_extra_mib": (peak - before) / MiB, "rss_before_mib": before / MiB}


if __name__ == "__main__":
    impl, network, dtype, batch = sys.argv[1:5]
    print(json.dumps(measure(impl, network, dtype, int(batch))))
