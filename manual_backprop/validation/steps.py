"""The right rule behind every named tensor, as data: what it is made from, and how.

One :class:`Step` per name, in the order a derivation makes them (forward,
backward, then per-sample gradients and the descent step)::

    Z1  = X @ W1 + b1                 inputs X               kind "linear"
    A1  = relu(Z1)                    inputs Z1              kind "activation"
    ...
    dZ1 = dA1 * (Z1 > 0)              inputs dA1, Z1, A1     kind "activation_backward"
    dW1 = X.T @ dZ1                   inputs X, dZ1          kind "weight_gradient"

A layer with a norm adds, between Zl and Al (and between dAl and dZl)::

    N1  = (Z1 - mean) / sqrt(var + eps)   inputs Z1              kind "norm"
    S1  = gamma1 * N1 + beta1             inputs N1              kind "norm_scale"
    A1  = relu(S1)                        inputs S1              kind "norm_activation"
    dS1 = dA1 * (S1 > 0)                  inputs dA1, S1, A1     kind "norm_activation_backward"
    dgamma1 = 1.T @ (dS1 * N1)            inputs dS1, N1         kind "gamma_gradient"
    dbeta1  = 1.T @ dS1                   inputs dS1             kind "beta_gradient"
    dN1 = dS1 * gamma1                    inputs dS1             kind "norm_scale_backward"
    dZ1 = (1/m) inv_std (m dN1 - sum dN1 - N1 sum(dN1 N1))   inputs dN1, Z1 (x̂, inv_std from Z1)   kind "norm_backward"

The parameters, and the targets the loss compares with, are constants of a
step (a derivation starts from them); every other operand is an input, read
by name from a mapping of values. That mapping can hold the true values, or
a student's: the same rule applied to both tells a step's own error from one
it carried (:mod:`.replay`). Every rule is the engine's own kernel, and every
formula of a loss gradient or an activation's backward is its registry entry's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..description.case import Case, as_float64
from ..engine.per_sample import normalisation, per_sample_dZ
from ..engine.sgd import trajectory
from ..kernels import ACTIVATIONS, LOSSES, NORMS, linear_forward
from ..kernels.linear import linear_dA_prev, linear_db, linear_dW
from ..kernels.normalization import norm_dbeta, norm_dgamma, norm_dN, norm_dZ
from ..kernels.regularization import l2_gradient, l2_penalty

Values = Mapping[str, np.ndarray]

@dataclass(frozen=True)
class Step:
    """How one named tensor is made from earlier ones."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    layer: int | None
    rule: Callable[[Values], np.ndarray]
    formula: str


def previous(l: int) -> str:
    """The name of layer l's input activation: ``A(l-1)``, or ``X`` for the first layer."""
    return f"A{l - 1}" if l > 1 else "X"


def input_gradient(l: int) -> str:
    """The name of the gradient with respect to layer l's input: ``dA(l-1)``, or ``dX``."""
    return f"dA{l - 1}" if l > 1 else "dX"


def scale_text(case: Case) -> str:
    """How the loss gradient is normalised, as written after it: ``""``, ``" / N"`` or ``" / (N·K)"``;
    under per-sample deltas the 1/N is not there (``""`` or ``" / K"``)."""
    net = case.network
    if net.reduction == "sum":
        return ""
    per_sample = case.convention.deltas == "per_sample"
    if LOSSES[net.loss].mean_divides_by_K:
        return " / K" if per_sample else " / (N·K)"
    return "" if per_sample else " / N"


