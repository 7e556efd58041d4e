"""The PyTorch reference: the engine's maths written with torch ops, every gradient from autograd.

Forward, one named step per layer, as in the engine::

    Z_l = A_(l-1) @ W_l + b_l        plain matmul, not nn.Linear (whose weight is W_l.T)
    A_l = act_l(Z_l)
    L   = c * loss_sum(Z_L or A_L, Y)

X, every W_l and b_l are leaf tensors; every Z_l and A_l keeps its gradient
(``retain_grad``), so ``L.backward()`` yields dW_l, db_l, dX and the
intermediate dZ_l, dA_l, none of them written by hand.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..description.case import Case
from ..errors import InputError
from ..kernels import LOSSES

#: ``A = act(Z)``. ReLU is ``torch.relu``, whose gradient at Z == 0 is 0, the
#: project's convention; ``clamp(min=0)`` would give 1 there and ``maximum(Z, 0)`` 1/2.
ACTIVATIONS = {
    "identity": lambda Z: Z,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "softmax": lambda Z: torch.softmax(Z, dim=-1),
}

#: ``sum(terms)``, before the reduction's factor c. bce and cross-entropy take the
#: logits Z (never the probabilities A: ``BCELoss`` clamps log(0) to -100 and
#: returns a wrong gradient once the sigmoid saturates). ``Y`` is a (N, K) float
#: target, or (N,) int64 class labels for cross-entropy.
LOSS_SUMS = {
    "half_mse": lambda Z, A, Y: 0.5 * ((A - Y) ** 2).sum(),
    "mse": lambda Z, A, Y: ((A - Y) ** 2).sum(),
    "bce": lambda Z, A, Y: F.binary_cross_entropy_with_logits(Z, Y, reduction="sum"),
    "softmax_cross_entropy": lambda Z, A, Y: F.cross_entropy(Z, Y, reduction="sum"),
}


def version() -> str:
    return torch.__version__


def run(case: Case, device: str | None = None) -> dict[str, np.ndarray]:
    """The named trace of ``case`` (``case.network.names()``, in order), as NumPy arrays."""
    net = case.network
    dev = _device(device)
    fused = LOSSES[net.loss].fused_with is not None
    with torch.enable_grad():
        X = _tensor(case.X, dev).requires_grad_()
        params = {k: _tensor(v, dev).requires_grad_() for k, v in case.params.items()}
        Y = _tensor(case.Y, dev)
        out: dict[str, torch.Tensor] = {}
        A = X
        for l, act in enumerate(net.activations, start=1):
            Z = A @ params[f"W{l}"] + params[f"b{l}"]
            A = ACTIVATIONS[act](Z)
            Z.retain_grad()
            if not (fused and l == net.depth):  # a fused loss never sees A_L: no dA_L
                A.retain_grad()
            out[f"Z{l}"], out[f"A{l}"] = Z, A
        c = LOSSES[net.loss].scale(Z.shape[0], Z.shape[1], net.reduction)
        L = LOSS_SUMS[net.loss](Z, A, Y) * c
        L.backward()

    tensors = {"X": X, **params, **out, "L": L}
    trace = {}
    for name in net.names():
        if name == "Y":
            trace[name] = case.Y  # as given: (N, K) floats or (N,) int64 labels
        elif name.startswith("d"):  # dX, dWl, dbl on the leaves; dZl, dAl retained
            trace[name] = _numpy(tensors[name[1:]].grad, name, net.np_dtype)
        else:
            trace[name] = _numpy(tensors[name], name, net.np_dtype)
    return trace


def _device(device: str | None) -> torch.device:
    name = (device or "cpu").lower()
    if name == "cpu":
        return torch.device("cpu")
    if name in ("cuda", "gpu") or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: torch sees no GPU on this machine")
        return torch.device("cuda" if name == "gpu" else name)
    raise InputError(f"unknown device {device!r}; known: cpu, cuda (or gpu)")


def _tensor(a: np.ndarray, dev: torch.device) -> torch.Tensor:
    """The array as a tensor of the same dtype (``from_numpy`` never casts)."""
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # from_numpy warns on a read-only array; copy it instead
        a = a.copy()
    return torch.from_numpy(a).to(dev)


def _numpy(t: torch.Tensor | None, name: str, dtype: np.dtype) -> np.ndarray:
    if t is None:
        raise RuntimeError(f"torch reference: autograd produced no gradient for {name}")
    a = t.detach().cpu().numpy()
    if a.dtype != dtype:
        raise TypeError(f"torch reference: {name} came back as {a.dtype}, but the network is {dtype}")
    return a


def layer_gradients(linear: bool, activation: str, x: np.ndarray, params: dict[str, np.ndarray],
                    dout: np.ndarray) -> dict[str, np.ndarray]:
    """One layer ``out = act(x @ W + b)`` (or ``act(x)``) and the gradients of ``(out * dout).sum()``, in float64.

    Returns ``out``, ``dx`` and, for a Linear layer, ``dW`` and ``db``: what a
    user's ``backward(dout, cache)`` must return for that upstream ``dout``.
    """
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float64))  # noqa: E731  (a writable copy)
    with torch.enable_grad():
        X = t(x).requires_grad_()
        p = {k: t(v).requires_grad_() for k, v in params.items()}
        out = ACTIVATIONS[activation](X @ p["W"] + p["b"] if linear else X)
        (out * t(dout)).sum().backward()
    grads = {"out": out, "dx": X.grad, **{f"d{k}": v.grad for k, v in p.items()}}
    return {k: v.detach().numpy() for k, v in grads.items()}
