"""One plain gradient-descent step, the last line of seed 003::

    Wl_next = Wl - lr * dWl          bl_next = bl - lr * dbl

No momentum, no weight decay: what ``torch.optim.SGD(params, lr)`` does on
its first step, and what the file's ``[sgd] learning_rate`` (or ``--lr``) asks for.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..description.case import Case
from ..description.network import Network
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
    """``W1_next, b1_next, ..., WL_next, bL_next`` after one step on the whole batch of ``case``.

    ``lr`` defaults to the file's ``[sgd] learning_rate``; ``trace`` is the
    case's :func:`~manual_backprop.engine.run` if already at hand.
    """
    if lr is None:
        lr = case.learning_rate
    if lr is None:
        raise InputError(f"{case.source}: no learning rate: give [sgd] learning_rate or --lr")
    trace = trace if trace is not None else run(case)
    new = sgd_step(case.network, case.params, trace, lr)
    return {f"{name}_next": value for name, value in new.items()}
