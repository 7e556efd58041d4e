"""The classic mistakes of a hand-derived backward pass, as data.

Each :class:`Mistake` says at which kind of step it happens and, for a given
step, gives one or more candidate rules: the tensor a student making that
mistake gets from the values at hand (``candidates(step, case)``, each a
function of the values). :mod:`.diagnosis` applies them to the student's own
upstream values (the true ones wherever the student was right) and names
a mistake only when it reproduces the claimed numbers at their written
precision. The sentence says what was done and what is right, in the
network's tensor names (``dZ1``, ``A2``, ...).

Adding a mistake is one entry here and one derivation in
``tests/test_diagnosis.py`` that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..description.case import Case
from ..kernels import ACTIVATIONS, LOSSES, NORMS, OPTIMIZERS, linear_forward
from ..kernels.normalization import norm_dZ
from ..kernels.linear import linear_dA_prev, linear_db, linear_dW
from .replay import reproduces
from .steps import Step, Values, followed, input_gradient, previous

Rule = Callable[[Values], np.ndarray]


@dataclass(frozen=True)
class Candidate:
    """One way of making the mistake at one step: its rule, and words for the sentence."""

    rule: Rule
    words: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """A classic mistake: where it happens, what it produces, and how to say it."""

    id: str
    title: str
    sentence: str
    candidates: Callable[[Step, Case], list[Candidate]]
    #: The sentence in the column layout's terms, where the row one speaks of products or axes.
    column: str | None = None
    #: Whether it may be named at a step not written down, upstream of the claim it explains (a convention
    #: is only ever seen in a tensor written in it).
    upstream: bool = True

    def explain(self, step: Step, case: Case, candidate: Candidate) -> str:
        sentence = self.column if self.column and case.convention.layout == "column" else self.sentence
        return sentence.format(**{**words(step, case), **candidate.words})

    def say(self, **names: str) -> str:
        """The sentence with the names given (the layer and loss checkers' words: ``n="db"``, ``dZ="dout"``)."""
        return self.sentence.format(**names)


def words(step: Step, case: Case) -> dict[str, str]:
    """The names a sentence about ``step`` may use: {n}, {l}, {N}, {dA}, {Z}, {A}, {dZ}, {W}, ..."""
    net = case.network
    out = {"n": step.name, "N": str(case.batch), "right": step.formula, "K": str(net.sizes[-1])}
    l = step.layer
    if l:
        out.update(l=str(l), dA=f"dA{l}", Z=f"Z{l}", A=f"A{l}", dZ=f"dZ{l}", W=f"W{l}", b=f"b{l}",
                   A_prev=previous(l), dA_prev=input_gradient(l), act=net.activations[l - 1])
        if l > 1:
            out.update(Zp=f"Z{l - 1}", Ap=f"A{l - 1}", dZp=f"dZ{l - 1}")
        if net.normed(l):
            out.update(xhat=f"N{l}", S=f"S{l}", dS=f"dS{l}", dxhat=f"dN{l}", gamma=f"gamma{l}", norm=net.norm(l))
    return out


def _when(condition: bool, *candidates: Candidate) -> list[Candidate]:
    return list(candidates) if condition else []


def _act(step: Step, case: Case) -> str | None:
    return case.network.activations[step.layer - 1] if step.layer else None


def _scaled(step: Step, factor: float) -> Rule:
    return lambda v: step.rule(v) * factor


# --- the activation's backward: dZl = dAl * act'(Zl) ----------------------------------------

def _relu(step: Step, case: Case, rule: Rule) -> list[Candidate]:
    return _when(step.kind == "activation_backward" and _act(step, case) == "relu", Candidate(rule))


def _mask_of_another_layer(step: Step, case: Case) -> list[Candidate]:
    if step.kind != "activation_backward" or _act(step, case) != "relu":
        return []
    l, sizes = step.layer, case.network.sizes
    return [Candidate(lambda v, l=l, m=m: v[f"dA{l}"] * (v[f"Z{m}"] > 0), {"other": f"Z{m}"})
            for m in range(1, case.network.depth + 1) if m != l and sizes[m] == sizes[l]]


def _derivative(step: Step, case: Case, acts: tuple[str, ...], rule: Rule) -> list[Candidate]:
    return _when(step.kind == "activation_backward" and _act(step, case) in acts, Candidate(rule))


#: Activations whose left-out derivative (dZ = dA) is not "activation_derivative_missing": for identity
#: it is the rule itself; ReLU's has its own words ("relu_mask_missing").
DERIVATIVE_MISSING_SAID_OTHERWISE = ("identity", "relu")


def _derivative_missing(step: Step, case: Case) -> list[Candidate]:
    """``dZ = dA``, for every activation in the registry but those above (a new one included)."""
    return _when(step.kind == "activation_backward" and _act(step, case) not in DERIVATIVE_MISSING_SAID_OTHERWISE,
                 Candidate(lambda v: v[f"dA{step.layer}"]))


# --- the forward: Zl = A(l-1) @ Wl + bl,  Al = act(Zl) -------------------------------------

def _forward_transposed(step: Step, case: Case) -> list[Candidate]:
    if step.kind != "linear":
        return []
    W, b, a = case.params[f"W{step.layer}"], case.params[f"b{step.layer}"], previous(step.layer)
    return _when(W.shape[0] == W.shape[1] and not np.array_equal(W, W.T),
                 Candidate(lambda v: linear_forward(v[a], W.T, b)))


def _forward_no_bias(step: Step, case: Case) -> list[Candidate]:
    if step.kind != "linear":
        return []
    W, b, a = case.params[f"W{step.layer}"], case.params[f"b{step.layer}"], previous(step.layer)
    return _when(bool(np.any(b != 0)), Candidate(lambda v: v[a] @ W))


def _forward_other_weights(step: Step, case: Case) -> list[Candidate]:
    if step.kind != "linear":
        return []
    l, p = step.layer, case.params
    W, b, a = p[f"W{l}"], p[f"b{l}"], previous(l)
    return [Candidate(lambda v, Wm=p[f"W{m}"]: linear_forward(v[a], Wm, b), {"other": f"W{m}"})
            for m in range(1, case.network.depth + 1)
            if m != l and p[f"W{m}"].shape == W.shape and not np.array_equal(p[f"W{m}"], W)]


def _forward_other_sample(step: Step, case: Case) -> list[Candidate]:
    N = case.batch
    if step.kind != "linear" or N < 2:
        return []
    W, b, a = case.params[f"W{step.layer}"], case.params[f"b{step.layer}"], previous(step.layer)
    rows = {f"every row is sample {j}'s": [j] * N for j in range(N)}
    rows["every row is the next sample's"] = [(i + 1) % N for i in range(N)]
    if N > 2:
        rows["every row is the previous sample's"] = [(i - 1) % N for i in range(N)]
    return [Candidate(lambda v, idx=idx: linear_forward(v[a][idx], W, b), {"which": text})
            for text, idx in rows.items()]


# --- the loss and its gradient ---------------------------------------------------------------

TOP = ("loss", "loss_gradient")
SCALED_GRADIENTS = ("weight_gradient", "bias_gradient", "per_sample_weight", "per_sample_bias")


def _missing_1_over_N(step: Step, case: Case) -> list[Candidate]:
    """N times the right value: at the loss, or (under per-sample deltas, where the 1/N lives there) at
    a parameter's gradient."""
    kinds = TOP + (("weight_gradient", "bias_gradient") if case.convention.deltas == "per_sample" else ())
    return _when(step.kind in kinds and case.network.reduction == "mean" and case.batch > 1,
                 Candidate(_scaled(step, case.batch)))


def _deltas_other_placement(step: Step, case: Case) -> list[Candidate]:
    """A delta (dZl, dAl, dX) in the other convention's placement of the 1/N: N times ∂L/∂· where the file
    declares gradients, ∂L/∂· itself where it declares per-sample deltas. The rule works in the engine's
    form (gradients), so the candidate is the right rule times N, or divided by N."""
    if step.kind not in ("loss_gradient", "activation_backward", "input_gradient") \
            or case.network.reduction != "mean" or case.batch < 2:
        return []
    N = case.batch
    if case.convention.deltas == "gradient":
        how = {"how": f"N = {N} times ∂L/∂{step.name[1:]}: the per-sample convention (the 1/N applied in dW and "
                      f"db); declare it with deltas = \"per_sample\" in [network] (--deltas per_sample)"}
        return [Candidate(_scaled(step, N), how)]
    how = {"how": f"∂L/∂{step.name[1:]} itself, the 1/N of the mean inside: the gradient convention, but this "
                  f"file declares deltas = \"per_sample\" (N = {N} times that, the 1/N applied in dW and db)"}
    return [Candidate(_scaled(step, 1 / N), how)]


def _extra_1_over_N(step: Step, case: Case) -> list[Candidate]:
    if step.kind not in TOP + SCALED_GRADIENTS or case.batch < 2:
        return []
    if case.network.reduction == "sum":
        why = ", though the loss is a sum (reduction = \"sum\")"
    elif step.kind in TOP:
        why = ": the mean's 1/N is taken twice"
    elif step.kind.startswith("per_sample"):
        why = ": a per-sample gradient is that sample's own term, before the mean's 1/N"
    else:
        why = f": the mean's 1/N is already in dZ{step.layer}"
    return [Candidate(_scaled(step, 1 / case.batch), {"why": why})]


def _half_mse_vs_mse(step: Step, case: Case) -> list[Candidate]:
    loss = case.network.loss
    if step.kind not in TOP or loss not in ("half_mse", "mse"):
        return []
    factor, how = HALF_MSE_VS_MSE[loss, "value" if step.kind == "loss" else "gradient"]
    return [Candidate(_scaled(step, factor), {"how": how})]


#: ``(loss, "value" | "gradient") -> (factor, how)``: the half-MSE / MSE confusion, its factor and its words
#: (the ``{how}`` of "half_mse_vs_mse"; validate and the loss checker both say it with these).
HALF_MSE_VS_MSE = {
    ("half_mse", "value"): (2.0, "twice the half-MSE value: it is the MSE's, (A - Y)², without the ½"),
    ("half_mse", "gradient"): (2.0, "twice the half-MSE gradient: 2 (A - Y), the derivative of (A - Y)², "
                                    "not of ½ (A - Y)²"),
    ("mse", "value"): (0.5, "half the MSE value: it has half-MSE's ½"),
    ("mse", "gradient"): (0.5, "half the MSE gradient: the 2 of d(A - Y)²/dA is left out, as for half-MSE"),
}


def _flipped_sign(step: Step, case: Case) -> list[Candidate]:
    if step.kind not in ("loss_gradient", "activation_backward", "input_gradient") + SCALED_GRADIENTS:
        return []
    how = " (Y - A instead of A - Y)" if step.kind == "loss_gradient" and not _unfused(step, case) else ""
    return [Candidate(_scaled(step, -1.0), {"how": how})]


def _unfused(step: Step, case: Case) -> bool:
    """Whether ``step`` is a fused loss's dL/dA_L, the loss differentiated as a function of A_L."""
    return (step.kind == "loss_gradient" and LOSSES[case.network.loss].fused_with is not None
            and step.name == f"dA{case.network.depth}")


def _bce_second_term_missing(step: Step, case: Case) -> list[Candidate]:
    """``dA = −c Y/A``: bce's dL/dŷ with only the y/ŷ term (the (1 − y)/(1 − ŷ) one left out)."""
    if not _unfused(step, case) or case.network.loss != "bce":
        return []
    L, K = case.network.depth, case.network.sizes[-1]
    c = LOSSES["bce"].scale(case.batch, K, case.network.reduction)

    def rule(v):
        with np.errstate(divide="ignore", invalid="ignore"):  # A == 0: an Inf, which matches no claim
            return -c * case.T / v[f"A{L}"]
    return [Candidate(rule)]


def _without_Y(step: Step, case: Case) -> list[Candidate]:
    loss = LOSSES[case.network.loss]
    if step.kind != "loss_gradient" or loss.fused_with is None or _unfused(step, case):
        return []
    L, K = case.network.depth, case.network.sizes[-1]
    c = loss.scale(case.batch, K, case.network.reduction)
    return [Candidate(lambda v: v[f"A{L}"] * c, {"output": f"{loss.fused_with} output A{L}"})]


# --- the Linear layer's backward --------------------------------------------------------------

def _transposed_dW(step: Step, case: Case) -> list[Candidate]:
    if step.kind != "weight_gradient":
        return []
    a, dZ = previous(step.layer), f"dZ{step.layer}"
    return [Candidate(lambda v: v[dZ].T @ v[a])]


def _dW_from_Z(step: Step, case: Case) -> list[Candidate]:
    l = step.layer
    return _when(step.kind == "weight_gradient" and l > 1,
                 Candidate(lambda v: linear_dW(v[f"Z{l - 1}"], v[f"dZ{l}"])))


def _db_wrong_axis(step: Step, case: Case) -> list[Candidate]:
    l = step.layer
    return _when(step.kind == "bias_gradient" and case.batch == case.network.sizes[l],
                 Candidate(lambda v: v[f"dZ{l}"].sum(axis=1)))


# --- a norm: Nl = (Zl - mean) * inv_std, Sl = gammal * Nl + betal, and its backward -----------------

def _norm_of(case: Case, l: int):
    return NORMS[case.network.norm(l)]


def _statistics(Z: np.ndarray, axis: int, eps: float, bessel: bool = False,
                eps_outside: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, inv_std)`` over ``axis`` (keepdims) as a student might take them: with Bessel's 1/(m - 1),
    or ``1/(sqrt(var) + eps)``; the right ones otherwise."""
    m = Z.shape[axis]
    mu = Z.mean(axis=axis, keepdims=True)
    var = ((Z - mu) ** 2).sum(axis=axis, keepdims=True) / (m - 1 if bessel else m)
    return mu, (1 / (np.sqrt(var) + eps) if eps_outside else 1 / np.sqrt(var + eps))


def _normalised_as(step: Step, case: Case, axis: int | None = None, **how) -> Rule:
    """``Nl`` from ``Zl`` with the statistics taken as ``how`` says (over ``axis``, the norm's by default)."""
    l = step.layer
    ax = _norm_of(case, l).axis if axis is None else axis

    def rule(v):
        mu, inv = _statistics(v[f"Z{l}"], ax, case.network.eps, **how)
        return (v[f"Z{l}"] - mu) * inv
    return rule


def _dZ_with(step: Step, case: Case, axis: int | None = None, **how) -> Rule:
    """``dZl`` by the compact rule from ``dNl``, ``Nl``, with inv_std taken as ``how`` says."""
    l = step.layer
    ax = _norm_of(case, l).axis if axis is None else axis

    def rule(v):
        _, inv = _statistics(v[f"Z{l}"], ax, case.network.eps, **how)
        return norm_dZ(v[f"dN{l}"], v[f"N{l}"], inv[0] if ax == 0 else inv, ax)
    return rule


def _norm_statistics_constant(step: Step, case: Case) -> list[Candidate]:
    """``dZ = dN * inv_std``: the mean and the variance taken as constants (no paths through them)."""
    if step.kind != "norm_backward":
        return []
    l = step.layer
    ax = _norm_of(case, l).axis
    return [Candidate(lambda v: v[f"dN{l}"] * _statistics(v[f"Z{l}"], ax, case.network.eps)[1])]


def _norm_bessel(step: Step, case: Case) -> list[Candidate]:
    """The variance with Bessel's 1/(m - 1), where the norm's statistics use 1/m: in N, or in dZ's inv_std."""
    l = step.layer
    if not l or not case.network.normed(l):
        return []
    m = case.batch if _norm_of(case, l).axis == 0 else case.network.sizes[l]  # the length the statistics run over
    if step.kind == "norm" and m > 1:
        return [Candidate(_normalised_as(step, case, bessel=True), {"m": str(m)})]
    if step.kind == "norm_backward" and m > 1:
        return [Candidate(_dZ_with(step, case, bessel=True), {"m": str(m)})]
    return []


def _norm_eps_outside(step: Step, case: Case) -> list[Candidate]:
    """``1/(sqrt(var) + eps)`` for ``1/sqrt(var + eps)``, in N or in dZ's inv_std."""
    if step.kind == "norm" and case.network.eps > 0:
        return [Candidate(_normalised_as(step, case, eps_outside=True))]
    if step.kind == "norm_backward" and case.network.eps > 0:
        return [Candidate(_dZ_with(step, case, eps_outside=True))]
    return []


def _norm_parameter_wrong_axis(step: Step, case: Case) -> list[Candidate]:
    """dgamma (dbeta) summed over the features (axis 1) instead of over the samples; same shape only when
    the batch is as wide as the layer, as for db."""
    l = step.layer
    if step.kind not in ("gamma_gradient", "beta_gradient") or case.batch != case.network.sizes[l]:
        return []
    if step.kind == "gamma_gradient":
        return [Candidate(lambda v: (v[f"dS{l}"] * v[f"N{l}"]).sum(axis=1), {"what": f"dS{l} * N{l}"})]
    return [Candidate(lambda v: v[f"dS{l}"].sum(axis=1), {"what": f"dS{l}"})]


def _layernorm_batch_statistics(step: Step, case: Case) -> list[Candidate]:
    """Layer norm with batch norm's statistics: the mean and variance over the samples (axis 0)."""
    l = step.layer
    if not l or not case.network.normed(l) or case.network.norm(l) != "layernorm" or case.batch < 2:
        return []
    if step.kind == "norm":
        return [Candidate(_normalised_as(step, case, axis=0))]
    if step.kind == "norm_backward":
        return [Candidate(_dZ_with(step, case, axis=0))]
    return []


def _transposed_dA(step: Step, case: Case) -> list[Candidate]:
    if step.kind != "input_gradient":
        return []
    W = case.params[f"W{step.layer}"]
    return _when(W.shape[0] == W.shape[1] and not np.array_equal(W, W.T),
                 Candidate(lambda v: v[f"dZ{step.layer}"] @ W))


def _mask_on_dA(step: Step, case: Case) -> list[Candidate]:
    l = step.layer
    if step.kind != "input_gradient" or l < 2 or case.network.activations[l - 2] != "relu":
        return []
    return [Candidate(lambda v: step.rule(v) * (v[f"Z{l - 1}"] > 0))]


def _transposed_layout(step: Step, case: Case) -> list[Candidate]:
    kinds = ("linear", "activation", "loss_gradient", "activation_backward", "input_gradient")
    return _when(step.kind in kinds, Candidate(lambda v: step.rule(v).T))


# --- the descent step ---------------------------------------------------------------------------

def _sgd(step: Step, case: Case, how: str) -> list[Candidate]:
    if step.kind != "sgd":
        return []
    P, g, lr = case.params[step.name[:-len("_next")]], step.inputs[0], case.step.learning_rate
    if how == "ascent":
        return [Candidate(lambda v: P + lr * v[g], {"g": g})]
    return _when(lr != 1, Candidate(lambda v: P - v[g], {"g": g, "lr": f"{lr:g}"}))


# --- L2 regularisation ------------------------------------------------------------------------

def _l2_other_convention(step: Step, case: Case) -> list[Candidate]:
    """The penalty, or its gradient in dW, with the other convention's factor (½λΣW² against λΣW²)."""
    net = case.network
    if not net.regularized or step.kind not in ("regularization", "weight_gradient", "bias_gradient"):
        return []
    if step.kind == "bias_gradient" and not net.l2_biases:
        return []
    other = "full" if net.l2_convention == "half" else "half"
    words = {"half": "½λΣ‖W‖², gradient λW", "full": "λΣ‖W‖², gradient 2λW"}
    how = {"used": words[other], "convention": f"{net.l2_convention}: {words[net.l2_convention]}"}
    if step.kind == "regularization":
        return [Candidate(_scaled(step, 2.0 if other == "full" else 0.5), how)]
    P = case.params[f"{'W' if step.kind == 'weight_gradient' else 'b'}{step.layer}"]
    extra = (1.0 if other == "full" else -0.5) * 2 * net.l2_factor * P  # 2λW - λW, or λW - 2λW
    return [Candidate(lambda v, r=step.rule, e=extra: r(v) + e, how)]


def _l2_gradient_missing(step: Step, case: Case) -> list[Candidate]:
    """dW without the penalty's gradient (the penalty kept in the loss)."""
    net = case.network
    if not net.regularized or step.kind not in ("weight_gradient", "bias_gradient"):
        return []
    if step.kind == "bias_gradient" and not net.l2_biases:
        return []
    P = case.params[f"{'W' if step.kind == 'weight_gradient' else 'b'}{step.layer}"]
    g = 2 * net.l2_factor * P
    coefficient = f"{net.l2:g}" if net.l2_convention == "half" else f"2·{net.l2:g}"
    return [Candidate(lambda v, r=step.rule: r(v) - g, {"g": f"{coefficient}·{step.name[1:]}"})]


def _l2_biases(step: Step, case: Case) -> list[Candidate]:
    """db with an L2 gradient of b, though the biases are not penalised."""
    net = case.network
    if not net.regularized or net.l2_biases or step.kind != "bias_gradient":
        return []
    b = case.params[f"b{step.layer}"]
    return [Candidate(lambda v, r=step.rule: r(v) + 2 * net.l2_factor * b)]


def _l2_penalty_missing(step: Step, case: Case) -> list[Candidate]:
    """L without the penalty: the data loss alone."""
    return _when(case.network.regularized and step.kind == "total_loss", Candidate(lambda v: v["L_data"]))


# --- optimiser steps ---------------------------------------------------------------------------

def _optimizer_update(step: Step, case: Case, rule: str | None = None, t: int | None = None):
    """The parameter of ``step`` (``W1_next`` -> W1), and ``v -> update(...)`` with another rule or counter."""
    opt = case.step
    name = step.name[:-len("_next")][1 if step.kind == "optimizer_state" else 0:]
    P = case.params[name]
    kernel = OPTIMIZERS[rule or opt.rule]
    state = opt.state_of(name, P)
    constants = {k: opt.constants[k] for k in kernel.constants}

    def update(v):
        return kernel.update(P, v[f"d{name}"], state, opt.learning_rate, t=opt.t if t is None else t, **constants)
    return name, P, update


def _adam_counter(step: Step, case: Case) -> list[Candidate]:
    if step.kind != "optimizer" or case.step.rule != "adam" or case.step.t < 1:
        return []
    _, _, update = _optimizer_update(step, case, t=case.step.t - 1)  # corrections 1 - b**t, not 1 - b**(t + 1)
    return [Candidate(lambda v: update(v)[0], {"t": str(case.step.t)})]


def _adam_uncorrected(step: Step, case: Case) -> list[Candidate]:
    if step.kind != "optimizer" or case.step.rule != "adam":
        return []
    _, P, update = _optimizer_update(step, case)
    lr, eps = case.step.learning_rate, case.step.constants["eps"]
    return [Candidate(lambda v: P - lr * update(v)[1]["m"] / (np.sqrt(update(v)[1]["v"]) + eps))]


def _momentum_up(step: Step, case: Case) -> list[Candidate]:
    if step.kind != "optimizer" or not case.step.rule.startswith("momentum"):
        return []
    _, P, update = _optimizer_update(step, case)
    if case.step.rule == "momentum":  # W' = W + lr·v' instead of W - lr·v'
        return [Candidate(lambda v: 2 * P - update(v)[0])]
    mu, lr = case.step.constants["momentum"], case.step.learning_rate  # v' = mu v + lr g, W' = W + v'
    name = step.name[:-len("_next")]
    v0 = case.step.state_of(name, P)["v"]
    return [Candidate(lambda v: P + mu * v0 + lr * v[f"d{name}"])]


def _momentum_mixed(step: Step, case: Case) -> list[Candidate]:
    if step.kind not in ("optimizer", "optimizer_state") or not case.step.rule.startswith("momentum"):
        return []
    other = "momentum_velocity" if case.step.rule == "momentum" else "momentum"
    _, _, update = _optimizer_update(step, case, rule=other)
    words = {"momentum": "buffer (b = μb + g, W -= lr·b)", "momentum_velocity": "velocity (v = μv - lr·g, W += v)"}
    how = {"used": words[other], "form": words[case.step.rule]}
    pick = (lambda v: update(v)[0]) if step.kind == "optimizer" else (lambda v: update(v)[1]["v"])
    return [Candidate(pick, how)]


def _backprop_after_update(step: Step, case: Case) -> list[Candidate]:
    """dA(l-1) = dZl @ Wl_next.T: the weights updated before the gradient was carried through them."""
    if step.kind != "input_gradient" or case.step is None:
        return []
    l = step.layer
    W = case.params[f"W{l}"]
    opt = case.step
    kernel = opt.optimizer

    def rule(v):
        W_next, _ = kernel.update(W, v[f"dW{l}"], opt.state_of(f"W{l}", W), opt.learning_rate, t=opt.t,
                                  **opt.constants)
        return linear_dA_prev(v[f"dZ{l}"], W_next)
    return [Candidate(rule)]


def _gradients_accumulated(step: Step, case: Case) -> list[Candidate]:
    """k steps with ``.grad`` never zeroed: step j moves by g_1 + ... + g_j instead of g_j."""
    if step.kind != "trajectory":
        return []
    return [Candidate(lambda v: followed(case, v, accumulate=True)[step.name], {"k": str(case.step.steps)})]


MISTAKES: tuple[Mistake, ...] = (
    # activation backward
    Mistake("relu_mask_missing", "the ReLU mask left out",
            "{n} is {dA} with the ReLU mask left out; it should be {dA} * ({Z} > 0).",
            lambda s, c: _relu(s, c, lambda v: v[f"dA{s.layer}"])),
    Mistake("relu_mask_at_zero", "the ReLU mask taken as Z >= 0",
            "{n} takes the ReLU mask as {Z} >= 0; the derivative at {Z} == 0 is 0, so it should be {dA} * ({Z} > 0).",
            lambda s, c: _relu(s, c, lambda v: v[f"dA{s.layer}"] * (v[f"Z{s.layer}"] >= 0))),
    Mistake("relu_mask_from_gradient", "the ReLU mask taken from the gradient",
            "{n} masks {dA} by its own sign ({dA} > 0); the mask comes from the forward: {dA} * ({Z} > 0).",
            lambda s, c: _relu(s, c, lambda v: v[f"dA{s.layer}"] * (v[f"dA{s.layer}"] > 0))),
    Mistake("relu_mask_of_another_layer", "the ReLU mask of another layer",
            "{n} uses the mask of {other} instead of {Z}; it should be {dA} * ({Z} > 0).",
            _mask_of_another_layer),
    Mistake("sigmoid_derivative_from_Z", "the sigmoid derivative taken from Z instead of A",
            "{n} takes the sigmoid derivative from {Z} ({Z} * (1 - {Z})); it comes from {A}: {dA} * {A} * (1 - {A}).",
            lambda s, c: _derivative(s, c, ("sigmoid",),
                                     lambda v: v[f"dA{s.layer}"] * v[f"Z{s.layer}"] * (1 - v[f"Z{s.layer}"]))),
    Mistake("sigmoid_derivative_twice", "the sigmoid derivative applied twice",
            "{n} applies the sigmoid derivative twice ({dA} * ({A} * (1 - {A}))**2); once is right: {dA} * {A} * (1 - {A}).",
            lambda s, c: _derivative(s, c, ("sigmoid",),
                                     lambda v: v[f"dA{s.layer}"] * (v[f"A{s.layer}"] * (1 - v[f"A{s.layer}"])) ** 2)),
    Mistake("tanh_derivative_from_Z", "the tanh derivative taken from Z instead of A",
            "{n} takes the tanh derivative from {Z} (1 - {Z}**2); it comes from {A}: {dA} * (1 - {A}**2).",
            lambda s, c: _derivative(s, c, ("tanh",), lambda v: v[f"dA{s.layer}"] * (1 - v[f"Z{s.layer}"] ** 2))),
    Mistake("activation_derivative_missing", "the activation's derivative left out",
            "{n} is {dA} with the {act} derivative left out; it should be {right}.",
            _derivative_missing),
    Mistake("softmax_elementwise_derivative", "softmax differentiated as if elementwise",
            "{n} treats softmax as elementwise ({dA} * {A} * (1 - {A})); its Jacobian couples the outputs: {right}.",
            lambda s, c: _derivative(s, c, ("softmax",),
                                     lambda v: v[f"dA{s.layer}"] * v[f"A{s.layer}"] * (1 - v[f"A{s.layer}"]))),
    # forward
    Mistake("forward_transposed_weights", "the forward with the transposed weights",
            "{n} was computed with {W}.T instead of {W}: it should be {right}.", _forward_transposed),
    Mistake("forward_bias_missing", "the bias left out of the forward",
            "{n} leaves out the bias {b}: it should be {right}.", _forward_no_bias),
    Mistake("forward_weights_of_another_layer", "the forward with another layer's weights",
            "{n} was computed with {other} instead of {W}: it should be {right}.", _forward_other_weights),
    Mistake("forward_other_sample", "the forward on the wrong sample",
            "{n} was computed from the wrong samples: {which}.", _forward_other_sample),
    Mistake("activation_missing", "the activation left out",
            "{n} is {Z} with the {act} left out: it should be {right}.",
            lambda s, c: _when(s.kind == "activation" and _act(s, c) != "identity",
                               Candidate(lambda v: v[f"Z{s.layer}"]))),
    # the loss and its gradient
    Mistake("deltas_other_placement", "the other convention's placement of the 1/N",
            "Your {n} is {how}.", _deltas_other_placement, upstream=False),
    Mistake("missing_1_over_N", "a missing 1/N",
            "{n} is missing the 1/N of the mean: it is N = {N} times too large ({right}).", _missing_1_over_N),
    Mistake("extra_1_over_N", "an extra 1/N",
            "{n} is divided by N = {N} once too often{why}.", _extra_1_over_N),
    Mistake("half_mse_vs_mse", "half-MSE versus MSE (a factor of 2)",
            "{n} is {how}; it should be {right}.", _half_mse_vs_mse),
    Mistake("flipped_sign", "a flipped sign",
            "{n} has the opposite sign{how}; it should be {right}.", _flipped_sign),
    Mistake("bce_second_term_missing", "bce's dL/dŷ with only the y/ŷ term",
            "{n} keeps only the y/ŷ term of dL/d{A} (−Y/{A}); the (1 − Y)/(1 − {A}) term belongs too: {right}.",
            _bce_second_term_missing),
    Mistake("cross_entropy_without_Y", "the cross-entropy gradient without Y subtracted",
            "{n} is the {output} without Y subtracted; the fused gradient is {right}.", _without_Y),
    # the Linear layer's backward
    Mistake("transposed_weight_gradient", "a transposed product (dZ.T @ A instead of A.T @ dZ)",
            "{n} is {dZ}.T @ {A_prev}, the transposed product; it should be {A_prev}.T @ {dZ}.", _transposed_dW,
            column="{n} is {A_prev} @ {dZ}.T, the transposed product; it should be {dZ} @ {A_prev}.T."),
    Mistake("weight_gradient_from_Z", "the weight gradient from Z instead of A",
            "{n} uses the pre-activation {Zp} where the activation belongs: it should be {right}.", _dW_from_Z),
    Mistake("db_wrong_axis", "db summed over the wrong axis",
            "{n} sums {dZ} over the units (axis 1) instead of over the samples (axis 0): {right}.", _db_wrong_axis,
            column="{n} sums {dZ} over the units (axis 0) instead of over the samples (axis 1): {right}."),
    Mistake("transposed_product", "a transposed product (dZ @ W instead of dZ @ W.T)",
            "{n} is {dZ} @ {W}, the transposed product; it should be {right}.", _transposed_dA,
            column="{n} is {W} @ {dZ}, the transposed product; it should be {right}."),
    Mistake("relu_mask_on_dA", "the ReLU mask applied to dA instead of dZ",
            "{n} already has the ReLU mask ({Zp} > 0) applied; the mask belongs in {dZp}, and {right}.",
            _mask_on_dA),
    Mistake("transposed_layout", "the transposed layout",
            "{n} holds the right numbers in the transposed layout (one sample per column); "
            "in the row-vector convention it is (N, n), one sample per row.", _transposed_layout,
            column="{n} holds the right numbers in the transposed layout (one sample per row); "
                   "in the column-vector convention it is (n, N), one sample per column."),
    # the descent step
    Mistake("sgd_ascent", "a step up the gradient",
            "{n} adds the gradient (a step up the slope); it should be {right}.",
            lambda s, c: _sgd(s, c, "ascent")),
    Mistake("sgd_learning_rate_missing", "the learning rate left out",
            "{n} subtracts {g} without the learning rate {lr}; it should be {right}.",
            lambda s, c: _sgd(s, c, "no_lr")),
    # L2 regularisation
    Mistake("l2_other_convention", "the L2 term with the other convention's factor",
            "{n} uses {used}; this network's convention is {convention}: it should be {right}.",
            _l2_other_convention),
    Mistake("l2_gradient_missing", "the L2 gradient left out of a weight's gradient",
            "{n} leaves out the penalty's gradient {g}: the penalty is part of L, so it should be {right}.",
            _l2_gradient_missing),
    Mistake("l2_biases_regularized", "the biases penalised",
            "{n} adds an L2 gradient of b{l}, but the biases are not penalised (biases = false): {right}.",
            _l2_biases),
    Mistake("l2_penalty_missing_from_loss", "the L2 penalty left out of the loss",
            "{n} is the data loss alone; with L2 it is {right}.", _l2_penalty_missing),
    # optimiser steps
    Mistake("adam_counter_not_incremented", "Adam's bias correction with t not incremented",
            "{n} corrects the moments by 1 - β^t with t = {t}, the steps already taken; Adam counts this step "
            "first and divides by 1 - β^(t+1).", _adam_counter),
    Mistake("adam_bias_correction_missing", "Adam's bias correction left out",
            "{n} divides m' by √v' without the bias corrections 1 - β1^t' and 1 - β2^t' ({right}).",
            _adam_uncorrected),
    Mistake("momentum_wrong_sign", "momentum stepping up the gradient",
            "{n} moves with the gradient instead of against it; {right}.", _momentum_up),
    Mistake("momentum_forms_mixed", "the two momentum forms mixed",
            "{n} applies the {used} form to a state kept in the {form} form ({right}).", _momentum_mixed),
    Mistake("update_before_backprop", "backpropagating through the updated weights",
            "{n} is carried through W{l}_next, the weights after the step; the gradient goes through W{l} "
            "as it was in the forward: {right}.", _backprop_after_update),
    Mistake("gradients_accumulated_across_steps", "gradients accumulated across steps (no zero_grad)",
            "{n} is where {k} steps lead when the gradients add up from step to step (step j moves by "
            "g_1 + ... + g_j, as .grad does without optimizer.zero_grad() between steps); each step moves by its "
            "own gradient.", _gradients_accumulated),
    # a norm (batch norm, layer norm)
    Mistake("norm_statistics_constant", "the mean and variance treated as constants",
            "{n} is {dxhat} * inv_std: the mean and the variance were treated as constants, but both depend on "
            "{Z}; with their paths, {right}.", _norm_statistics_constant),
    Mistake("norm_bessel_variance", "Bessel's n − 1 in the variance",
            "{n} takes the variance with Bessel's 1/(m − 1) (m = {m}); the {norm} statistics use the biased 1/m: "
            "{right}.", _norm_bessel),
    Mistake("norm_eps_outside_root", "eps outside the square root",
            "{n} divides by sqrt(var) + eps; eps goes inside the root: 1/sqrt(var + eps). {right}.",
            _norm_eps_outside),
    Mistake("norm_parameter_gradient_wrong_axis", "dgamma or dbeta summed over the wrong axis",
            "{n} sums {what} over the features (axis 1) instead of over the samples (axis 0): {right}.",
            _norm_parameter_wrong_axis,
            column="{n} sums {what} over the features (axis 0) instead of over the samples (axis 1): {right}."),
    Mistake("layernorm_batch_statistics", "layer norm with the batch's statistics",
            "{n} takes layer norm's mean and variance over the batch (axis 0, as batch norm does); layer norm "
            "normalises each sample over its own features (axis 1): {right}.", _layernorm_batch_statistics,
            column="{n} takes layer norm's mean and variance over the batch (axis 1, as batch norm does); layer "
                   "norm normalises each sample over its own features (axis 0): {right}."),
)

BY_ID = {m.id: m for m in MISTAKES}


# --- one layer alone, one loss alone: the layer and loss checkers ---------------------------------
#
# The same mistakes, in the same sentences, for a user's own layer (``check_layer``) or loss
# (``check_loss``). A candidate is the array a user making the mistake returns, computed from the
# trial's own inputs; it is named only when it reproduces the user's numbers (:func:`.replay.reproduces`,
# as validate's diagnosis decides), never from a shape alone. The values ``v`` hold the trial's inputs
# and the right results in float64: for a layer ``x`` (N, n_in), ``W`` (n_in, n_out), ``b`` (n_out,),
# ``dout`` (N, n_out), ``Z``, ``out``, ``dZ = dout * act'(Z)`` and the right ``dx``, ``dW``, ``db``; for a
# loss ``x`` (N, K), ``A`` (its output activation's value, or x), ``T`` (N, K) and the right ``loss``
# (0-d) and ``dx``.

def _never(step: Step, case: Case) -> list[Candidate]:
    """A mistake of one layer alone: it has no step of a network to happen at."""
    return []


#: The mistakes only a layer checked alone makes (validate never tries them: a network's steps are named).
LAYER_MISTAKES: tuple[Mistake, ...] = (
    Mistake("layer_gradient_scaled", "a gradient off by a constant factor",
            "{n} is exactly {factor} the right value; it should be {right}.", _never),
    Mistake("gradients_out_of_order", "the gradients returned in the wrong order",
            "{n} holds the values of {other}: the gradients are returned in the wrong order (or under the wrong "
            "names); backward returns (dx, dW, db), in that order.", _never),
)

LAYER_BY_ID = {m.id: m for m in LAYER_MISTAKES}


@dataclass(frozen=True)
class LayerCandidate:
    """One way of getting one gradient of a layer (or a loss) wrong: the slot, its rule, the words."""

    mistake: Mistake
    gradient: str                      # the slot it fills: "dx", "dW", "db" (a loss: "loss", "dx")
    rule: Rule
    words: dict[str, str]
    scale: float = 1.0                 # how much larger the user's rounding is than the right tensor's (a factor N)
    tolerance_of: str | None = None    # whose tolerance the user's rounding is (another slot's values), if not its own

    def sentence(self, column: bool = False) -> str:
        """The mistake's sentence with this candidate's names (in the column layout's terms if ``column``)."""
        if column and self.mistake.column:
            return self.mistake.column.format(**self.words)
        return self.mistake.say(**self.words)


def _mistake(id: str) -> Mistake:
    return BY_ID[id] if id in BY_ID else LAYER_BY_ID[id]


#: Per activation, the activation-backward mistakes of :data:`MISTAKES` as ``dZ = f(dA, Z, A)``
#: (``activation_derivative_missing`` covers every other activation of the registry).
LAYER_ACTIVATION_MISTAKES: dict[str, tuple[tuple[str, Callable[..., np.ndarray]], ...]] = {
    "relu": (("relu_mask_missing", lambda dA, Z, A: dA),
             ("relu_mask_at_zero", lambda dA, Z, A: dA * (Z >= 0)),
             ("relu_mask_from_gradient", lambda dA, Z, A: dA * (dA > 0))),
    "sigmoid": (("sigmoid_derivative_from_Z", lambda dA, Z, A: dA * Z * (1 - Z)),
                ("sigmoid_derivative_twice", lambda dA, Z, A: dA * (A * (1 - A)) ** 2)),
    "tanh": (("tanh_derivative_from_Z", lambda dA, Z, A: dA * (1 - Z ** 2)),),
    "softmax": (("softmax_elementwise_derivative", lambda dA, Z, A: dA * A * (1 - A)),),
}


def layer_candidates(linear: bool, activation: str, N: int) -> list[LayerCandidate]:
    """The classic mistakes of one layer ``out = act(x @ W + b)`` (or ``act(x)``), most specific first.

    Gradients in the wrong slot (their order), ``db = dZ.sum(axis=1)``, the transposed products
    (``dZ.T @ x`` for dW, ``dZ @ W`` for dx) and layout, the activation's own mistakes carried to
    every gradient by the right Linear rules, then the constant factors: an extra 1/N (a mean for a
    sum), the sign, 2, 1/2 and N.
    """
    act = ACTIVATIONS[activation]
    d = "dZ" if linear and activation != "identity" else "dout"          # the layer's dZ, in words
    slots = ("dx", "dW", "db") if linear else ("dx",)
    right = ({"dx": f"dx = {d} @ W.T", "dW": f"dW = x.T @ {d}", "db": f"db = {d}.sum(axis=0)"} if linear
             else {"dx": "dx = " + act.backward_text.format(dA="dout", Z="x", A="out")})
    out: list[LayerCandidate] = []
    if linear:
        for g in slots:
            out += [LayerCandidate(LAYER_BY_ID["gradients_out_of_order"], g, lambda v, h=h: v[h],
                                   {"n": g, "other": h}, tolerance_of=h) for h in slots if h != g]
        out.append(LayerCandidate(BY_ID["db_wrong_axis"], "db", lambda v: v["dZ"].sum(axis=1),
                                  {"n": "db", "dZ": d, "right": right["db"]}))
        out.append(LayerCandidate(BY_ID["transposed_weight_gradient"], "dW", lambda v: v["dZ"].T @ v["x"],
                                  {"n": "dW", "dZ": d, "A_prev": "x"}))
        out.append(LayerCandidate(BY_ID["transposed_product"], "dx", lambda v: v["dZ"] @ v["W"],
                                  {"n": "dx", "dZ": d, "W": "W", "right": right["dx"]}))
    out.append(LayerCandidate(BY_ID["transposed_layout"], "dx", lambda v: v["dx"].T, {"n": "dx"}))
    wrong_dZ = list(LAYER_ACTIVATION_MISTAKES.get(activation, ()))
    if activation not in DERIVATIVE_MISSING_SAID_OTHERWISE:
        wrong_dZ.append(("activation_derivative_missing", lambda dA, Z, A: dA))
    names = {"n": "dZ" if linear else "dx", "dA": "dout", "Z": "Z" if linear else "x", "A": "out", "act": activation}
    names["right"] = act.backward_text.format(dA="dout", Z=names["Z"], A="out")
    for id, dZ in wrong_dZ:
        made = lambda v, dZ=dZ: dZ(v["dout"], v["Z"], v["out"])  # noqa: E731
        carried = {"dx": (lambda v, m=made: linear_dA_prev(m(v), v["W"])) if linear else made,
                   "dW": lambda v, m=made: linear_dW(v["x"], m(v)), "db": lambda v, m=made: linear_db(m(v))}
        out += [LayerCandidate(BY_ID[id], g, carried[g], names) for g in slots]
    for g in slots:
        why = (": the layer's gradients are sums over the batch; a mean's 1/N belongs in dout, the loss's gradient"
               if g != "dx" else ": each sample's dx is its own; a mean's 1/N belongs in dout, the loss's gradient")
        if N > 1:
            out.append(LayerCandidate(BY_ID["extra_1_over_N"], g, lambda v, g=g: v[g] / N,
                                      {"n": g, "N": str(N), "why": why}))
        out.append(LayerCandidate(BY_ID["flipped_sign"], g, lambda v, g=g: -v[g],
                                  {"n": g, "how": "", "right": right[g]}))
        factors = [(2.0, "twice"), (0.5, "half")] + ([(float(N), f"N = {N} times")] if N > 2 else [])
        out += [LayerCandidate(LAYER_BY_ID["layer_gradient_scaled"], g, lambda v, g=g, f=f: v[g] * f,
                               {"n": g, "factor": text, "right": right[g]}, scale=max(f, 1.0))
                for f, text in factors]
    return out


def loss_candidates(loss: str, reduction: str, N: int, K: int, input_name: str) -> list[LayerCandidate]:
    """The classic mistakes of a loss ``L = c * sum(terms)`` and its gradient ``dx = c * g`` alone.

    The 1/N of the mean missing or taken twice, half-MSE versus MSE, the gradient's sign, and a fused
    gradient without Y subtracted. ``input_name`` is the user's input in words (``x``).
    """
    spec = LOSSES[loss]
    A = f"{spec.fused_with}({input_name})" if spec.fused_with else input_name
    c = spec.scale(N, K, reduction)
    scale = "" if reduction == "sum" else (" / (N·K)" if spec.mean_divides_by_K else " / N")
    formula = (spec.formula.replace("(Z)", f"({input_name})") if spec.fused_with
               else spec.formula.replace("A", input_name))
    right = {"loss": f"{formula}, c = " + {"": "1", " / N": "1/N", " / (N·K)": "1/(N·K)"}[scale],
             "dx": "dx = " + spec.grad_text.format(A=A) + scale}
    out: list[LayerCandidate] = []
    for g in ("loss", "dx"):
        if reduction == "mean" and N > 1:
            out.append(LayerCandidate(BY_ID["missing_1_over_N"], g, lambda v, g=g: v[g] * N,
                                      {"n": g, "N": str(N), "right": right[g]}, scale=float(N)))
        if N > 1:
            why = ", though the loss is a sum (reduction = \"sum\")" if reduction == "sum" else \
                ": the mean's 1/N is taken twice"
            out.append(LayerCandidate(BY_ID["extra_1_over_N"], g, lambda v, g=g: v[g] / N,
                                      {"n": g, "N": str(N), "why": why}))
        if loss in ("half_mse", "mse"):
            factor, how = HALF_MSE_VS_MSE[loss, "value" if g == "loss" else "gradient"]
            out.append(LayerCandidate(BY_ID["half_mse_vs_mse"], g, lambda v, g=g, f=factor: v[g] * f,
                                      {"n": g, "how": how, "right": right[g]}, scale=max(factor, 1.0)))
    out.append(LayerCandidate(BY_ID["flipped_sign"], "dx", lambda v: -v["dx"],
                              {"n": "dx", "how": " (Y - A instead of A - Y)", "right": right["dx"]}))
    if spec.fused_with:
        out.append(LayerCandidate(BY_ID["cross_entropy_without_Y"], "dx", lambda v: v["A"] * c,
                                  {"n": "dx", "output": f"{spec.fused_with} output {A}", "right": right["dx"]}))
    return out


def fitting(candidates: list[LayerCandidate], values: Values, yours: Values, tol: Values,
            u: float) -> dict[str, LayerCandidate]:
    """Per slot, the first candidate that reproduces the user's array there (and differs from the right one).

    ``yours`` holds only the slots that failed, as float64 arrays; ``tol`` every right tensor's
    tolerance (the policy's ``K E + floor``), which bounds the user's rounding too: a candidate's
    own slot's (or ``tolerance_of``'s), times its ``scale``. A candidate that cannot run on these
    shapes (a transposed product of a non-square W) does not fit.
    """
    found: dict[str, LayerCandidate] = {}
    for c in candidates:
        g = c.gradient
        if g in found or g not in yours:
            continue
        try:
            with np.errstate(all="ignore"):
                made = np.asarray(c.rule(values), dtype=np.float64)
        except ValueError:
            continue
        right = np.asarray(values[g], dtype=np.float64)
        if reproduces(right, np.zeros(right.shape), tol[g], made, np.zeros(made.shape), u):
            continue  # on this trial the mistake changes nothing
        mine = yours[g]
        slack = tol[c.tolerance_of or g] * c.scale
        if reproduces(mine, np.zeros(mine.shape), slack, made, np.zeros(made.shape), u):
            found[g] = c
    return found
