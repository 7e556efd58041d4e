"""Every backward rule equals torch autograd, on cases built so that each classic mistake shows.

These tests are the ones the mutation run (``tools/mutate.py``) gives every
mutant of a backward rule, so they are fast (torch only: no JAX compilation)
and each case is chosen to expose a particular wrong rule:

- no two of N, n_in and n_out equal, so that a transposed product or a sum over
  the wrong axis cannot hide behind a shape that happens to fit;
- N = 1 and N = 2 (the outer-product path of dW, and a rule that reads only the
  first row); a one-input layer (n_in = 1);
- exact zeros in Z1 (rows of X zero, b1 = 0): ``Z >= 0`` for ``Z > 0`` shows only there;
- every activation in a hidden layer and on the output, softmax also unfused;
- both reductions, with the normalisation checked against torch's own loss
  modules (``MSELoss``, ``BCEWithLogitsLoss``, ``cross_entropy``): the references
  take c from ``Network.normaliser``, which reads the engine's ``Loss.scale``, so
  only these can vouch for the 1/N, for the engine and for the torch reference's loss.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from manual_backprop import Network, make_case
from manual_backprop.checking.checker import check
from manual_backprop.engine.trace import run
from manual_backprop.references import torch_ref

from .helpers import with_kinks

# sizes, activations, loss, reduction, batch
CASES = {
    "relu-hidden-kinks": ((4, 5, 3), ("relu", "identity"), "half_mse", "mean", 7),
    "sigmoid-hidden": ((3, 5, 2), ("sigmoid", "identity"), "half_mse", "sum", 4),
    "tanh-hidden-mse": ((2, 6, 3), ("tanh", "tanh"), "mse", "mean", 5),
    "identity-hidden-sigmoid-out": ((3, 4, 2), ("identity", "sigmoid"), "half_mse", "mean", 6),
    "relu-out": ((5, 3, 4), ("tanh", "relu"), "mse", "sum", 2),
    "softmax-unfused": ((3, 5, 4), ("sigmoid", "softmax"), "mse", "mean", 6),
    "bce": ((4, 3, 2), ("relu", "sigmoid"), "bce", "mean", 5),
    "bce-sum": ((2, 4, 3), ("tanh", "sigmoid"), "bce", "sum", 7),
    "cross-entropy-labels": ((3, 6, 4), ("tanh", "softmax"), "softmax_cross_entropy", "mean", 5),
    "cross-entropy-sum": ((4, 3, 5), ("sigmoid", "softmax"), "softmax_cross_entropy", "sum", 2),
    "one-sample": ((3, 4, 2), ("sigmoid", "identity"), "half_mse", "mean", 1),
    "one-input": ((1, 3, 2), ("tanh", "identity"), "half_mse", "mean", 4),
    "three-layers": ((3, 5, 4, 2), ("relu", "tanh", "identity"), "half_mse", "mean", 6),
}


def build(name: str):
    sizes, acts, loss, reduction, batch = CASES[name]
    case = make_case(Network(sizes, acts, loss, reduction), seed=len(name), batch=batch)
    return with_kinks(case) if name.endswith("kinks") else case


@pytest.mark.parametrize("name", CASES)
def test_every_tensor_equals_torch_autograd(name):
    case = build(name)
    report = check(case, against=["torch"])
    bad = {n: (c.status, c.margin) for n, per in report.checks.items() for c in per.values() if c.status != "ok"}
    assert not bad, f"{name}: {bad}"


def test_the_kink_case_really_has_exact_zeros_in_Z1():
    assert (run(build("relu-hidden-kinks"))["Z1"] == 0).any()


def _torch_loss(loss: str, reduction: str, out: torch.Tensor, Y: np.ndarray) -> torch.Tensor:
    """torch's own loss modules, each with its own normalisation (nothing shared with the engine)."""
    y = torch.from_numpy(Y)
    if loss == "mse":
        return torch.nn.MSELoss(reduction=reduction)(out, y)
    if loss == "half_mse":  # not a torch module: ½ the sum, or ½ the sum over N
        total = 0.5 * torch.nn.MSELoss(reduction="sum")(out, y)
        return total if reduction == "sum" else total / out.shape[0]
    if loss == "bce":
        return torch.nn.BCEWithLogitsLoss(reduction=reduction)(out, y)
    return F.cross_entropy(out, y, reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss,last", [("half_mse", "identity"), ("mse", "identity"), ("bce", "sigmoid"),
                                       ("softmax_cross_entropy", "softmax")])
def test_the_loss_and_its_gradient_are_normalised_as_torchs_own_loss_modules(loss, last, reduction):
    case = make_case(Network((3, 4), (last,), loss, reduction), seed=2, batch=5)
    trace = run(case)
    fused = loss in ("bce", "softmax_cross_entropy")
    out = torch.from_numpy((trace["Z1"] if fused else trace["A1"]).copy()).requires_grad_()
    L = _torch_loss(loss, reduction, out, case.Y)
    L.backward()
    np.testing.assert_allclose(trace["L"], L.item(), rtol=1e-13)
    np.testing.assert_allclose(trace["dZ1" if fused else "dA1"], out.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss,last", [("half_mse", "sigmoid"), ("mse", "tanh"), ("bce", "sigmoid"),
                                       ("softmax_cross_entropy", "softmax")])
def test_the_torch_references_loss_is_normalised_as_torchs_own_loss_modules(loss, last, reduction):
    # The reference's loss table and normaliser against torch's modules, on the reference's own
    # forward, in value and in every parameter gradient (what per-sample, accumulation and the
    # SGD step differentiate); labels for cross-entropy, as the checked cases give them.
    case = make_case(Network((3, 5, 4), ("relu", last), loss, reduction), seed=4, batch=6)
    params = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in case.params.items()}
    X, Y = torch.from_numpy(case.X.copy()), torch.from_numpy(case.Y.copy())
    L = torch_ref.loss(case.network, params, X, Y)
    Zs, As = torch_ref.forward(case.network, params, X)
    fused = loss in ("bce", "softmax_cross_entropy")
    L_module = _torch_loss(loss, reduction, Zs[-1] if fused else As[-1], case.Y)
    grads = torch.autograd.grad(L, list(params.values()))
    grads_module = torch.autograd.grad(L_module, list(params.values()))
    np.testing.assert_allclose(L.item(), L_module.item(), rtol=1e-13)
    for name, g, g_module in zip(params, grads, grads_module):
        np.testing.assert_allclose(g.numpy(), g_module.numpy(), rtol=1e-12, atol=1e-15, err_msg=name)
