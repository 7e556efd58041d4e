#!/usr/bin/env python3
"""The random sweep: correct networks, checked against torch and JAX, must never be rejected.

The engine is correct, so every failure of the check on a correct network is a
false rejection: a reference's own inaccuracy (or rounding) that the tolerance
policy did not foresee. This sweep draws seeded random networks from the
registries (``manual_backprop.kernels.ACTIVATIONS`` and ``LOSSES``, within the
rules :class:`~manual_backprop.Network` enforces) and values that reach the
numerical edges — saturated and large logits, saturated hidden units,
subnormal results that JAX flushes to zero, exact zeros at a ReLU kink,
inputs and weights far from 1 — checks each against torch and JAX, and lists
every rejection::

    python tools/sweep.py                         # 1000 networks per dtype (float64, float32); exit 1 on any rejection
    python tools/sweep.py --count 200 --dtype float32 --seed 3
    python tools/sweep.py --only float32:417      # one network again, with every failing tensor

JAX compiles once per shape, so the networks are drawn as ``--shapes``
architectures (widths, activations, loss, reduction and batch), each checked
with several sets of values: most of the time goes into compiling, and the
values are what reach the edges. ``tests/test_no_false_rejections.py`` runs a
smaller seeded sweep of the same generator in CI.

Exit status: 0 with no false rejection, 1 with some, 2 when a reference is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from manual_backprop import Network, make_case  # noqa: E402
from manual_backprop.description.case import Case  # noqa: E402
from manual_backprop.errors import InputError  # noqa: E402
from manual_backprop.kernels import ACTIVATIONS, LOSSES  # noqa: E402
from manual_backprop.kernels.losses import REDUCTIONS  # noqa: E402

DTYPES = ("float64", "float32")
REFERENCES = ("torch", "jax")

#: Depth, widths and batch drawn from these ranges (inclusive).
DEPTH, WIDTH, BATCH = (1, 3), (1, 16), (1, 16)

#: Logit magnitudes put on the output (through its bias): the saturation edges of sigmoid and softmax.
#: float64: 33.5 is where 1 - sigmoid leaves 1 - u, 36.7 where it rounds to 1, 745 where exp
#: underflows; float32: 16.6 and 17.3 the same for sigmoid, 87.3 the smallest normal, 103 the end of
#: the subnormals.
LOGITS = {"float64": (5.0, 17.0, 33.5, 36.7, 40.0, 100.0, 700.0, 745.0, 1e3),
          "float32": (5.0, 9.0, 16.6, 17.3, 30.0, 87.0, 88.5, 100.0, 103.0)}

#: A subnormal number of each dtype (below the smallest normal, 2.2e-308 and 1.2e-38).
SUBNORMAL = {"float64": 1e-310, "float32": 1e-40}

#: Pre-activation magnitudes a hidden layer is pushed to: saturated sigmoid and tanh, and the band
#: where exp(-|Z|) and the gradients through it are subnormal (float64: 708 to 745; float32: 87 to 103).
HIDDEN_SATURATION = {"float64": (20.0, 40.0, 700.0, 708.5, 720.0, 740.0),
                     "float32": (10.0, 20.0, 87.0, 88.0, 90.0, 95.0, 100.0)}


@dataclass(frozen=True)
class Shape:
    """What JAX compiles for: the network and the batch size."""

    network: Network
    batch: int


def shapes(dtype: str, count: int, seed: int = 0) -> list[Shape]:
    """``count`` seeded random architectures of ``dtype`` (depth 1-3, widths 1-16, batch 1-16).

    Every activation and loss of the registries appears, with the rules of
    :class:`Network`: an activation allowed on the last layer only (softmax) is
    drawn for the output alone, a loss fused with an output activation gets it,
    and a drawing that ``Network`` refuses (softmax cross-entropy on one class)
    is drawn again.
    """
    rng = np.random.default_rng([seed, 0, DTYPES.index(dtype)])
    hidden = [a for a, act in ACTIVATIONS.items() if not act.last_layer_only]
    losses = list(LOSSES)
    out: list[Shape] = []
    while len(out) < count:
        depth = int(rng.integers(DEPTH[0], DEPTH[1] + 1))
        widths = [int(rng.integers(WIDTH[0], WIDTH[1] + 1)) for _ in range(depth + 1)]
        if rng.random() < 0.3:  # narrow networks: one unit, one class, one input
            widths = [int(rng.integers(1, 3)) for _ in range(depth + 1)]
        loss = losses[len(out) % len(losses)] if rng.random() < 0.5 else losses[int(rng.integers(len(losses)))]
        fused = LOSSES[loss].fused_with
        last = fused if fused is not None else str(rng.choice(list(ACTIVATIONS)))
        acts = tuple(str(rng.choice(hidden)) for _ in range(depth - 1)) + (last,)
        reduction = str(rng.choice(REDUCTIONS))
        try:
            network = Network(tuple(widths), acts, loss, reduction, dtype)
        except InputError:
            continue
        out.append(Shape(network, int(rng.integers(BATCH[0], BATCH[1] + 1))))
    return out


def values(shape: Shape, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``(params, X, Y)`` for ``shape``: ordinary values most of the time, the numerical edges often.

    Each of these is drawn independently: weights and inputs scaled by 0.01 to
    10 (or 100); the output logits pushed to one of :data:`LOGITS` (a large
    bias of either sign per unit, the weights kept small so that the logit is
    mostly the bias); a hidden layer scaled to a saturating pre-activation
    (:data:`HIDDEN_SATURATION`), with large inputs; subnormal inputs or
    weights (:data:`SUBNORMAL`); exact zeros (input rows and the biases, so
    some units sit exactly at the ReLU kink; a weight column); targets at
    0, 1 and in between for bce, labels or probability rows for cross-entropy.
    """
    net = shape.network
    dt, N, L = net.np_dtype, shape.batch, net.depth
    scale = lambda options, p: float(rng.choice(options)) if rng.random() < p else 1.0  # noqa: E731
    X = rng.standard_normal((N, net.sizes[0])) * scale((0.01, 3.0, 10.0, 100.0), 0.25)
    params = {}
    for l in range(1, L + 1):
        n_in, n_out = net.sizes[l - 1], net.sizes[l]
        params[f"W{l}"] = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in) * scale((0.01, 0.1, 3.0, 10.0), 0.25)
        params[f"b{l}"] = rng.uniform(-0.5, 0.5, n_out) * scale((0.0, 3.0, 10.0), 0.2)
    if rng.random() < 0.25 and L > 1:  # a saturated hidden layer, or one in the subnormal band
        l = int(rng.integers(1, L))
        target = float(rng.choice(HIDDEN_SATURATION[net.dtype]))
        if rng.random() < 0.5:  # spread: the largest |Z| reaches the target
            Z = X @ params["W1"] + params["b1"]
            for k in range(2, l + 1):
                Z = np.tanh(Z) @ params[f"W{k}"] + params[f"b{k}"]
            if np.abs(Z).max() > 0:
                params[f"W{l}"] = params[f"W{l}"] * target / np.abs(Z).max()
                params[f"b{l}"] = params[f"b{l}"] * target / np.abs(Z).max()
        else:  # packed: every unit near +-target (mostly -), the input's spread kept small
            params[f"b{l}"] = np.where(rng.random(net.sizes[l]) < 0.8, -1.0, 1.0) * target
            params[f"W{l}"] = params[f"W{l}"] * float(rng.choice((0.0, 0.01, 0.1)))
        if l == 1 and rng.random() < 0.5:  # large inputs carry a flushed dZ1 into dW1
            X = X * float(rng.choice((10.0, 87.0, 1000.0)))
            params["W1"] = params["W1"] / np.abs(X).max()
    if rng.random() < 0.35:  # large logits on the output
        logit = float(rng.choice(LOGITS[net.dtype]))
        params[f"b{L}"] = rng.choice([-1.0, 1.0], net.sizes[L]) * logit * rng.choice([1.0, 0.5, 0.999])
        params[f"W{L}"] = params[f"W{L}"] * float(rng.choice((0.0, 0.01, 0.1, 1.0)))
    if rng.random() < 0.15:  # exact zeros: rows of X and the biases (units exactly at a kink, layer after layer)
        X[: int(rng.integers(1, N + 1))] = 0.0
        for l in range(1, (L if rng.random() < 0.5 else 1) + 1):
            params[f"b{l}"] = np.zeros_like(params[f"b{l}"])
    if rng.random() < 0.08:  # subnormal entries in X or a weight, which JAX reads as 0
        tiny = SUBNORMAL[net.dtype] * float(rng.choice((1.0, 10.0, 100.0)))
        target = X if rng.random() < 0.5 else params[f"W{int(rng.integers(1, L + 1))}"]
        mask = rng.random(target.shape) < 0.3
        target[mask] = tiny * rng.choice([-1.0, 1.0], int(mask.sum()))
    if rng.random() < 0.1:  # a dead weight column
        l = int(rng.integers(1, L + 1))
        params[f"W{l}"][:, int(rng.integers(net.sizes[l]))] = 0.0
    K = net.sizes[-1]
    if net.loss == "softmax_cross_entropy":
        if rng.random() < 0.7:
            Y = rng.integers(0, K, N)
        else:  # probability rows, some one-hot
            P = rng.random((N, K)) ** 3
            Y = (P / P.sum(axis=1, keepdims=True)).astype(dt)
            Y = (Y / Y.astype(np.float64).sum(axis=1, keepdims=True)).astype(dt)
    elif net.loss == "bce":
        Y = rng.integers(0, 2, (N, K)).astype(np.float64)
        if rng.random() < 0.4:
            Y = np.where(rng.random((N, K)) < 0.5, Y, rng.random((N, K)))
        Y = Y.astype(dt)
    else:
        Y = (rng.standard_normal((N, K)) * scale((0.01, 3.0, 30.0), 0.2)).astype(dt)
    return {k: v.astype(dt) for k, v in params.items()}, X.astype(dt), Y


