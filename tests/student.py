"""A student's derivation, written out by the textbook rules, with chosen steps done wrong.

Independent of the package's engine and of its catalogue of mistakes: each
test writes the mistake itself, as a student would, and the validator has to
recognise it. Claims are rounded to 8 decimals, as a notebook prints them.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from manual_backprop.description.case import Case, Claim

FORWARD = {
    "identity": lambda Z: Z,
    "relu": lambda Z: np.maximum(Z, 0),
    "sigmoid": lambda Z: 1 / (1 + np.exp(-Z)),
    "tanh": np.tanh,
    "softmax": lambda Z: np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True),
    "leaky_relu": lambda Z: np.where(Z > 0, Z, 0.01 * Z),
    "softplus": lambda Z: np.log1p(np.exp(Z)),
    "softsign": lambda Z: Z / (1 + np.abs(Z)),  # not in the package: tests register it
}


def backward_through(act: str, dA, Z, A):
    """dZ = dA * act'(Z), as on the cheat sheet."""
    if act == "softmax":
        return A * (dA - (dA * A).sum(axis=1, keepdims=True))
    derivative = {
        "identity": lambda: 1.0,
        "relu": lambda: Z > 0,
        "leaky_relu": lambda: np.where(Z > 0, 1.0, 0.01),
        "sigmoid": lambda: A * (1 - A),
        "tanh": lambda: 1 - A**2,
        "softplus": lambda: 1 / (1 + np.exp(-Z)),
        "softsign": lambda: 1 / (1 + np.abs(Z)) ** 2,
    }[act]
    return dA * derivative()


