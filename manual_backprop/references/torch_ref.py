"""The PyTorch reference: the engine's maths written with torch ops, every gradient from autograd.

One forward and one loss serve everything here::

    Z_l = A_(l-1) @ W_l + b_l        torch.addmm(b_l, A_(l-1), W_l): not nn.Linear (whose weight is W_l.T)
    N_l = norm(Z_l)                  a normed layer: F.batch_norm(training=True) or F.layer_norm, no affine
    S_l = gamma_l * N_l + beta_l     (so that N_l keeps its own gradient)
    A_l = act_l(Z_l or S_l)          l = 1..L, A_0 = X (N, n_0)
    L   = c * sum(terms(Z_L or A_L, Y))

with ``c = network.normaliser(N)`` (1 under "sum"; 1/N, or 1/(N·K) for mse
and bce, under "mean"). From them:

* :func:`run`, the named trace: X, every W_l and b_l are leaf tensors and every
  Z_l, A_l keeps its gradient (``retain_grad``), so one ``L.backward()`` yields
  dW_l, db_l, dX and the intermediate dZ_l, dA_l, none of them written by hand;
* :func:`per_sample_gradients`, ``torch.func.vmap(torch.func.grad(l_i))`` of each
  sample's own term ``l_i`` (no c), mapped over the rows with no loop;
* :func:`gradients`, :func:`accumulated_gradients` (``.grad`` summed over several
  ``loss_j.backward()`` calls on micro-batches) and :func:`next_parameters`
  (one ``torch.optim.SGD`` step, lr only, no momentum);
* :func:`layer_gradients`, one layer alone, for the layer check.

Only the network description is read; nothing of the engine's code.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from ..description.case import Case
from ..description.network import Network
from ..errors import InputError
from . import table_entry

#: ``A = act(Z)``, one line per activation of the registry. ReLU is ``torch.relu``, whose
#: gradient at Z == 0 is 0, the project's convention (``clamp(min=0)`` would give 1 there and
#: ``maximum(Z, 0)`` 1/2); ``leaky_relu``'s gradient at 0 is its slope 0.01, the convention the
#: project takes. Softplus is ``logaddexp(Z, 0)``, not ``F.softplus``, which returns Z itself
#: above its threshold 20 (off by up to 2e-9, far beyond float64 rounding). Softmax runs over the
#: last axis, so it serves one row (vmap) too.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda Z: Z,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "softmax": lambda Z: torch.softmax(Z, dim=-1),
    "leaky_relu": lambda Z: F.leaky_relu(Z, 0.01),
    "softplus": lambda Z: torch.logaddexp(Z, Z.new_zeros(())),
}

#: ``x̂ = norm(Z)`` without the affine part (gamma, beta are applied after, so that x̂ keeps its gradient):
#: batch norm in training mode (the batch's own mean and biased variance; no running statistics),
#: layer norm over the features of each row.
NORMS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "batchnorm": lambda Z, eps: F.batch_norm(Z, None, None, training=True, eps=eps),
    "layernorm": lambda Z, eps: F.layer_norm(Z, Z.shape[-1:], eps=eps),
}

#: ``c * sum(terms)`` of the output (N, K), for the factor c the caller gives (1: the plain sum).
#: ``mse_loss(reduction="sum")`` is ``sum((A - Y)**2)`` in one op, and ½ folds into c: eager torch
#: pays per op, and the benchmark times this loss. bce and cross-entropy take the logits Z (never
#: the probabilities A: ``BCELoss`` clamps log(0) to -100 and returns a wrong gradient once the
#: sigmoid saturates). ``Y`` is a (N, K) float target, or (N,) int64 class labels for
#: cross-entropy (``cross_entropy`` takes either).
LOSS_SUMS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "half_mse": lambda Z, A, Y, c: F.mse_loss(A, Y, reduction="sum") * (0.5 * c),
    "mse": lambda Z, A, Y, c: F.mse_loss(A, Y, reduction="sum") * c,
    "bce": lambda Z, A, Y, c: F.binary_cross_entropy_with_logits(Z, Y, reduction="sum") * c,
    "softmax_cross_entropy": lambda Z, A, Y, c: F.cross_entropy(Z, Y, reduction="sum") * c,
}


def _unfused_bce(A: torch.Tensor, Y: torch.Tensor, c: float) -> torch.Tensor:
    """``−c Σ [Y log A + (1 − Y) log(1 − A)]`` written from A; a term of weight 0 is left out, and its
    log never sees the saturated A (the inner ``where``), so its gradient is 0, not 0 · Inf."""
    first = torch.where(Y != 0, Y * torch.log(torch.where(Y != 0, A, 1.0)), 0.0)
    second = torch.where(Y != 1, (1 - Y) * torch.log1p(-torch.where(Y != 1, A, 0.0)), 0.0)
    return -(first + second).sum() * c


def _unfused_cross_entropy(A: torch.Tensor, Y: torch.Tensor, c: float) -> torch.Tensor:
    """``−c Σ Y log A`` written from A (labels Y (N,) as one-hot rows); 0 where Y is 0."""
    T = F.one_hot(Y, A.shape[-1]).to(A.dtype) if Y.ndim == 1 else Y
    return -torch.where(T != 0, T * torch.log(torch.where(T != 0, A, 1.0)), 0.0).sum() * c


#: A fused loss written as a function of A_L, ``f(A, Y, c)``: autograd of it is dA_L, what a derivation
#: that starts from dL/dŷ writes (the trace itself stays fused, from the logits).
UNFUSED_SUMS: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "bce": _unfused_bce,
    "softmax_cross_entropy": _unfused_cross_entropy,
}


def unfused_dA(network: Network, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """dL/dA_L of a fused loss, by autograd of the loss written from A_L (N, K), at A itself."""
    leaf = A.detach().requires_grad_()
    with torch.enable_grad():
        L = _entry(UNFUSED_SUMS, "loss written from A", network.loss)(leaf, Y, network.normaliser(A.shape[0]))
        (dA,) = torch.autograd.grad(L, leaf)
    return dA


def version() -> str:
    return torch.__version__


def _entry(table: dict, kind: str, name: str) -> Callable:
    """``table[name]``, or an :class:`InputError` naming what the torch reference lacks."""
    return table_entry("torch", table, kind, name)


# --- the maths, once ---------------------------------------------------------------------------

def forward(network: Network, params: dict[str, torch.Tensor], X: torch.Tensor,
            last_activation: bool = True, extras: dict | None = None
            ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """``([Z_1, ..., Z_L], [A_1, ..., A_L])``, each (N, n_l), for a batch X (N, n_0) of rows.

    ``last_activation=False`` leaves A_L uncomputed (None): a loss fused with the output
    activation reads Z_L only. ``extras``, a dict, receives a normed layer's ``N_l`` and ``S_l``.
    """
    acts = [_entry(ACTIVATIONS, "activation", a) for a in network.activations]
    Zs, As, A = [], [], X
    for l, act in enumerate(acts, start=1):
        Z = torch.addmm(params[f"b{l}"], A, params[f"W{l}"])  # b + A @ W, one op and one autograd node
        S = Z
        if network.normed(l):
            N = _entry(NORMS, "norm", network.norm(l))(Z, network.eps)
            S = N * params[f"gamma{l}"] + params[f"beta{l}"]
            if extras is not None:
                extras[f"N{l}"], extras[f"S{l}"] = N, S
        A = act(S) if last_activation or l < network.depth else None
        Zs.append(Z)
        As.append(A)
    return Zs, As


def terms_sum(network: Network, Z: torch.Tensor, A: torch.Tensor | None, Y: torch.Tensor,
              c: float = 1.0) -> torch.Tensor:
    """``c * sum_i l_i`` for the output Z_L, A_L (N, K): the terms summed, times c."""
    return _entry(LOSS_SUMS, "loss", network.loss)(Z, A, Y, c)


def _reduced(network: Network, Z: torch.Tensor, A: torch.Tensor | None, Y: torch.Tensor) -> torch.Tensor:
    """``L = c * sum_i l_i`` with the network's normaliser c for N = Z.shape[0] rows."""
    return terms_sum(network, Z, A, Y, network.normaliser(Z.shape[0]))


