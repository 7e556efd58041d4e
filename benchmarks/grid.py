"""What is benchmarked: the three networks, the batch sizes, the dtypes, and the checked inputs.

One grid point is (network, dtype, batch). Its case (parameters and data drawn
from seed 0) and the engine's answer for it are made once per process and
shared by every implementation timed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from manual_backprop import engine
from manual_backprop.description.case import Case, make_case
from manual_backprop.description.network import Network

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
    """The case at ``point`` and its target as the timed code takes it (labels for cross-entropy)."""
    case = make_case(network(point.network, point.dtype), seed=0, batch=point.batch)
    return case, case.Y if case.Y.ndim == 1 else case.T


@lru_cache(maxsize=4)
def engine_answer(point: Point, rows: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The checking engine's ``L`` and parameter gradients at ``point`` (on the first ``rows`` samples)."""
    case, _ = prepared_case(point)
    X, Y, T = case.X, case.Y, case.T
    if rows is not None:
        X, Y, T = X[:rows], Y[:rows], T[:rows]
    fwd = engine.forward(case.network, case.params, X, Y, T)
    bwd = engine.backward(case.network, case.params, fwd, T)
    return fwd["L"], {name: bwd[f"d{name}"] for name in case.params}


# Norm-wise relative error allowed against the engine. float32 leaves room for a
# ReLU mask entry that flips when a pre-activation lies within rounding of 0:
# on 784-256-256-10 at B=512 one Z2 entry is 2e-8, and torch's float32 sign
# differs from the engine's, moving dW1 by 2.6e-3 relative (both are 2.6e-3
# from float64, the other 3e-7). A wrong rule is off by O(1).
CHECK_RTOL = {"float32": 1e-2, "float64": 1e-10}


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.linalg.norm(want)
    return float(np.linalg.norm(got - want) / scale) if scale else float(np.linalg.norm(got))