def derive(case: Case, wrong: Mapping[str, Callable[[dict, Case], np.ndarray]] | None = None,
           from_dA: bool = False) -> dict[str, np.ndarray]:
    """Every named tensor of ``case``; a name in ``wrong`` is made by ``wrong[name](tensors so far, case)``.

    For a fused loss (bce, softmax cross-entropy), ``from_dA`` (or a wrong ``dA{L}``) derives it
    as from dL/dŷ: ``dA{L}`` by the textbook formula of the loss written from A, then ``dZ{L}``
    through the output activation's derivative.
    """
    wrong = wrong or {}
    net, p, T = case.network, case.params, case.T
    N, K = case.batch, net.sizes[-1]
    t: dict[str, np.ndarray] = {"X": case.X}

    def put(name: str, value) -> np.ndarray:
        t[name] = wrong[name](t, case) if name in wrong else value
        return t[name]

    prev = "X"
    for l, act in enumerate(net.activations, start=1):
        Z = put(f"Z{l}", t[prev] @ p[f"W{l}"] + p[f"b{l}"])
        if net.norms[l - 1] != "none":  # batch norm (over the samples) or layer norm (over the features)
            axis = 0 if net.norms[l - 1] == "batchnorm" else 1
            mu = Z.mean(axis=axis, keepdims=True)
            var = ((Z - mu) ** 2).mean(axis=axis, keepdims=True)
            Nl = put(f"N{l}", (Z - mu) / np.sqrt(var + net.eps))
            Z = put(f"S{l}", p[f"gamma{l}"] * Nl + p[f"beta{l}"])
        put(f"A{l}", FORWARD[act](Z))
        prev = f"A{l}"
    L = net.depth
    A = t[f"A{L}"]
    if net.reduction == "sum":
        c = 1.0
    else:
        c = 1 / (N * K) if net.loss in ("mse", "bce") else 1 / N
    fused = net.loss in ("bce", "softmax_cross_entropy")
    data = "L_data" if net.l2 > 0 else "L"
    if net.loss == "half_mse":
        put(data, c * 0.5 * ((A - T) ** 2).sum())
    elif net.loss == "mse":
        put(data, c * ((A - T) ** 2).sum())
    elif net.loss == "softmax_cross_entropy":
        put(data, -c * (T * np.log(A)).sum())
    else:
        put(data, -c * (T * np.log(A) + (1 - T) * np.log(1 - A)).sum())
    # L2, by the book: L_reg = ½λΣW² ("half") or λΣW² ("full"), its gradient λW or 2λW added to dW
    f = 0.5 if net.l2_convention == "half" else 1.0
    covered = [q for l in range(1, net.depth + 1) for q in ((f"W{l}", f"b{l}") if net.l2_biases else (f"W{l}",))]
    if net.l2 > 0:
        put("L_reg", f * net.l2 * sum((p[q] ** 2).sum() for q in covered))
        put("L", t["L_data"] + t["L_reg"])
    from_dA = fused and (from_dA or f"dA{L}" in wrong)
    if from_dA:
        Y = np.eye(K)[T] if T.ndim == 1 else T  # labels as one-hot rows
        if net.loss == "bce":  # dL/dŷ = −(1/N)(y/ŷ − (1−y)/(1−ŷ)), seed 004's first line
            put(f"dA{L}", -c * (Y / A - (1 - Y) / (1 - A)))
        else:
            put(f"dA{L}", -c * Y / A)
        put(f"dZ{L}", backward_through(net.activations[L - 1], t[f"dA{L}"], t[f"Z{L}"], A))
    elif fused:
        put(f"dZ{L}", c * (A - T))
    else:
        put(f"dA{L}", c * (2 if net.loss == "mse" else 1) * (A - T))
    for l in range(L, 0, -1):
        if net.norms[l - 1] != "none":
            put(f"dS{l}", backward_through(net.activations[l - 1], t[f"dA{l}"], t[f"S{l}"], t[f"A{l}"]))
            put(f"dgamma{l}", (t[f"dS{l}"] * t[f"N{l}"]).sum(axis=0))
            put(f"dbeta{l}", t[f"dS{l}"].sum(axis=0))
            put(f"dN{l}", t[f"dS{l}"] * p[f"gamma{l}"])
            put(f"dZ{l}", _norm_backward_long_form(t[f"Z{l}"], t[f"dN{l}"], net.eps,
                                                   0 if net.norms[l - 1] == "batchnorm" else 1))
        elif l < L or not fused and not from_dA:
            put(f"dZ{l}", backward_through(net.activations[l - 1], t[f"dA{l}"], t[f"Z{l}"], t[f"A{l}"]))
        A_prev = t[f"A{l - 1}"] if l > 1 else t["X"]
        reg = {q: 2 * f * net.l2 * p[q] if q in covered and net.l2 > 0 else 0.0 for q in (f"W{l}", f"b{l}")}
        put(f"dW{l}", A_prev.T @ t[f"dZ{l}"] + reg[f"W{l}"])
        put(f"db{l}", t[f"dZ{l}"].sum(axis=0) + reg[f"b{l}"])
        put(f"dA{l - 1}" if l > 1 else "dX", t[f"dZ{l}"] @ p[f"W{l}"].T)
    if case.learning_rate is not None:
        for l in range(1, L + 1):
            for q in ("W", "b"):
                put(f"{q}{l}_next", p[f"{q}{l}"] - case.learning_rate * t[f"d{q}{l}"])
    if case.optimizer is not None:
        _optimizer_step(case, t, put)
    return t


def _norm_backward_long_form(Z, dN, eps, axis):
    """dZ through the three paths, as the course's batchnorm_backward writes it step by step:
    x̂ = (Z - mu) / sqrt(var + eps), so dvar, then dmu, then dZ (m the length of ``axis``)."""
    m = Z.shape[axis]
    mu = Z.mean(axis=axis, keepdims=True)
    var = ((Z - mu) ** 2).mean(axis=axis, keepdims=True)
    std = np.sqrt(var + eps)
    dvar = (dN * (Z - mu)).sum(axis=axis, keepdims=True) * -0.5 * std ** -3
    dmu = (-dN / std).sum(axis=axis, keepdims=True) + dvar * (-2 * (Z - mu)).mean(axis=axis, keepdims=True)
    return dN / std + dvar * 2 * (Z - mu) / m + dmu / m


