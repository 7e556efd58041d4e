"""PyTorch references for what comes after one batch gradient.

* per-sample gradients ``dWl_per_sample``, ``dbl_per_sample`` with
  ``torch.func.vmap(torch.func.grad(l_i))``: autograd differentiates each
  sample's own term, vmap maps that over the rows, with no loop;
* ``.grad`` accumulation over several ``loss_j.backward()`` calls on micro-batches;
* one ``torch.optim.SGD`` step (lr only, no momentum): ``Wl_next``, ``bl_next``.

The network is the same maths as the NumPy engine, written in torch ops (not
``nn.Linear``, whose weight is stored transposed): ``Z = A @ W + b``. bce
and softmax cross-entropy are computed from the logits, as torch's own
``binary_cross_entropy_with_logits`` and ``log_softmax`` do. Every function
takes a :class:`~manual_backprop.case.Case` and returns NumPy arrays under
the names of ../shared/PRODUCT.md.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from ..description.case import Case
from ..description.network import Network
from .torch_ref import (
    ACTIVATIONS,  # one table per framework; softmax over the last axis, so it serves one row (vmap) too
)


def version() -> str:
    return f"torch {torch.__version__}"


def _params(case: Case, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, requires_grad=requires_grad) for k, v in case.params.items()}


def forward(network: Network, params: dict[str, torch.Tensor], X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ZL, AL)`` for a batch X of rows."""
    A = X
    for l, act in enumerate(network.activations, start=1):
        Z = A @ params[f"W{l}"] + params[f"b{l}"]
        A = ACTIVATIONS[act](Z)
    return Z, A


def terms_sum(network: Network, Z: torch.Tensor, A: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """``sum_i l_i``: the per-sample terms of PRODUCT.md's table, summed, no normalisation."""
    if network.loss == "half_mse":
        return 0.5 * ((A - T) ** 2).sum()
    if network.loss == "mse":
        return F.mse_loss(A, T, reduction="sum")
    if network.loss == "bce":
        return F.binary_cross_entropy_with_logits(Z, T, reduction="sum")
    if network.loss == "softmax_cross_entropy":
        return -(T * torch.log_softmax(Z, dim=-1)).sum()
    raise ValueError(f"unknown loss {network.loss!r}")


def loss(network: Network, params: dict[str, torch.Tensor], X: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """The batch loss with the network's reduction, as torch's own losses reduce it."""
    Z, A = forward(network, params, X)
    if network.reduction == "sum":
        return terms_sum(network, Z, A, T)
    if network.loss == "half_mse":
        return 0.5 * ((A - T) ** 2).sum(dim=1).mean()          # (1/N) sum_i l_i
    if network.loss == "mse":
        return F.mse_loss(A, T)                                 # 1/(N*K), as nn.MSELoss
    if network.loss == "bce":
        return F.binary_cross_entropy_with_logits(Z, T)         # 1/(N*K), as nn.BCEWithLogitsLoss
    return F.cross_entropy(Z, T)                                # 1/N, probability targets


def _data(case: Case, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(case.X[rows]), torch.tensor(case.T[rows])  # copies: never a read-only view


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().copy()


def per_sample_gradients(case: Case) -> dict[str, np.ndarray]:
    """``dWl_per_sample`` (N, n_{l-1}, n_l), ``dbl_per_sample`` (N, n_l): ``d l_i / dWl`` for every i."""
    net = case.network

    def l_i(params: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        Z, A = forward(net, params, x[None])                   # one sample as a batch of one row
        return terms_sum(net, Z, A, t[None])

    X, T = _data(case)
    g = vmap(grad(l_i), in_dims=(None, 0, 0))(_params(case), X, T)
    out = {}
    for l in range(1, net.depth + 1):
        out[f"dW{l}_per_sample"] = _numpy(g[f"W{l}"])
        out[f"db{l}_per_sample"] = _numpy(g[f"b{l}"])
    return out


def gradients(case: Case) -> dict[str, np.ndarray]:
    """The batch ``dWl``, ``dbl`` from one ``loss.backward()``."""
    params = _params(case, requires_grad=True)
    loss(case.network, params, *_data(case)).backward()
    return {f"d{k}": _numpy(p.grad) for k, p in params.items()}


def accumulated_gradients(case: Case, size: int) -> dict[str, np.ndarray]:
    """``.grad`` after ``loss_j.backward()`` on each micro-batch of ``size`` rows, never zeroed between."""
    params = _params(case, requires_grad=True)
    for start in range(0, case.batch, size):
        loss(case.network, params, *_data(case, slice(start, start + size))).backward()
    return {f"d{k}": _numpy(p.grad) for k, p in params.items()}


def next_parameters(case: Case, lr: float | None = None) -> dict[str, np.ndarray]:
    """``Wl_next``, ``bl_next`` after one ``torch.optim.SGD(lr=lr, momentum=0)`` step on the whole batch."""
    lr = case.learning_rate if lr is None else lr
    params = _params(case, requires_grad=True)
    opt = torch.optim.SGD(list(params.values()), lr=lr, momentum=0.0)
    opt.zero_grad()
    loss(case.network, params, *_data(case)).backward()
    opt.step()
    return {f"{k}_next": _numpy(p) for k, p in params.items()}