def linear_texts(case: Case, l: int) -> dict[str, str]:
    """Layer l's four rules as the user writes them: their layout, and the 1/N where their deltas put it::

        row      Zl = A(l-1) @ Wl + bl    dWl = A(l-1).T @ dZl    dbl = 1.T @ dZl    dA(l-1) = dZl @ Wl.T
        column   Zl = Wl @ A(l-1) + bl    dWl = dZl @ A(l-1).T    dbl = dZl @ 1      dA(l-1) = Wl.T @ dZl

    with ``(1/N) ·`` before dWl and dbl under per-sample deltas (and a mean).
    """
    a_prev, column = previous(l), case.convention.layout == "column"
    mean = "(1/N) · " if case.convention.delta_factor(case.network.reduction, 2) != 1 else ""
    if column:
        return {"Z": f"Z{l} = W{l} @ {a_prev} + b{l}", "dW": f"dW{l} = {mean}dZ{l} @ {a_prev}.T",
                "db": f"db{l} = {mean}dZ{l} @ 1 (row sums)", "dA": f"{input_gradient(l)} = W{l}.T @ dZ{l}"}
    return {"Z": f"Z{l} = {a_prev} @ W{l} + b{l}", "dW": f"dW{l} = {mean}{a_prev}.T @ dZ{l}",
            "db": f"db{l} = {mean}1.T @ dZ{l} (column sums)", "dA": f"{input_gradient(l)} = dZ{l} @ W{l}.T"}


