"""The kernels one at a time: the Linear backward rules, the activation masks, each loss's gradient.

Each benchmark is one rule; its ways of computing it (the registry kernel as
the checking engine calls it, allocating; the same kernel as the fast engine
calls it, with ``out=`` and ``scratch=`` buffers; other textbook forms) are
all checked against the textbook expression in float64 first, then timed
side by side in interleaved rounds, as the networks are.
Shapes are those of 784-256-256-10's first layer at batch 512 (the loss
kernels: its output, 512 x 10; the one-row dW: its first layer, and one of
1024x4's layers), float32.
"""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop.kernels import ACTIVATIONS, LOSSES
from manual_backprop.kernels import linear as lin

from manual_backprop.bench.timer import Interleaved

from .conftest import start_clean

N, N_IN, N_OUT, K = 512, 784, 256, 10
DT = np.float32
rng = np.random.default_rng(0)
A = rng.standard_normal((N, N_IN)).astype(DT)
W = (rng.standard_normal((N_IN, N_OUT)) / np.sqrt(N_IN)).astype(DT)
dZ = rng.standard_normal((N, N_OUT)).astype(DT)
Zh = rng.standard_normal((N, N_OUT)).astype(DT)
dAh = rng.standard_normal((N, N_OUT)).astype(DT)
ZL = rng.standard_normal((N, K)).astype(DT)
labels = rng.integers(0, K, N)
TL = np.eye(K, dtype=DT)[labels]
a1, dz1 = A[:1], dZ[:1]  # one-row batch
wide1, wide2 = rng.standard_normal((1, 1024)).astype(DT), rng.standard_normal((1, 1024)).astype(DT)  # 1024x4's
BUF = {"dW": np.empty((N_IN, N_OUT), DT), "dW wide": np.empty((1024, 1024), DT),
       "dA": np.empty((N, N_IN), DT), "db": np.empty(N_OUT, DT), "h": np.empty_like(Zh), "scratch": np.empty_like(Zh), "mask": np.empty(Zh.shape, np.bool_),
       "out": np.empty_like(ZL)}
ONES = np.ones(N, DT)


Ah = np.maximum(Zh, 0)


def relu_in_place():
    # The fast engine's call: A passed for Z (ReLU's backward_from_A), the mask in the scratch
    # buffer, the product into a buffer (over dA in the engine; here every call sees the same dA).
    return ACTIVATIONS["relu"].backward(dAh, Ah, Ah, out=BUF["h"], scratch=BUF["scratch"])


def relu_bool_mask():
    # The same product with the mask in a boolean buffer instead (an eighth of float64's memory).
    np.greater(Ah, 0, out=BUF["mask"])
    return np.multiply(dAh, BUF["mask"], out=BUF["h"])


S = ACTIVATIONS["sigmoid"].forward(Zh)


def sigmoid_in_place():
    return ACTIVATIONS["sigmoid"].backward(dAh, S, S, out=BUF["h"], scratch=BUF["scratch"])


def loss_grad(name, Y, out=None):
    loss = LOSSES[name]
    act = ACTIVATIONS[loss.fused_with or "identity"]
    AL = act.forward(ZL)
    return lambda: loss.gradient(ZL, AL, Y, "mean", out=out)


def f64(x):
    return np.asarray(x, np.float64)


sig64 = 1 / (1 + np.exp(-f64(ZL)))
soft64 = np.exp(f64(ZL)) / np.exp(f64(ZL)).sum(axis=1, keepdims=True)
bce_T = (rng.uniform(size=(N, K)) > 0.5).astype(DT)

