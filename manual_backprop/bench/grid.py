"""What is benchmarked: the three networks, the batch sizes, the dtypes, and the checked inputs.

One grid point is (network, dtype, batch). Its case (parameters and data drawn
from seed 0) and the engine's answer for it are made once per process and
shared by every implementation timed there.

Every implementation's result is checked against the engine with the
project's one comparator and tolerance policy (:func:`check_against_engine`):
element by element, ``|impl - engine| <= K * E + floor`` with ``E`` the
rounding scale of the engine's trace, and a ReLU unit within rounding of 0
allowed to take the other side (the comparator's possible flips). The floors
compute only products, so they are checked against those products in float64
with ``E`` composed from the same per-step functions (:func:`floor_scales`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import engine
from ..compare import (
    UNIT_ROUNDOFF,
    TensorCheck,
    compare_arrays,
    compare_values,
    error_scales,
    kink_scales,
    possible_flips,
)
from ..compare.tolerance import linear_backward_error, linear_forward_error
from ..description.case import Case, make_case
from ..description.network import Network

NETWORKS = {
    "2-3-1": ((2, 3, 1), ("sigmoid", "identity"), "half_mse"),
    "784-256-256-10": ((784, 256, 256, 10), ("relu", "relu", "softmax"), "softmax_cross_entropy"),
    "1024x4": ((1024, 1024, 1024, 1024), ("relu", "relu", "identity"), "half_mse"),
}
BATCHES = (1, 8, 64, 512, 4096)
# float32 everywhere; float64 too for the middle network.
DTYPES = {"2-3-1": ("float32",), "784-256-256-10": ("float32", "float64"), "1024x4": ("float32",)}


@dataclass(frozen=True)
class Point:
    network: str
    dtype: str
    batch: int

    @property
    def id(self) -> str:
        return f"{self.network}-{self.dtype}-B{self.batch}"

    @property
    def group(self) -> str:
        return f"{self.network} {self.dtype} B={self.batch}"


POINTS = [Point(n, d, b) for n in NETWORKS for d in DTYPES[n] for b in BATCHES]


def network(name: str, dtype: str) -> Network:
    sizes, acts, loss = NETWORKS[name]
    return Network(sizes, acts, loss, "mean", dtype)


@lru_cache(maxsize=4)
def prepared_case(point: Point) -> tuple[Case, np.ndarray]:
    """The case at ``point`` and its target as the timed code takes it (:func:`timed_target`)."""
    case = make_case(network(point.network, point.dtype), seed=0, batch=point.batch)
    return case, timed_target(case)


def timed_target(case: Case) -> np.ndarray:
    """The target as the timed implementations take it: labels (N,) for cross-entropy, else T (N, K)."""
    return case.Y if case.Y.ndim == 1 else case.T


@dataclass
class Answer:
    """The checking engine's trace at a grid point, its rounding scales ``E``, and (once asked) the kink allowance."""

    case: Case
    trace: dict[str, np.ndarray]
    E: dict[str, np.ndarray]
    _kinks: dict[str, np.ndarray] | None = None
    source: Case | None = None  # the whole case asked about (``case`` may be its first rows)

    def kinks(self) -> dict[str, np.ndarray]:
        """What each gradient may move if the units that :func:`~manual_backprop.compare.possible_flips` flip."""
        if self._kinks is None:
            net = self.case.network
            flips = possible_flips(net, self.trace, self.E)
            self._kinks = kink_scales(net, self.case.params, self.trace, flips) if flips else {}
        return self._kinks


_ANSWERS: dict[tuple[int, int | None], Answer] = {}


def engine_answer(case: Case, rows: int | None = None) -> Answer:
    """The checking engine's trace and rounding scales for ``case`` (on its first ``rows`` samples).

    Kept for the last four cases asked (every implementation of a point is checked against one answer).
    """
    key = (id(case), rows)
    if key in _ANSWERS and _ANSWERS[key].source is case:
        return _ANSWERS[key]
    part = case
    if rows is not None:
        part = make_case(case.network, case.params, case.X[:rows], case.Y[:rows], seed=case.seed)
    trace = engine.run(part)
    with np.errstate(all="ignore"):
        E = error_scales(part.network, part.params, trace, part.T)
    if len(_ANSWERS) >= 4:
        _ANSWERS.pop(next(iter(_ANSWERS)))
    _ANSWERS[key] = answer = Answer(part, dict(trace), E, source=case)
    return answer


def check_against_engine(case: Case, impl: str, L, grads: dict[str, np.ndarray],
                         rows: int | None = None) -> list[TensorCheck]:
    """``L`` and every ``grads[Wl]``, ``grads[bl]`` of ``impl`` against the engine, by the comparator.

    A tensor that fails the rounding tolerance is judged again with the kink
    allowance (asked only then: it costs a backward pass of its own).
    """
    answer = engine_answer(case, rows)
    dtype = answer.case.network.dtype
    checks = []
    for name, value in [("L", L)] + [(f"d{p}", g) for p, g in grads.items()]:
        check = compare_arrays(name, "engine", value, answer.trace[name], answer.E[name], dtype)
        if check.status == "fail" and name != "L":
            check = compare_arrays(name, "engine", value, answer.trace[name], answer.E[name], dtype,
                                   answer.kinks().get(name))
        check.extra["impl"] = impl
        checks.append(check)
    return checks


def floor_scales(case: Case, want: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``E`` of what the floors compute: ``Zl = Z(l-1) @ Wl`` (Z0 = X; no bias, no activation), ``dWl = Z(l-1).T @ 1``.

    ``want`` holds those products in float64 (``impls.floor_reference``); the
    steps are the policy's Linear forward and backward, with zero bias and an
    exact all-ones dZ.
    """
    u = UNIT_ROUNDOFF[case.network.dtype]
    A, E_A = case.X.astype(np.float64), np.zeros(case.X.shape)
    out = {}
    for l in range(1, case.network.depth + 1):
        W = case.params[f"W{l}"]
        ones = np.ones((A.shape[0], W.shape[1]))
        out[f"dW{l}"], _, _ = linear_backward_error(A, E_A, W, ones, np.zeros(ones.shape), u)
        out[f"Z{l}"] = E_A = linear_forward_error(A, E_A, W, np.zeros(W.shape[1]), u)
        A = want[f"Z{l}"]
    return out


def check_floor(case: Case, impl: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> list[TensorCheck]:
    """A floor's products against the same products in float64, by the comparator."""
    E = floor_scales(case, want)
    checks = []
    for name in want:
        check = compare_values(name, "float64", got[name], want[name], E[name], case.network.dtype)
        check.extra["impl"] = impl
        checks.append(check)
    return checks
