"""One optimiser step on the batch gradient. The plain one is the last line of seed 003::

    Wl_next = Wl - lr * dWl          bl_next = bl - lr * dbl

what ``torch.optim.SGD(params, lr)`` does, and what the file's ``[sgd] learning_rate``
(or ``--lr``) asks for; ``[optimizer]`` asks for momentum, RMSProp or Adam from a given
state (:mod:`manual_backprop.description.optimizer`, the rules in
:mod:`manual_backprop.kernels.optimizers`).
"""

from __future__ import annotations

import dataclasses

from typing import Mapping

import numpy as np

from ..description.case import Case
from ..description.network import Network
from ..description.optimizer import sgd
from ..errors import InputError
from .trace import Trace, run


def check_learning_rate(lr: object, where: str = "learning rate") -> float:
    """A positive finite float, or an InputError."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise InputError(f"{where} must be a positive number, got {lr!r}")
    if not np.isfinite(lr) or lr <= 0:
        raise InputError(f"{where} must be a positive finite number, got {lr!r}")
    return float(lr)


def sgd_step(
    network: Network, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], lr: float
) -> dict[str, np.ndarray]:
    """``{"W1": W1 - lr*dW1, "b1": b1 - lr*db1, ...}``: new arrays, in the parameters' dtype."""
    lr = check_learning_rate(lr)
    new = {}
    for name in network.parameter_shapes():
        p = params[name]
        new[name] = p - p.dtype.type(lr) * grads[f"d{name}"]
    return new


def next_parameters(case: Case, lr: float | None = None, trace: Trace | None = None) -> dict[str, np.ndarray]:
    """``W1_next, b1_next, ..., WL_next, bL_next`` after one step on the whole batch of ``case``, and the
    optimiser's new state (``vW1_next, ...``, ``mW1_next, ...``).

    ``lr`` (``--lr``) asks for the plain step at that rate; without it the case's own step is taken
    (:attr:`Case.step <manual_backprop.description.case.Case.step>`: ``[optimizer]``, else ``[sgd]``).
    ``trace`` is the case's :func:`~manual_backprop.engine.run` if already at hand. Each update is the
    registry's kernel (:mod:`manual_backprop.kernels.optimizers`), parameter by parameter.
    """
    step = sgd(check_learning_rate(lr)) if lr is not None else case.step
    if step is None:
        raise InputError(f"{case.source}: no learning rate: give [sgd] learning_rate, [optimizer] or --lr")
    if step.steps > 1:
        return trajectory(case, trace)[-1][2]
    trace = trace if trace is not None else run(case)
    return _one_step(case, step, trace)


def trajectory(case: Case, trace: Trace | None = None, *, first: Mapping[str, np.ndarray] | None = None,
               accumulate: bool = False) -> list[tuple[Case, Trace, dict[str, np.ndarray]]]:
    """``steps = k``: k full steps on the case's batch, each ``(the case it started from, its trace, its
    results)``; step j + 1 starts from step j's parameters and state (and Adam's ``t`` one higher).

    ``first`` replaces step 1's gradients (``dW1, db1, ...``: a derivation's own, to follow where they
    lead). ``accumulate`` steps with the gradients summed over the steps so far, ``G_j = g_1 + ... + g_j``:
    what a loop without ``optimizer.zero_grad()`` does, as ``.grad`` keeps adding up.
    """
    start = case.step
    case = dataclasses.replace(case, optimizer=dataclasses.replace(start, steps=1), learning_rate=None)
    names = list(case.network.parameter_shapes())
    out: list[tuple[Case, Trace, dict[str, np.ndarray]]] = []
    summed: dict[str, np.ndarray] = {}
    for j in range(start.steps):
        trace = trace if trace is not None and j == 0 else run(case)
        grads = {f"d{n}": (first if first is not None and j == 0 else trace)[f"d{n}"] for n in names}
        if accumulate:
            summed = {g: summed[g] + grads[g] if summed else grads[g] for g in grads}
            grads = summed
        results = _one_step(case, case.step, grads)
        out.append((case, trace, results))
        params = {name: results[f"{name}_next"] for name in case.params}
        state = {f"{s}{name}": results[f"{s}{name}_next"] for s in start.optimizer.state for name in case.params}
        case = dataclasses.replace(case, params=params, optimizer=dataclasses.replace(
            case.step, t=start.t + j + 1, state=state))
    return out


def _one_step(case: Case, step, grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    new_state: dict[str, dict[str, np.ndarray]] = {s: {} for s in step.optimizer.state}
    for name in case.network.parameter_shapes():
        P = case.params[name]
        P_next, state = step.optimizer.update(P, grads[f"d{name}"], step.state_of(name, P), step.learning_rate,
                                              t=step.t, **step.constants)
        out[f"{name}_next"] = P_next
        for s, value in state.items():
            new_state[s][f"{s}{name}_next"] = value
    for per_parameter in new_state.values():  # vW1_next, vb1_next, ..., then mW1_next, ... (the names' order)
        out.update(per_parameter)
    return out