# (group, variant, function, textbook value in float64)
KERNELS = [
    ("dW = A.T @ dZ", "registry linear_dW", lambda: lin.linear_dW(A, dZ), f64(A).T @ f64(dZ)),
    ("dW = A.T @ dZ", "out= (fast)", lambda: lin.matmul_into(A.T, dZ, BUF["dW"]), f64(A).T @ f64(dZ)),
    ("dW, one row", "np.outer (registry, N=1)", lambda: lin.linear_dW(a1, dz1), np.outer(f64(a1), f64(dz1))),
    ("dW, one row", "a.T @ dz (GEMM, inner dim 1)", lambda: a1.T @ dz1, np.outer(f64(a1), f64(dz1))),
    ("dW, one row", "out= (fast: GEMM, inner dim padded to 4)", lambda: lin.matmul_into(a1.T, dz1, BUF["dW"]),
     np.outer(f64(a1), f64(dz1))),
    ("dW, one row, 1024 x 1024", "out= (fast: einsum, rows of 512 and more)",
     lambda: lin.matmul_into(wide1.T, wide2, BUF["dW wide"]), np.outer(f64(wide1), f64(wide2))),
    ("dW, one row, 1024 x 1024", "GEMM, inner dim padded to 4",
     lambda: lin.padded_outer(wide1.T, wide2, BUF["dW wide"]), np.outer(f64(wide1), f64(wide2))),
    ("dW, one row, 1024 x 1024", "broadcast multiply, out=",
     lambda: np.multiply(wide1.T, wide2, out=BUF["dW wide"]), np.outer(f64(wide1), f64(wide2))),
    ("db = 1.T @ dZ", "ones @ dZ (registry)", lambda: lin.linear_db(dZ), f64(dZ).sum(0)),
    ("db = 1.T @ dZ", "dZ.sum(0)", lambda: dZ.sum(0), f64(dZ).sum(0)),
    ("db = 1.T @ dZ", "ones @ dZ, out=", lambda: np.matmul(ONES, dZ, out=BUF["db"]), f64(dZ).sum(0)),
    ("dA_prev = dZ @ W.T", "registry linear_dA_prev", lambda: lin.linear_dA_prev(dZ, W), f64(dZ) @ f64(W).T),
    ("dA_prev = dZ @ W.T", "out= (fast)", lambda: lin.matmul_into(dZ, W.T, BUF["dA"]), f64(dZ) @ f64(W).T),
    ("relu A = max(Z, 0)", "registry relu_forward, allocating", lambda: ACTIVATIONS["relu"].forward(Zh),
     np.maximum(f64(Zh), 0)),
    ("relu A = max(Z, 0)", "max(Z, 0.0), out= (a scalar 0)", lambda: np.maximum(Zh, 0.0, out=BUF["h"]),
     np.maximum(f64(Zh), 0)),
    ("relu A = max(Z, 0)", "out=, scratch= (fast: an array of zeros)",
     lambda: ACTIVATIONS["relu"].forward(Zh, out=BUF["h"], scratch=BUF["scratch"]), np.maximum(f64(Zh), 0)),
    ("relu mask dA * (Z > 0)", "registry relu_backward",
     lambda: ACTIVATIONS["relu"].backward(dAh, Zh, None), f64(dAh) * (Zh > 0)),
    ("relu mask dA * (Z > 0)", "out=, scratch= (fast)", relu_in_place, f64(dAh) * (Zh > 0)),
    ("relu mask dA * (Z > 0)", "boolean mask buffer", relu_bool_mask, f64(dAh) * (Zh > 0)),
    ("sigmoid mask dA * A(1 - A)", "registry sigmoid_backward",
     lambda: ACTIVATIONS["sigmoid"].backward(dAh, Zh, S), f64(dAh) * f64(S) * (1 - f64(S))),
    ("sigmoid mask dA * A(1 - A)", "out=, scratch= (fast)", sigmoid_in_place, f64(dAh) * f64(S) * (1 - f64(S))),
    ("loss gradient", "half_mse: c (A - T)", loss_grad("half_mse", TL), (f64(ZL) - TL) / N),
    ("loss gradient", "half_mse: c (A - T), out= (fast)", loss_grad("half_mse", TL, BUF["out"]), (f64(ZL) - TL) / N),
    ("loss gradient", "mse: 2c (A - T)", loss_grad("mse", TL), 2 * (f64(ZL) - TL) / (N * K)),
    ("loss gradient", "bce: c (sigmoid(Z) - T)", loss_grad("bce", bce_T), (sig64 - bce_T) / (N * K)),
    ("loss gradient", "softmax_cross_entropy: c (P - T)", loss_grad("softmax_cross_entropy", TL),
     (soft64 - TL) / N),
    ("loss gradient", "softmax_cross_entropy, labels, out= (fast)",
     loss_grad("softmax_cross_entropy", labels, BUF["out"]), (soft64 - TL) / N),
]


GROUPS: dict[str, list[tuple[str, object, np.ndarray]]] = {}
for _group, _variant, _fn, _want in KERNELS:
    GROUPS.setdefault(_group, []).append((_variant, _fn, _want))


@pytest.mark.parametrize("group", list(GROUPS))
def test_kernel(benchmark, request, group):
    """One rule: its ways checked against the textbook value, then timed side by side, round after round."""
    for variant, fn, want in GROUPS[group]:
        got = f64(fn())
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 1e-5, f"{group} by {variant}: off by {err:.1e} (relative to the largest entry)"
    timer = Interleaved({variant: fn for variant, fn, _ in GROUPS[group]})
    benchmark.group = f"kernel: {group}"
    if benchmark.disabled:
        benchmark.pedantic(timer.round)
    else:
        timer.calibrate()
        start_clean(benchmark)
        benchmark.pedantic(timer.round, rounds=request.config.getoption("benchmark_min_rounds"))
    benchmark.extra_info.update(kind="kernel", kernel=group, dtype="float32", shape=f"N={N}, {N_IN}->{N_OUT}, K={K}",
                                variants={v: {"times": t} for v, t in timer.times.items()})
