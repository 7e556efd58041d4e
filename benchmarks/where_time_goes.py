"""Where the fast engine's time goes beyond the matrix-multiply floor, measured side by side.

    python -m benchmarks.where_time_goes 784-256-256-10:float32:64 1024x4:float32:512 ...

For each grid point (network:dtype:batch), in interleaved rounds
(:class:`manual_backprop.bench.timer.Interleaved`, the benchmarks' own timer):

- ``fast``: the fast engine, the loss and every dW, db;
- ``fast, no products``: the same call with every matrix product of the
  Linear kernels (``linear.matmul_into``: ``A @ W``, ``A.T @ dZ``, ``dZ @ W.T``)
  made a no-op, so what is left is the elementwise passes (bias add,
  activations, masks, the loss, db) and the Python calls around them;
- ``fast, products only``: the same call with everything but the products made a
  no-op (the activations' and the loss's kernels, the bias add, ``db``), so the
  products run in the engine's own order, buffers and thread policy;
- ``floor``: the products alone (``impls.floor_numpy``), in the engine's layout and thread policy;
- ``fast`` and ``products only`` again with BLAS held to one thread;
- ``torch`` and ``jax``, when installed (and their ratio to the floor: a framework
  under NumPy's floor has faster products than this machine's OpenBLAS).

``fast ≈ floor + (fast, no products)``; so ``fast/floor`` cannot go below
``1 + rest/floor`` without making the rest cheaper, and ``fast/jax`` below
``rest/jax`` at all. What is left, ``mixing = fast - (products only) - rest``,
is what each part loses to the other when they alternate (the products
alone in the engine's sequence against the floor shows what the sequence
itself costs: its Python calls). The same split with BLAS on one thread
shows whether the mixing comes with BLAS's second thread (the buffers
passing between the two cores). The figures print as medians with the
median's 98% confidence interval over the per-round ratios.
"""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import numpy as np

from manual_backprop.bench import impls
from manual_backprop.bench.grid import Point, prepared_case
from manual_backprop.bench.machine import GAP_S
from manual_backprop.bench.timer import Interleaved, Spread, per_round_ratio
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


def _products_only(case, T):
    """The fast engine's call with every step but the products a no-op: the activations' forward and
    backward, the loss's value and gradient, the bias add (``linear_forward`` keeps only its product)
    and ``db``."""
    ws = fast.Workspace(case.network, case.batch)
    net, params, X = case.network, case.params, case.X
    depth = net.depth
    ws.forward = [None] + [lambda *a, out, **k: out] * depth
    ws.backward = [None] + [lambda *a, out, **k: out] * depth
    ws.loss = SimpleNamespace(value=lambda *a, **k: np.zeros((), ws.dtype),
                              gradient=lambda *a, out, **k: out, fused_with=ws.loss.fused_with,
                              labels=ws.loss.labels)

    def call():
        real = linear.linear_forward, linear.linear_db
        linear.linear_forward = lambda A, W, b, out: linear.matmul_into(A, W, out)
        linear.linear_db = lambda dZ, out, ones=None: out
        try:
            with np.errstate(all="ignore"):
                fast.value_and_grad(net, params, X, T, ws)
        finally:
            linear.linear_forward, linear.linear_db = real

    return call


def _sum_ratio(times, num: str, parts: tuple[str, ...]) -> Spread:
    """``num``'s time over the sum of ``parts``' times, round by round."""
    return Spread.of(t / sum(times[p][i] for p in parts) for i, t in enumerate(times[num]))


def _one_blas_thread(call):
    def on_one():
        with fast._blas_threads(1):
            call()
    return on_one


def measure(point: Point, rounds: int = 7) -> str:
    case, T = prepared_case(point)
    calls = {"fast": impls.build("numpy_fast", case, T).call, "rest": _no_products(case, T),
             "products": _products_only(case, T), "floor": impls.build("floor_numpy", case, T).call}
    calls["fast1"] = _one_blas_thread(impls.build("numpy_fast", case, T).call)
    calls["products1"] = _one_blas_thread(_products_only(case, T))
    library = dict.fromkeys(calls, "numpy")
    for other in ("torch", "jax"):
        if importlib.util.find_spec(other) is not None:
            calls[other] = impls.build(other, case, T).call
            library[other] = other
    timer = Interleaved(calls, gap_s=GAP_S if impls.needs_gap(case) else 0.0, library=library)
    timer.calibrate()
    times = timer.run(rounds)
    med = {k: float(np.median(v)) for k, v in times.items()}
    parts = [f"fast {med['fast'] * 1e6:.1f} µs", f"no products {med['rest'] * 1e6:.1f} µs",
             f"products only {med['products'] * 1e6:.1f} µs", f"floor {med['floor'] * 1e6:.1f} µs"]
    parts += [f"{k} {med[k] * 1e6:.1f} µs" for k in ("torch", "jax") if k in med]
    ratios = [f"fast/floor {per_round_ratio(times, 'fast', 'floor').text()}",
              f"rest/floor {per_round_ratio(times, 'rest', 'floor').text()}",
              f"products only/floor {per_round_ratio(times, 'products', 'floor').text()}",
              f"fast/(products only + rest) {_sum_ratio(times, 'fast', ('products', 'rest')).text()}",
              f"on one BLAS thread: fast/(products only + rest) "
              f"{_sum_ratio(times, 'fast1', ('products1', 'rest')).text()}"]
    ratios += [f"fast/{k} {per_round_ratio(times, 'fast', k).text()}" for k in ("torch", "jax") if k in med]
    ratios += [f"rest/{k} {per_round_ratio(times, 'rest', k).text()}" for k in ("jax",) if k in med]
    ratios += [f"{k}/floor {per_round_ratio(times, k, 'floor').text()}" for k in ("torch", "jax") if k in med]
    return f"{point.group}: " + ", ".join(parts) + " | " + ", ".join(ratios)


def main(argv: list[str]) -> None:
    for arg in argv or ["2-3-1:float32:1", "784-256-256-10:float32:64", "784-256-256-10:float64:512"]:
        network, dtype, batch = arg.split(":")
        print(measure(Point(network, dtype, int(batch))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