def derivation_steps(case: Case) -> dict[str, Step]:
    """Every step of ``case``'s derivation, keyed and ordered by name."""
    net, params, T = case.network, case.params, case.T
    loss, L = LOSSES[net.loss], net.depth
    steps: dict[str, Step] = {}

    def add(name, kind, inputs, layer, rule, formula):
        steps[name] = Step(name, kind, tuple(inputs), layer, rule, formula)

    add("X", "data", (), 0, lambda v: case.X, "X, the data")
    add("Y", "data", (), None, lambda v: case.Y, "Y, the data")
    for l, act in enumerate(net.activations, start=1):
        a_prev = previous(l)
        add(f"Z{l}", "linear", (a_prev,), l,
            lambda v, a_prev=a_prev, W=params[f"W{l}"], b=params[f"b{l}"]: linear_forward(v[a_prev], W, b),
            linear_texts(case, l)["Z"])
        if net.normed(l):
            norm_steps(case, l, add)
            add(f"A{l}", "norm_activation", (f"S{l}",), l,
                lambda v, l=l, f=ACTIVATIONS[act].forward: f(v[f"S{l}"]), f"A{l} = {act}(S{l})")
            continue
        add(f"A{l}", "activation", (f"Z{l}",), l,
            lambda v, l=l, f=ACTIVATIONS[act].forward: f(v[f"Z{l}"]), f"A{l} = {act}(Z{l})")
    out_name = f"Z{L}" if loss.fused_with else f"A{L}"
    data_loss = "L_data" if net.regularized else "L"
    add(data_loss, "loss", (f"Z{L}", f"A{L}"), None,
        lambda v: loss.value(v[f"Z{L}"], v[f"A{L}"], T, net.reduction),
        f"{data_loss} = {net.loss}({out_name}, Y){scale_text(case)}")
    if net.regularized:
        f = "½·" if net.l2_convention == "half" else ""
        covered = "W" if not net.l2_biases else "W and b"
        add("L_reg", "regularization", (), None,
            lambda v: l2_penalty((params[n] for n in net.l2_names()), net.l2, net.l2_convention),
            f"L_reg = {f}{net.l2:g}·Σ‖{covered}‖² (over every layer)")
        add("L", "total_loss", ("L_data", "L_reg"), None, lambda v: v["L_data"] + v["L_reg"], "L = L_data + L_reg")
    g = "" if net.l2_convention == "half" else "2·"  # the penalty's gradient: λW (half) or 2λW (full)

    # A fused loss with dAL claimed: the derivation went through dL/dAL (the loss written from AL), then
    # the output activation's backward, and is modelled so; otherwise the fused step dZL = c (AL - Y).
    through_dA = bool(loss.fused_with) and f"dA{L}" in case.claimed
    if through_dA:
        add(f"dA{L}", "loss_gradient", (f"Z{L}", f"A{L}"), L,
            lambda v: loss.unfused_gradient(v[f"Z{L}"], v[f"A{L}"], T, net.reduction),
            f"dA{L} = {loss.unfused_text.format(A=f'A{L}')}{scale_text(case)}")
    else:
        top = f"dZ{L}" if loss.fused_with else f"dA{L}"
        add(top, "loss_gradient", (f"Z{L}", f"A{L}"), L,
            lambda v: loss.gradient(v[f"Z{L}"], v[f"A{L}"], T, net.reduction),
            f"{top} = {loss.grad_text.format(Z=f'Z{L}', A=f'A{L}')}{scale_text(case)}")
    for l in range(L, 0, -1):
        act = ACTIVATIONS[net.activations[l - 1]]
        if net.normed(l):  # never the output layer
            add(f"dS{l}", "norm_activation_backward", (f"dA{l}", f"S{l}", f"A{l}"), l,
                lambda v, l=l, b=act.backward: b(v[f"dA{l}"], v[f"S{l}"], v[f"A{l}"]),
                f"dS{l} = " + act.backward_text.format(dA=f"dA{l}", Z=f"S{l}", A=f"A{l}"))
            norm_backward_steps(case, l, add)
        elif l < L or not loss.fused_with or through_dA:
            add(f"dZ{l}", "activation_backward", (f"dA{l}", f"Z{l}", f"A{l}"), l,
                lambda v, l=l, b=act.backward: b(v[f"dA{l}"], v[f"Z{l}"], v[f"A{l}"]),
                f"dZ{l} = " + act.backward_text.format(dA=f"dA{l}", Z=f"Z{l}", A=f"A{l}"))
        a_prev = previous(l)
        W, b = params[f"W{l}"], params[f"b{l}"]
        reg_W = l2_gradient(W, net.l2, net.l2_convention) if net.regularized else None
        reg_b = l2_gradient(b, net.l2, net.l2_convention) if net.regularized and net.l2_biases else None
        add(f"dW{l}", "weight_gradient", (a_prev, f"dZ{l}"), l,
            lambda v, l=l, a_prev=a_prev, r=reg_W: linear_dW(v[a_prev], v[f"dZ{l}"]) + (0 if r is None else r),
            linear_texts(case, l)["dW"] + (f" + {g}{net.l2:g}·W{l}" if reg_W is not None else ""))
        add(f"db{l}", "bias_gradient", (f"dZ{l}",), l,
            lambda v, l=l, r=reg_b: linear_db(v[f"dZ{l}"]) + (0 if r is None else r),
            linear_texts(case, l)["db"] + (f" + {g}{net.l2:g}·b{l}" if reg_b is not None else ""))
        add(input_gradient(l), "input_gradient", (f"dZ{l}",), l,
            lambda v, l=l, W=params[f"W{l}"]: linear_dA_prev(v[f"dZ{l}"], W),
            linear_texts(case, l)["dA"])

    # the user's dZ is the engine's times the deltas' factor: what remains of 1/c multiplies it
    inverse_c = round(1 / normalisation(net, case.batch) / case.convention.delta_factor(net.reduction, case.batch))
    column = case.convention.layout == "column"
    for l in range(1, L + 1 if not net.has_batchnorm else 1):  # batch norm: no per-sample gradients
        a_prev = previous(l)
        times = f" * {inverse_c}" if inverse_c != 1 else ""
        sample = (lambda t: f"{t}[:, i]") if column else (lambda t: f"{t}[i]")
        outer = (f"outer({sample(f'dZ{l}')}{times}, {sample(a_prev)})" if column
                 else f"outer({sample(a_prev)}, {sample(f'dZ{l}')}{times})")
        add(f"dW{l}_per_sample", "per_sample_weight", (a_prev, f"dZ{l}"), l,
            lambda v, l=l, a_prev=a_prev: np.einsum("ni,nj->nij", v[a_prev], per_sample_dZ(net, v, l)),
            f"dW{l}_per_sample[i] = {outer}")
        add(f"db{l}_per_sample", "per_sample_bias", (f"dZ{l}",), l,
            lambda v, l=l: per_sample_dZ(net, v, l), f"db{l}_per_sample[i] = {sample(f'dZ{l}')}{times}")
    step = case.step
    if step is not None and step.steps > 1:  # after k steps: where step 1's gradients lead
        grads = tuple(f"d{p}" for p in net.parameter_shapes())
        after = f"{step.steps} full steps (forward, backward, {step.describe()})"
        for name in [f"{p}_next" for p in net.parameter_shapes()] + [
                f"{s}{p}_next" for s in step.optimizer.state for p in net.parameter_shapes()]:
            add(name, "trajectory", grads, _layer_of(name),
                lambda v, name=name: followed(case, v)[name],
                f"{name}: after {after}, the first from {', '.join(grads)} and each next one from the "
                f"parameters the one before reached")
    elif step is not None and step.rule == "sgd":
        lr = step.learning_rate
        for l in range(1, L + 1):
            for p in ("W", "b"):
                add(f"{p}{l}_next", "sgd", (f"d{p}{l}",), l,
                    lambda v, P=params[f"{p}{l}"], g=f"d{p}{l}": P - lr * v[g],
                    f"{p}{l}_next = {p}{l} - {lr:g} * d{p}{l}")
    elif step is not None:  # the optimiser's state first, then the parameter's step from it (as written by hand)
        opt, lr = step.optimizer, step.learning_rate
        for l in range(1, L + 1):
            for p in (f"W{l}", f"b{l}"):
                P, state, names = params[p], step.state_of(p, params[p]), [f"{s}{p}_next" for s in opt.state]
                for s in opt.state:
                    def new_state(v, P=P, g=f"d{p}", state=state, s=s):
                        lr_arg = (lr,) if opt.state_reads_lr else ()
                        return opt.new_state(P, v[g], state, *lr_arg, **step.constants)[s]
                    add(f"{s}{p}_next", "optimizer_state", (f"d{p}",), l, new_state,
                        f"{s}{p}_next: the new {s} of {step.describe()}; {opt.formula}")

                def parameter(v, P=P, g=f"d{p}", names=names):
                    new = {n[0]: v[n] for n in names}
                    return opt.step(P, v[g], new, lr, t=step.t, **step.constants)
                add(f"{p}_next", "optimizer", (f"d{p}", *names), l, parameter,
                    f"{p}_next: {step.describe()} from {p}, d{p}{''.join(', ' + n for n in names)}; {opt.formula}")
    return steps