def l2_penalty(network: Network, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """``L_reg = f λ Σ_l ‖W_l‖²`` written as maths (f = ½ or 1; biases too if asked), never an optimiser's
    weight decay: autograd then adds ``2 f λ W_l`` to each weight's gradient itself."""
    return network.l2_factor * sum((params[n] * params[n]).sum() for n in network.l2_names())


def loss(network: Network, params: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """The batch loss L (a 0-d tensor) of rows X (N, n_0) with targets Y, differentiable in params and X:
    the data term, plus the L2 penalty when the network has one."""
    Zs, As = forward(network, params, X, last_activation=not network.fused)
    L = _reduced(network, Zs[-1], As[-1], Y)
    return L + l2_penalty(network, params) if network.regularized else L


# --- the trace ---------------------------------------------------------------------------------

def run(case: Case, device: str | None = None) -> dict[str, np.ndarray]:
    """The named trace of ``case`` (``case.network.names()``, in order), as NumPy arrays."""
    net = case.network
    dev = _device(device)
    with torch.enable_grad():
        X = _tensor(case.X, dev).requires_grad_()
        params = {k: _tensor(v, dev).requires_grad_() for k, v in case.params.items()}
        extras: dict[str, torch.Tensor] = {}
        Zs, As = forward(net, params, X, extras=extras)
        for t in extras.values():
            t.retain_grad()
        for l, (Z, A) in enumerate(zip(Zs, As), start=1):
            Z.retain_grad()
            if not (net.fused and l == net.depth):  # a fused loss never sees A_L: no dA_L
                A.retain_grad()
        L_data = _reduced(net, Zs[-1], As[-1], _tensor(case.Y, dev))
        L_reg = l2_penalty(net, params) if net.regularized else None
        L = L_data + L_reg if net.regularized else L_data
        L.backward()
    # a fused loss never sees A_L: dA_L comes from the loss written as a function of A_L
    dA_L = unfused_dA(net, As[-1], _tensor(case.Y, dev)) if net.fused else None

    tensors = {"X": X, **params, **extras, "L": L, "L_data": L_data, "L_reg": L_reg}
    for l, (Z, A) in enumerate(zip(Zs, As), start=1):
        tensors[f"Z{l}"], tensors[f"A{l}"] = Z, A
    trace = {}
    for name in net.names():
        if name == "Y":
            trace[name] = case.Y  # as given: (N, K) floats or (N,) int64 labels
        elif dA_L is not None and name == f"dA{net.depth}":
            trace[name] = _numpy(dA_L, name, net.np_dtype)
        elif name.startswith("d"):  # dX, dWl, dbl on the leaves; dZl, dAl retained
            trace[name] = _numpy(tensors[name[1:]].grad, name, net.np_dtype)
        else:
            trace[name] = _numpy(tensors[name], name, net.np_dtype)
    return trace


# --- after one batch gradient ------------------------------------------------------------------

def per_sample_gradients(case: Case) -> dict[str, np.ndarray]:
    """``dWl_per_sample`` (N, n_{l-1}, n_l), ``dbl_per_sample`` (N, n_l): ``d l_i / dWl`` for every i."""
    net = case.network

    def l_i(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        Zs, As = forward(net, params, x[None], last_activation=not net.fused)  # one sample, one row
        return terms_sum(net, Zs[-1], As[-1], y[None])

    g = vmap(grad(l_i), in_dims=(None, 0, 0))(_params(case), *_data(case))
    out = {}
    for l in range(1, net.depth + 1):
        for p in (f"W{l}", f"b{l}"):
            out[f"d{p}_per_sample"] = _numpy(g[p], f"d{p}_per_sample", net.np_dtype)
    return out


def gradients(case: Case) -> dict[str, np.ndarray]:
    """The batch ``dWl``, ``dbl`` from one ``loss.backward()``."""
    params = _params(case, requires_grad=True)
    with torch.enable_grad():
        loss(case.network, params, *_data(case)).backward()
    return _grads(case, params)


def accumulated_gradients(case: Case, size: int) -> dict[str, np.ndarray]:
    """``.grad`` after ``loss_j.backward()`` on each micro-batch of ``size`` rows, never zeroed between."""
    params = _params(case, requires_grad=True)
    with torch.enable_grad():
        for start in range(0, case.batch, size):
            loss(case.network, params, *_data(case, slice(start, start + size))).backward()
    return _grads(case, params)


#: Each optimiser's torch.optim class, its keyword arguments, and our state name -> torch's state key.
OPTIMIZERS = {
    "sgd": (lambda c: (torch.optim.SGD, {"momentum": 0.0}), {}),
    "momentum": (lambda c: (torch.optim.SGD, {"momentum": c["momentum"]}), {"v": "momentum_buffer"}),
    "rmsprop": (lambda c: (torch.optim.RMSprop, {"alpha": c["decay"], "eps": c["eps"]}), {"v": "square_avg"}),
    "adam": (lambda c: (torch.optim.Adam, {"betas": (c["beta1"], c["beta2"]), "eps": c["eps"]}),
             {"m": "exp_avg", "v": "exp_avg_sq"}),
}


def next_parameters(case: Case, lr: float | None = None) -> dict[str, np.ndarray]:
    """``Wl_next``, ``bl_next`` and the new state after one torch.optim step on the whole batch, from the
    case's state: ``SGD(lr)`` (``lr``, or the case's own step), ``SGD(momentum=μ)``, ``RMSprop``, ``Adam``.

    The course's velocity form of momentum is torch's buffer form with ``v = -lr·b``: the state goes in
    as ``b = -v/lr`` and comes out as ``v' = -lr·b'``, so torch.optim judges it too.
    """
    step = case.step if lr is None else None
    rule = "sgd" if step is None else step.rule
    rate = lr if step is None else step.learning_rate
    velocity = rule == "momentum_velocity"
    make, keys = _entry(OPTIMIZERS, "optimizer", "momentum" if velocity else rule)
    params = _params(case, requires_grad=True)
    cls, kwargs = make(step.constants if step is not None else {})
    opt = cls(list(params.values()), lr=rate, **kwargs)
    opt.zero_grad()
    with torch.enable_grad():
        loss(case.network, params, *_data(case)).backward()
    if step is not None and step.optimizer.state:
        for name, p in params.items():
            given = {s: _tensor(v) for s, v in step.state_of(name, case.params[name]).items()}
            if velocity:
                given = {s: -v / rate for s, v in given.items()}
            state = {keys[s]: t for s, t in given.items()}
            if rule != "momentum" and not velocity:
                state["step"] = torch.tensor(float(step.t))  # the steps already taken
            opt.state[p] = state
    opt.step()
    out = {f"{k}_next": _numpy(p, f"{k}_next", case.network.np_dtype) for k, p in params.items()}
    for name, p in params.items():
        for s, key in keys.items():
            value = opt.state[p][key]
            out[f"{s}{name}_next"] = _numpy(-rate * value if velocity else value, f"{s}{name}_next",
                                            case.network.np_dtype)
    return out


def _params(case: Case, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {k: _tensor(v).requires_grad_(requires_grad) for k, v in case.params.items()}


def _data(case: Case, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    return _tensor(case.X[rows]), _tensor(case.Y[rows])


def _grads(case: Case, params: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {f"d{k}": _numpy(p.grad, f"d{k}", case.network.np_dtype) for k, p in params.items()}


# --- conversions -------------------------------------------------------------------------------

def _device(device: str | None) -> torch.device:
    name = (device or "cpu").lower()
    if name == "cpu":
        return torch.device("cpu")
    if name in ("cuda", "gpu") or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: torch sees no GPU on this machine")
        return torch.device("cuda" if name == "gpu" else name)
    raise InputError(f"unknown device {device!r}; known: cpu, cuda (or gpu)")


def _tensor(a: np.ndarray, dev: torch.device | None = None) -> torch.Tensor:
    """A tensor of the same dtype holding a copy of ``a`` (``from_numpy`` never casts; the copy
    means an optimiser step never writes into the case's arrays, and a read-only array is fine)."""
    t = torch.from_numpy(np.array(a, order="C"))
    return t if dev is None else t.to(dev)


def _numpy(t: torch.Tensor | None, name: str, dtype: np.dtype) -> np.ndarray:
    if t is None:
        raise RuntimeError(f"torch reference: autograd produced no gradient for {name}")
    a = t.detach().cpu().numpy().copy()
    if a.dtype != dtype:
        raise TypeError(f"torch reference: {name} came back as {a.dtype}, but the network is {dtype}")
    return a


# --- one layer alone ---------------------------------------------------------------------------

def layer_gradients(linear: bool, activation: str, x: np.ndarray, params: dict[str, np.ndarray],
                    dout: np.ndarray, norm: str = "none", eps: float = 1e-5) -> dict[str, np.ndarray]:
    """One layer ``out = act(x @ W + b)`` (or ``act(x)``) and the gradients of ``(out * dout).sum()``, in float64.

    Returns ``out``, ``dx`` and, for a Linear layer, ``dW`` and ``db``: what a
    user's ``backward(dout, cache)`` must return for that upstream ``dout``. With a ``norm``
    (``batchnorm``, ``layernorm``) the activation reads ``gamma * norm(Z) + beta`` and ``dgamma``,
    ``dbeta`` come back too.
    """
    act = _entry(ACTIVATIONS, "activation", activation)
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float64))  # noqa: E731  (a writable copy)
    with torch.enable_grad():
        X = t(x).requires_grad_()
        p = {k: t(v).requires_grad_() for k, v in params.items()}
        Z = X @ p["W"] + p["b"] if linear else X
        if norm != "none":
            Z = _entry(NORMS, "norm", norm)(Z, eps) * p["gamma"] + p["beta"]
        out = act(Z)
        (out * t(dout)).sum().backward()
    grads = {"out": out, "dx": X.grad, **{f"d{k}": v.grad for k, v in p.items()}}
    return {k: v.detach().numpy() for k, v in grads.items()}