def cases(dtype: str, count: int, seed: int = 0, n_shapes: int | None = None) -> Iterator[tuple[int, Case]]:
    """``(index, case)`` for ``count`` networks of ``dtype``, drawn as ``n_shapes`` architectures in turn.

    The cases of one architecture come one after another (JAX compiles it once);
    case ``index`` is the same whatever ``count`` is, for a given ``n_shapes``.
    """
    n_shapes = n_shapes or max(1, count // 8)
    pool = shapes(dtype, n_shapes, seed)
    per = -(-count // n_shapes)
    index = 0
    for s, shape in enumerate(pool):
        for j in range(per):
            if index >= count:
                return
            yield index, make_case(shape.network, *values(shape, np.random.default_rng([seed, 1, s, j])),
                                   seed=index, title=f"sweep {dtype}:{index}")
            index += 1


@dataclass
class Rejection:
    index: int
    case: Case
    report: object

    def describe(self) -> str:
        r = self.report
        lines = [(f"{self.case.title}: {self.case.network.describe()}, batch {self.case.batch}: "
                  f"first divergence {r.first_divergence}")]
        for per in r.checks.values():
            for c in per.values():
                if c.ok is False:
                    lines.append("    " + c.message())
        if r.float32_failure is not None:
            lines.append("    rounding or bug? " + r.float32_failure.sentence)
        return "\n".join(lines)


#: Parts of the tolerance policy that ``--without`` switches off, to show what each is for.
PARTS = ("flush", "log-domain")


@contextlib.contextmanager
def without(parts) -> Iterator[None]:
    """The tolerance policy with ``parts`` (of :data:`PARTS`) switched off, for as long as the block runs."""
    tolerance = importlib.import_module("manual_backprop.compare.tolerance")
    tables = {"flush": [tolerance.FLUSH], "log-domain": [tolerance.LOG_DOMAIN_GRADIENT, tolerance.LOG_DOMAIN_LOSS]}
    saved = [(table, dict(table)) for part in parts for table in tables[part]]
    try:
        for table, _ in saved:
            if table is tolerance.FLUSH:
                table.update({k: 0.0 for k in table})  # no flush range (the floor stays)
            else:
                table.clear()  # no log-domain allowance
        yield
    finally:
        for table, values in saved:
            table.clear()
            table.update(values)


def sweep(dtype: str, count: int, seed: int = 0, n_shapes: int | None = None,
          against=REFERENCES, only: set[int] | None = None, progress=None) -> tuple[int, list[Rejection], int]:
    """Check every case: ``(checked, rejections, refused)``; a case refused as input is counted apart."""
    from manual_backprop.checking import check

    checked, rejected, refused = 0, [], 0
    for index, case in cases(dtype, count, seed, n_shapes):
        if only is not None and index not in only:
            continue
        try:
            report = check(case, against=list(against))
        except InputError as e:
            refused += 1
            if progress:
                progress(f"{case.title}: {case.network.describe()}, batch {case.batch}: refused as input: {e}")
            continue
        checked += 1
        if not report.ok:
            rejected.append(Rejection(index, case, report))
            if progress:
                progress(rejected[-1].describe())
    return checked, rejected, refused


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000, help="networks per dtype (default 1000)")
    p.add_argument("--dtype", choices=DTYPES, action="append", help="one dtype (default both)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shapes", type=int, default=None, help="architectures per dtype (default count / 8)")
    p.add_argument("--only", nargs="+", default=None, metavar="DTYPE:INDEX", help="just these networks")
    p.add_argument("--without", default="", metavar="PARTS",
                   help=f"switch parts of the tolerance policy off ({', '.join(PARTS)}, comma-separated): "
                        f"what is rejected then is what they are for")
    args = p.parse_args(argv)
    parts = [x for x in args.without.split(",") if x]
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        p.error(f"--without: unknown part {unknown[0]!r}; known: {', '.join(PARTS)}")
    from manual_backprop import references

    missing = [r for r in REFERENCES if not references.is_installed(r)]
    if missing:
        print(f"sweep: {', '.join(missing)} not installed", file=sys.stderr)
        return 2
    only: dict[str, set[int]] = {}
    for item in args.only or ():
        dtype, _, index = item.partition(":")
        only.setdefault(dtype, set()).add(int(index))
    total = 0
    for dtype in args.dtype or (list(only) if only else DTYPES):
        t0 = time.perf_counter()
        with without(parts):
            checked, rejected, refused = sweep(dtype, args.count, args.seed, args.shapes,
                                               only=only.get(dtype), progress=print)
        total += len(rejected)
        print(f"{dtype}: {checked} networks checked against {', '.join(REFERENCES)}"
              f"{' without ' + ' and '.join(parts) if parts else ''}, {len(rejected)} rejected, "
              f"{refused} refused as input, {time.perf_counter() - t0:.0f} s", flush=True)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