def derive_steps(case: Case, zero_grad: bool = True) -> dict[str, np.ndarray]:
    """``steps = k`` by the book: step 1's tensors, and the parameters and state after k loops of
    forward, backward and the optimiser's step, each from where the one before ended. Without
    ``zero_grad`` each step's gradients are added to the ones before, as ``.grad`` does."""
    import dataclasses

    opt = case.optimizer
    first: dict[str, np.ndarray] | None = None
    summed: dict[str, np.ndarray] = {}
    params, state = dict(case.params), dict(opt.state)
    for j in range(opt.steps):
        now = dataclasses.replace(case, params=params, optimizer=None)
        t = derive(now)
        first = t if first is None else first
        grads = {f"d{q}": t[f"d{q}"] for q in params}
        if not zero_grad:
            summed = {g: summed.get(g, 0.0) + grads[g] for g in grads}
            grads = summed
        after: dict[str, np.ndarray] = {}
        step = dataclasses.replace(opt, t=opt.t + j, state=state, steps=1)
        _optimizer_step(dataclasses.replace(now, optimizer=step), grads, _putting_into(after))
        params = {q: after[f"{q}_next"] for q in params}
        state = {n[:-len("_next")]: v for n, v in after.items() if n[0] in "mv"}
    return {**first, **after}


def _putting_into(out: dict[str, np.ndarray]):
    def put(name: str, value: np.ndarray) -> np.ndarray:
        out[name] = value
        return value
    return put


def _optimizer_step(case: Case, t: Mapping[str, np.ndarray], put) -> None:
    """One optimiser step by the book, from the case's state (zeros when absent)."""
    opt, c = case.optimizer, case.optimizer.constants
    lr = opt.learning_rate
    for l in range(1, case.network.depth + 1):
        for q in (f"W{l}", f"b{l}"):
            P, g = case.params[q], t[f"d{q}"]
            state = {s: opt.state.get(f"{s}{q}", np.zeros_like(P)) for s in ("m", "v")}
            if opt.rule == "sgd":
                put(f"{q}_next", P - lr * g)
            elif opt.rule == "momentum":  # torch: b = mu b + g; W -= lr b
                v = put(f"v{q}_next", c["momentum"] * state["v"] + g)
                put(f"{q}_next", P - lr * v)
            elif opt.rule == "momentum_velocity":  # the course: v = mu v - lr g; W += v
                v = put(f"v{q}_next", c["momentum"] * state["v"] - lr * g)
                put(f"{q}_next", P + v)
            elif opt.rule == "rmsprop":
                v = put(f"v{q}_next", c["decay"] * state["v"] + (1 - c["decay"]) * g**2)
                put(f"{q}_next", P - lr * g / (np.sqrt(v) + c["eps"]))
            else:  # adam: the counter first, then the corrections
                m = put(f"m{q}_next", c["beta1"] * state["m"] + (1 - c["beta1"]) * g)
                v = put(f"v{q}_next", c["beta2"] * state["v"] + (1 - c["beta2"]) * g**2)
                k = opt.t + 1
                put(f"{q}_next", P - lr * (m / (1 - c["beta1"] ** k)) / (np.sqrt(v / (1 - c["beta2"] ** k)) + c["eps"]))


def claims_of(trace: Mapping[str, np.ndarray], names=None, decimals: int = 8) -> dict[str, Claim]:
    """The trace's tensors as a notebook prints them: rounded to ``decimals``, judged at that precision."""
    names = [n for n in trace if n != "X"] if names is None else names
    out = {}
    for name in names:
        value = np.round(np.asarray(trace[name], dtype=np.float64), decimals)
        out[name] = Claim(value, np.full(value.shape, 0.5 * 10.0**-decimals))
    return out
