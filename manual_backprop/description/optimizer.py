"""The optimiser step a case asks for: which update rule, its learning rate and constants, and its state.

A file says it with ``[optimizer]`` (and optionally ``[state]``)::

    [optimizer]
    name = "adam"           # sgd | momentum | rmsprop | adam
    learning_rate = 0.001
    beta1 = 0.9             # each optimiser's constants, torch's defaults when left out
    t = 0                   # adam: the steps already taken (its bias correction uses t + 1)
    steps = 1               # k full steps (forward, backward, update); check compares every one

    [state]                 # optional, zeros when absent: vW1, vb1 (momentum, rmsprop), mW1 and vW1 (adam)
    mW1 = [[0.0, 0.0], ...]

``momentum`` takes ``form = "buffer"`` (torch.optim.SGD's ``b = μb + g; W -= lr·b``,
the default) or ``"velocity"`` (the course's ``v = μv − lr·g; W += v``). ``[sgd]
learning_rate`` stays the shorthand for one plain step. The update rules themselves
are the kernels' (:mod:`manual_backprop.kernels.optimizers`); the step adds
``Wl_next``, ``bl_next`` and the new state (``vWl_next``, ``mWl_next``, ...) to what
a run makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from ..kernels import OPTIMIZERS, Optimizer
from .network import Network

#: The names a file uses, and the registry key each means (momentum's form decides its key).
NAMES = ("sgd", "momentum", "rmsprop", "adam")
MOMENTUM_FORMS = {"buffer": "momentum", "velocity": "momentum_velocity"}
#: The most steps a file may ask for (each is a full forward, backward and update, checked).
MAX_STEPS = 1000
#: Where each constant must lie.
RANGES = {"momentum": (0.0, 1.0, "0 <= momentum < 1"), "decay": (0.0, 1.0, "0 <= decay < 1"),
          "beta1": (0.0, 1.0, "0 <= beta1 < 1"), "beta2": (0.0, 1.0, "0 <= beta2 < 1"),
          "eps": (0.0, math.inf, "eps > 0")}


@dataclass(frozen=True)
class OptimizerStep:
    """One step of an optimiser: ``rule`` (a key of :data:`~manual_backprop.kernels.OPTIMIZERS`), the
    learning rate, every constant (defaults filled in), ``t`` the steps already taken, and the state
    arrays by name (``vW1``, ``mW1``, ...; a missing one is zeros)."""

    rule: str
    learning_rate: float
    constants: dict[str, float] = field(default_factory=dict)
    t: int = 0
    state: dict[str, np.ndarray] = field(default_factory=dict)
    #: ``steps = k``: k full steps (forward, backward, update) on the case's batch; ``Wl_next`` is after the last.
    steps: int = 1

    @property
    def optimizer(self) -> Optimizer:
        return OPTIMIZERS[self.rule]

    def state_of(self, param: str, like: np.ndarray) -> dict[str, np.ndarray]:
        """The optimiser's state for parameter ``param`` (``{"v": vW1}``), zeros where none was given."""
        return {s: self.state.get(f"{s}{param}", np.zeros_like(like)) for s in self.optimizer.state}

    def describe(self) -> str:
        """``adam (lr 0.001, beta1 0.9, beta2 0.999, eps 1e-08, t 0)``."""
        parts = [f"lr {self.learning_rate:g}"] + [f"{k} {v:g}" for k, v in self.constants.items()]
        if self.optimizer.counts_steps:
            parts.append(f"t {self.t}")
        return f"{self.rule} ({', '.join(parts)})"


def sgd(learning_rate: float) -> OptimizerStep:
    """The plain step ``W - lr·dW`` (``[sgd]``, ``--lr``)."""
    return OptimizerStep("sgd", float(learning_rate))


def state_names(network: Network, rule: str) -> list[str]:
    """``vW1, vb1, ...`` (and ``mW1, ...``): the state ``rule`` keeps for each parameter of ``network``."""
    return [f"{s}{p}" for s in OPTIMIZERS[rule].state for p in network.parameter_shapes()]


def make_optimizer(table: Mapping[str, Any], state: Mapping[str, Any], network: Network,
                   where: str) -> OptimizerStep:
    """An :class:`OptimizerStep` from the ``[optimizer]`` table and the ``[state]`` values, their names checked
    (:func:`~manual_backprop.description.case.make_case` checks the arrays as it checks parameters)."""
    table = dict(table)
    name = table.pop("name", None)
    if name not in NAMES:
        raise InputError(f"{where}[optimizer] name must be one of {', '.join(NAMES)}, got {name!r}")
    rule = name
    if name == "momentum":
        form = table.pop("form", "buffer")
        if form not in MOMENTUM_FORMS:
            raise InputError(f"{where}[optimizer] form must be \"buffer\" (torch: b = μb + g, W -= lr·b) or "
                             f"\"velocity\" (the course: v = μv - lr·g, W += v), got {form!r}")
        rule = MOMENTUM_FORMS[form]
    opt = OPTIMIZERS[rule]
    if "learning_rate" not in table:
        raise InputError(f"{where}[optimizer] is missing 'learning_rate'")
    lr = table.pop("learning_rate")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise InputError(f"{where}[optimizer] learning_rate must be a positive number, got {lr!r}")
    has_t = "t" in table
    t = table.pop("t", 0)
    if has_t and not opt.counts_steps:
        raise InputError(f"{where}[optimizer] t (the steps already taken) is Adam's; {name} has no step count")
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise InputError(f"{where}[optimizer] t must be an integer >= 0 (the steps already taken), got {t!r}")
    k = table.pop("steps", 1)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_STEPS:
        raise InputError(f"{where}[optimizer] steps must be an integer from 1 to {MAX_STEPS}, got {k!r}")
    constants = dict(opt.constants)
    for key, value in table.items():
        if key not in opt.constants:
            known = ", ".join(["name", "learning_rate", "steps", *opt.constants, *(["t"] if opt.counts_steps else []),
                               *(["form"] if name == "momentum" else [])])
            raise InputError(f"{where}unknown key {key!r} in [optimizer] for {name}; allowed: {known}")
        low, high, words = RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value < high) \
                or (key == "eps" and value <= 0):
            raise InputError(f"{where}[optimizer] {key} must satisfy {words}, got {value!r}")
        constants[key] = float(value)
    shapes = network.parameter_shapes()
    arrays = {}
    for key, value in dict(state).items():
        s, param = key[:1], key[1:]
        if s not in opt.state or param not in shapes:
            expected = ", ".join(state_names(network, rule)) or "none"
            raise InputError(f"{where}[state] has unknown name {key!r}; {name} keeps {expected}")
        arrays[key] = value
    return OptimizerStep(rule, float(lr), constants, int(t), arrays, int(k))
