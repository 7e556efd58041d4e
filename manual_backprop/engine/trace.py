"""The NumPy engine: the forward pass, and the backward pass derived by hand.

The backward is the forward read in reverse, one named step per line::

    forward                              backward
    A0 = X                               dAL = dL/dAL (fused loss: of the loss written from AL)
                                         dZL = dL/dZL (fused loss: c (AL - Y)) or dAL * act'(ZL)
    Zl = A(l-1) @ Wl + bl                dWl = A(l-1).T @ dZl  (+ 2fλ Wl with L2)
    Al = act_l(Zl)                       dbl = 1.T @ dZl
    L  = loss(AL or ZL, Y)               dA(l-1) = dZl @ Wl.T ;  dZ(l-1) = dA(l-1) * act'(Z(l-1))

A layer with a norm (``network.norms``, :mod:`~manual_backprop.kernels.normalization`) reads::

    Zl = A(l-1) @ Wl + bl                dSl = dAl * act'(Sl)
    Nl = (Zl - mean) / sqrt(var + eps)   dgammal = 1.T @ (dSl * Nl) ;  dbetal = 1.T @ dSl ;  dNl = dSl * gammal
    Sl = gammal * Nl + betal             dZl = (1/m) inv_std (m dNl - sum(dNl) - Nl sum(dNl * Nl))
    Al = act_l(Sl)                       dWl, dbl, dA(l-1) from dZl as above

With an L2 penalty (``network.l2 = λ``) the loss is ``L = L_data + L_reg``,
``L_reg = f λ Σ ‖Wl‖²``, and its gradient ``2 f λ Wl`` is added to each ``dWl``
(:mod:`~manual_backprop.kernels.regularization`); the deltas ``dZl``, ``dAl``
are the data term's alone, as the penalty does not depend on them.

Every tensor is kept in the returned trace under its name, in the dtype of
the network (float32 stays float32 end to end).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..description.case import Case
from ..description.network import Network, layer_of
from ..errors import InputError
from ..kernels import ACTIVATIONS, LOSSES, NORMS, linear_backward, linear_forward
from ..kernels.regularization import l2_gradient, l2_penalty

Trace = dict  # name -> np.ndarray, in the order the run made them


def forward(
    network: Network,
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    T: np.ndarray,
    perturb: Mapping[str, np.ndarray] | None = None,
    reuse: Trace | None = None,
) -> Trace:
    """``X, Y, Z1, A1, ..., ZL, AL, L``.

    ``perturb`` adds a small array to any named tensor as it is made (``"X"``,
    ``"W2"``, ``"Z1"``, ``"A1"``, ...): the finite-difference reference uses it
    to differentiate the loss with respect to an intermediate tensor. With
    ``reuse`` (an unperturbed trace of the same case), the layers before the
    first perturbed one are taken from it instead of being recomputed.
    """
    p = perturb or {}
    trace: Trace = {"X": X, "Y": Y}
    A = X + p["X"] if "X" in p else X
    first = min((layer_of(name) or 0 for name in p), default=0) if reuse is not None else 0
    for l in range(1, first):
        for t in ("Z", "N", "S", "A") if network.normed(l) else ("Z", "A"):
            trace[f"{t}{l}"] = reuse[f"{t}{l}"]
    if first > 1:
        A = reuse[f"A{first - 1}"]
    for l, act_name in enumerate(network.activations, start=1):
        if l < first:
            continue
        W, b = params[f"W{l}"], params[f"b{l}"]
        if f"W{l}" in p:
            W = W + p[f"W{l}"]
        if f"b{l}" in p:
            b = b + p[f"b{l}"]
        Z = linear_forward(A, W, b)
        if f"Z{l}" in p:
            Z = Z + p[f"Z{l}"]
        trace[f"Z{l}"] = Z
        S = Z
        if network.normed(l):
            gamma, beta = (params[n] + p[n] if n in p else params[n] for n in (f"gamma{l}", f"beta{l}"))
            Nl, S, _ = NORMS[network.norm(l)].forward(Z, params[f"gamma{l}"], params[f"beta{l}"], network.eps)
            if f"N{l}" in p or f"gamma{l}" in p or f"beta{l}" in p:  # S from the perturbed x̂ and parameters
                Nl = Nl + p[f"N{l}"] if f"N{l}" in p else Nl
                S = gamma * Nl + beta
            if f"S{l}" in p:
                S = S + p[f"S{l}"]
            trace[f"N{l}"], trace[f"S{l}"] = Nl, S
        A = ACTIVATIONS[act_name].forward(S)
        if f"A{l}" in p:
            A = A + p[f"A{l}"]
        trace[f"A{l}"] = A
    L = LOSSES[network.loss].value(S, A, T, network.reduction)
    if network.regularized:
        weights = [params[n] + p[n] if n in p else params[n] for n in network.l2_names()]
        trace["L_data"] = L
        trace["L_reg"] = l2_penalty(weights, network.l2, network.l2_convention)
        L = L + trace["L_reg"]
    trace["L"] = L
    return trace


def backward(
    network: Network,
    params: Mapping[str, np.ndarray],
    fwd: Trace,
    T: np.ndarray,
    *,
    accumulate_into: dict[str, np.ndarray] | None = None,
) -> Trace:
    """``dAL, dZL, dWL, dbL, ..., dW1, db1, dX`` from a forward trace.

    ``accumulate_into`` (optional) is a dict of gradient buffers, as torch keeps
    ``.grad`` on each parameter: each ``dWl``, ``dbl`` of this batch is *added*
    into ``accumulate_into["dWl"]``, ``["dbl"]`` in place (``+=``; a missing
    buffer starts as a copy), and the returned trace holds those buffers.
    Adding is right because the gradient of a sum of losses is the sum of
    their gradients: for disjoint micro-batches B_1..B_m of a batch B,
    ``sum_i l_i over B = sum_j (sum_i l_i over B_j)``, so under "sum" the
    accumulated buffers equal the full-batch gradient; under "mean" each
    micro-batch adds ``(1/|B_j|) sum over B_j``, which for equal sizes is
    ``m`` times the full-batch mean gradient (see ``accumulate.py``).
    """
    Ldepth = network.depth
    loss = LOSSES[network.loss]
    grads: Trace = {}
    Z, A = fwd[f"Z{Ldepth}"], fwd[f"A{Ldepth}"]
    if loss.fused_with is not None:
        # dAL as a derivation from dL/dAL writes it (the loss as a function of A), from the logits;
        # backprop itself goes on from the fused dL/dZL = c (AL - Y)
        grads[f"dA{Ldepth}"] = loss.unfused_gradient(Z, A, T, network.reduction)
        dZ = loss.gradient(Z, A, T, network.reduction)
    else:
        dA = loss.gradient(Z, A, T, network.reduction)
    for l in range(Ldepth, 0, -1):
        if l < Ldepth or loss.fused_with is None:
            grads[f"dA{l}"] = dA
            dZ = ACTIVATIONS[network.activations[l - 1]].backward(dA, fwd[network.pre_activation(l)], fwd[f"A{l}"])
        if network.normed(l):
            dS, Nl, gamma = dZ, fwd[f"N{l}"], params[f"gamma{l}"]
            inv_std = NORMS[network.norm(l)].forward(fwd[f"Z{l}"], gamma, params[f"beta{l}"], network.eps)[2]
            dgamma, dbeta, dN, dZ = NORMS[network.norm(l)].backward(dS, Nl, gamma, inv_std)
            grads[f"dS{l}"], grads[f"dgamma{l}"], grads[f"dbeta{l}"], grads[f"dN{l}"] = dS, dgamma, dbeta, dN
        A_prev = fwd[f"A{l - 1}"] if l > 1 else fwd["X"]
        dA, dW, db = linear_backward(dZ, A_prev, params[f"W{l}"])
        if network.regularized:
            dW = dW + l2_gradient(params[f"W{l}"], network.l2, network.l2_convention)
            if network.l2_biases:
                db = db + l2_gradient(params[f"b{l}"], network.l2, network.l2_convention)
        if accumulate_into is not None:
            dW, db = _accumulate(accumulate_into, f"dW{l}", dW), _accumulate(accumulate_into, f"db{l}", db)
        grads[f"dZ{l}"], grads[f"dW{l}"], grads[f"db{l}"] = dZ, dW, db
    grads["dX"] = dA
    return grads


def _accumulate(buffers: dict[str, np.ndarray], name: str, g: np.ndarray) -> np.ndarray:
    """``buffers[name] += g`` in place (a new buffer starts as a copy of ``g``)."""
    if name not in buffers:
        buffers[name] = g.copy()
    elif buffers[name].shape != g.shape:
        raise InputError(f"gradient buffer {name} has shape {buffers[name].shape}, expected {g.shape}")
    else:
        buffers[name] += g
    return buffers[name]


def run(case: Case) -> Trace:
    """The whole named trace of ``case``: forward order, then backward order."""
    fwd = forward(case.network, case.params, case.X, case.Y, case.T)
    return {**fwd, **backward(case.network, case.params, fwd, case.T)}


def loss_value(case: Case, perturb: Mapping[str, np.ndarray] | None = None) -> float:
    """The scalar loss of ``case`` with optional perturbations, as a Python float."""
    return float(forward(case.network, case.params, case.X, case.Y, case.T, perturb)["L"])