def _normalised(case: Case, l: int, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x̂, inv_std)`` of layer l's norm, from a Z (the true one, or a student's)."""
    net = case.network
    n = Z.shape[1]
    N, _, inv = NORMS[net.norm(l)].forward(Z, np.ones(n, Z.dtype), np.zeros(n, Z.dtype), net.eps)
    return N, inv


def norm_texts(case: Case, l: int) -> dict[str, str]:
    """Layer l's norm rules in words: what the statistics run over, in the file's layout."""
    net = case.network
    column = case.convention.layout == "column"
    axis = NORMS[net.norm(l)].axis
    over = ("samples" if axis == 0 else "features") + f" (axis {1 - axis if column else axis})"
    sums = f"over the samples (axis {1 if column else 0})"
    return {"N": f"N{l} = (Z{l} - mean) / sqrt(var + {net.eps:g}), mean and biased var over the {over}",
            "S": f"S{l} = gamma{l} * N{l} + beta{l}",
            "dgamma": f"dgamma{l} = sum(dS{l} * N{l}) {sums}", "dbeta": f"dbeta{l} = sum(dS{l}) {sums}",
            "dN": f"dN{l} = dS{l} * gamma{l}",
            "dZ": f"dZ{l} = (1/m) * inv_std * (m*dN{l} - sum(dN{l}) - N{l} * sum(dN{l} * N{l})), "
                  f"m the {over.split(' (')[0]}, the sums over the {over}, inv_std = 1/sqrt(var + {net.eps:g})"}


def norm_steps(case: Case, l: int, add) -> None:
    """The forward steps of layer l's norm: ``Nl`` from ``Zl``, ``Sl`` from ``Nl``."""
    net, params = case.network, case.params
    norm, texts = NORMS[net.norm(l)], norm_texts(case, l)
    gamma, beta = params[f"gamma{l}"], params[f"beta{l}"]
    add(f"N{l}", "norm", (f"Z{l}",), l,
        lambda v, l=l: norm.forward(v[f"Z{l}"], np.ones_like(gamma), np.zeros_like(beta), net.eps)[0], texts["N"])
    add(f"S{l}", "norm_scale", (f"N{l}",), l, lambda v, l=l: gamma * v[f"N{l}"] + beta, texts["S"])


