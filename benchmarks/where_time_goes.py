"""Where the fast engine's time goes beyond the matrix-multiply floor, measured side by side.

    python -m benchmarks.where_time_goes 784-256-256-10:float32:64 1024x4:float32:512 ...

For each grid point (network:dtype:batch), in interleaved rounds
(:class:`manual_backprop.bench.timer.Interleaved`, the benchmarks' own timer):

- ``fast``: the fast engine, the loss and every dW, db;
- ``fast, no products``: the same call with every matrix product of the
  Linear kernels (``linear.matmul_into``: ``A @ W``, ``A.T @ dZ``, ``dZ @ W.T``)
  made a no-op, so what is left is the elementwise passes (bias add,
  activations, masks, the loss, db) and the Python calls around them;
- ``floor``: the products alone (``impls.floor_numpy``), in the engine's layout and thread policy;
- ``torch`` and ``jax``, when installed.

``fast ≈ floor + (fast, no products)``; so ``fast/floor`` cannot go below
``1 + rest/floor`` without making the rest cheaper, and ``fast/jax`` below
``rest/jax`` at all. The figures print as medians with the range of the
per-round ratios.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

from manual_backprop.bench import impls
from manual_backprop.bench.grid import Point, prepared_case
from manual_backprop.bench.machine import GAP_S
from manual_backprop.bench.timer import Interleaved, per_round_ratio
from manual_backprop.engine import fast
from manual_backprop.kernels import linear


def _no_products(case, T):
    """The fast engine's call with ``linear.matmul_into`` a no-op for its duration."""
    ws = fast.Workspace(case.network, case.batch)
    net, params, X = case.network, case.params, case.X

    def call():
        real = linear.matmul_into
        linear.matmul_into = lambda a, b, out: out
        try:
            with np.errstate(all="ignore"):  # the buffers hold whatever they held: no values are read
                fast.value_and_grad(net, params, X, T, ws)
        finally:
            linear.matmul_into = real

    return call


def measure(point: Point, rounds: int = 7) -> str:
    case, T = prepared_case(point)
    calls = {"fast": impls.build("numpy_fast", case, T).call, "rest": _no_products(case, T),
             "floor": impls.build("floor_numpy", case, T).call}
    library = {"fast": "numpy", "rest": "numpy", "floor": "numpy"}
    for other in ("torch", "jax"):
        if importlib.util.find_spec(other) is not None:
            calls[other] = impls.build(other, case, T).call
            library[other] = other
    timer = Interleaved(calls, gap_s=GAP_S if impls.needs_gap(case) else 0.0, library=library)
    timer.calibrate()
    times = timer.run(rounds)
    med = {k: float(np.median(v)) for k, v in times.items()}
    parts = [f"fast {med['fast'] * 1e6:.1f} µs", f"no products {med['rest'] * 1e6:.1f} µs",
             f"floor {med['floor'] * 1e6:.1f} µs"]
    parts += [f"{k} {med[k] * 1e6:.1f} µs" for k in ("torch", "jax") if k in med]
    ratios = [f"fast/floor {per_round_ratio(times, 'fast', 'floor').text()}",
              f"rest/floor {per_round_ratio(times, 'rest', 'floor').text()}"]
    ratios += [f"fast/{k} {per_round_ratio(times, 'fast', k).text()}" for k in ("torch", "jax") if k in med]
    ratios += [f"rest/{k} {per_round_ratio(times, 'rest', k).text()}" for k in ("jax",) if k in med]
    return f"{point.group}: " + ", ".join(parts) + " | " + ", ".join(ratios)


def main(argv: list[str]) -> None:
    for arg in argv or ["2-3-1:float32:1", "784-256-256-10:float32:64", "784-256-256-10:float64:512"]:
        network, dtype, batch = arg.split(":")
        print(measure(Point(network, dtype, int(batch))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