def norm_backward_steps(case: Case, l: int, add) -> None:
    """The backward steps of layer l's norm, from ``dSl``: ``dgammal, dbetal, dNl, dZl`` (the kernel's)."""
    net, params = case.network, case.params
    norm, texts, gamma = NORMS[net.norm(l)], norm_texts(case, l), params[f"gamma{l}"]

    add(f"dgamma{l}", "gamma_gradient", (f"dS{l}", f"N{l}"), l,
        lambda v, l=l: norm_dgamma(v[f"dS{l}"], v[f"N{l}"]), texts["dgamma"])
    add(f"dbeta{l}", "beta_gradient", (f"dS{l}",), l, lambda v, l=l: norm_dbeta(v[f"dS{l}"]), texts["dbeta"])
    add(f"dN{l}", "norm_scale_backward", (f"dS{l}",), l, lambda v, l=l: norm_dN(v[f"dS{l}"], gamma), texts["dN"])
    # from dN and Z: x̂ and inv_std are Z's (a long-form derivation through dvar and dmu never reads x̂)
    add(f"dZ{l}", "norm_backward", (f"dN{l}", f"Z{l}"), l, lambda v, l=l: norm_dZ(
        v[f"dN{l}"], *_normalised(case, l, v[f"Z{l}"]), norm.axis), texts["dZ"])


def _layer_of(name: str) -> int:
    """The layer of a parameter or state name: ``W2_next``, ``mb2_next`` -> 2."""
    return int("".join(ch for ch in name.split("_")[0] if ch.isdigit()))


_FOLLOWED: dict[tuple, tuple[Case, dict[str, np.ndarray]]] = {}


def followed(case: Case, v: Values, accumulate: bool = False) -> dict[str, np.ndarray]:
    """The parameters and state after ``case``'s k steps (``steps = k``), step 1 taken with the gradients
    in ``v`` (``dW1, db1, ...``: a derivation's own) and every later step with the true gradients at the
    parameters reached; ``accumulate`` sums the gradients over the steps (no ``zero_grad``). In float64.
    Kept for the last few gradients asked about: a diagnosis asks for the same ones for every name."""
    grads = {f"d{p}": np.asarray(v[f"d{p}"], np.float64) for p in case.network.parameter_shapes()}
    key = (id(case), accumulate, tuple(g.tobytes() for g in grads.values()))
    hit = _FOLLOWED.get(key)
    if hit is not None and hit[0] is case:
        return hit[1]
    with np.errstate(all="ignore"):  # an overflow is an Inf, which matches no claim
        results = trajectory(as_float64(case), first=grads, accumulate=accumulate)[-1][2]
    if len(_FOLLOWED) >= 16:
        _FOLLOWED.clear()
    _FOLLOWED[key] = (case, results)
    return results


def downstream(steps: Mapping[str, Step], name: str) -> list[str]:
    """Every step that reads ``name``, directly or through others, in derivation order."""
    reached = {name}
    out = []
    for step in steps.values():
        if any(i in reached for i in step.inputs):
            reached.add(step.name)
            out.append(step.name)
    return out
