"""Optimiser steps: one parameter array ``W``, its gradient ``g``, the optimiser's state; pure functions.

Each step returns the new parameter and the new state as new arrays (nothing
is updated in place), in the dtype of ``W``; constants are cast to it. With
``t`` the number of steps already taken (Adam's counter)::

    sgd        W' = W - lr g
    momentum   form "buffer" (torch.optim.SGD(momentum=mu)):  v' = mu v + g,          W' = W - lr v'
               form "velocity" (the course's):                v' = mu v - lr g,       W' = W + v'
    rmsprop    v' = rho v + (1 - rho) g**2,   W' = W - lr g / (sqrt(v') + eps)      (torch.optim.RMSprop)
    adam       t' = t + 1,  m' = b1 m + (1 - b1) g,  v' = b2 v + (1 - b2) g**2,
               W' = W - lr (m' / (1 - b1**t')) / (sqrt(v' / (1 - b2**t')) + eps)   (torch.optim.Adam)

The two momentum forms are the same trajectory with ``v_velocity = -lr v_buffer``
while ``lr`` stays fixed; they differ in what the state holds (and so in what a
student writes down as ``vW1``). Adam's counter is incremented *before* the bias
correction: the first step divides by ``1 - b1`` and ``1 - b2``, as torch does.

:data:`OPTIMIZERS` is the registry the file's ``[optimizer]`` table, the engine
and the references read: each optimiser's constants with torch's defaults, the
state it keeps, and the formula as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

State = dict[str, np.ndarray]


def sgd_update(W: np.ndarray, g: np.ndarray, state: Mapping[str, np.ndarray], lr: float,
               t: int = 0) -> tuple[np.ndarray, State]:
    """``W' = W - lr g``; no state. W and g of one shape."""
    return sgd_step(W, g, {}, lr), {}


def sgd_step(W, g, new: Mapping[str, np.ndarray], lr: float, t: int = 0) -> np.ndarray:
    """``W' = W - lr g``."""
    return W - W.dtype.type(lr) * g


# Each optimiser below is two kernels, its state's update and its parameter's, and their composition
# ``*_update(W, g, state, lr, ...) -> (W', state')``: a derivation writes the state first, then the step.

def momentum_buffer_state(W, g, state: Mapping[str, np.ndarray], momentum: float = 0.9) -> State:
    """torch's buffer: ``v' = mu v + g``."""
    return {"v": W.dtype.type(momentum) * _state(state, "v", W) + g}


def momentum_buffer_step(W, g, new: Mapping[str, np.ndarray], lr: float, momentum: float = 0.9,
                         t: int = 0) -> np.ndarray:
    """``W' = W - lr v'``."""
    return W - W.dtype.type(lr) * new["v"]


def momentum_buffer_update(W: np.ndarray, g: np.ndarray, state: Mapping[str, np.ndarray], lr: float,
                           momentum: float = 0.9, t: int = 0) -> tuple[np.ndarray, State]:
    """torch's form: ``v' = mu v + g``, ``W' = W - lr v'``; state ``v`` of W's shape (zeros to start)."""
    new = momentum_buffer_state(W, g, state, momentum)
    return momentum_buffer_step(W, g, new, lr), new


def momentum_velocity_state(W, g, state: Mapping[str, np.ndarray], lr: float, momentum: float = 0.9) -> State:
    """The course's velocity: ``v' = mu v - lr g``."""
    c = W.dtype.type
    return {"v": c(momentum) * _state(state, "v", W) - c(lr) * g}


def momentum_velocity_step(W, g, new: Mapping[str, np.ndarray], lr: float, momentum: float = 0.9,
                           t: int = 0) -> np.ndarray:
    """``W' = W + v'``."""
    return W + new["v"]


def momentum_velocity_update(W: np.ndarray, g: np.ndarray, state: Mapping[str, np.ndarray], lr: float,
                             momentum: float = 0.9, t: int = 0) -> tuple[np.ndarray, State]:
    """The course's form: ``v' = mu v - lr g``, ``W' = W + v'``; state ``v`` of W's shape (zeros to start)."""
    new = momentum_velocity_state(W, g, state, lr, momentum)
    return momentum_velocity_step(W, g, new, lr), new


def rmsprop_state(W, g, state: Mapping[str, np.ndarray], decay: float = 0.99, eps: float = 1e-8) -> State:
    """The mean square: ``v' = rho v + (1 - rho) g**2``."""
    c = W.dtype.type
    return {"v": c(decay) * _state(state, "v", W) + c(1 - decay) * (g * g)}


def rmsprop_step(W, g, new: Mapping[str, np.ndarray], lr: float, decay: float = 0.99, eps: float = 1e-8,
                 t: int = 0) -> np.ndarray:
    """``W' = W - lr g / (sqrt(v') + eps)``."""
    c = W.dtype.type
    return W - c(lr) * g / (np.sqrt(new["v"]) + c(eps))


def rmsprop_update(W: np.ndarray, g: np.ndarray, state: Mapping[str, np.ndarray], lr: float,
                   decay: float = 0.99, eps: float = 1e-8, t: int = 0) -> tuple[np.ndarray, State]:
    """``v' = rho v + (1 - rho) g**2``, ``W' = W - lr g / (sqrt(v') + eps)``; state ``v`` (the mean square)."""
    new = rmsprop_state(W, g, state, decay, eps)
    return rmsprop_step(W, g, new, lr, decay, eps), new


def adam_state(W, g, state: Mapping[str, np.ndarray], beta1: float = 0.9, beta2: float = 0.999,
               eps: float = 1e-8) -> State:
    """The moments: ``m' = b1 m + (1 - b1) g``, ``v' = b2 v + (1 - b2) g**2``."""
    c = W.dtype.type
    return {"m": c(beta1) * _state(state, "m", W) + c(1 - beta1) * g,
            "v": c(beta2) * _state(state, "v", W) + c(1 - beta2) * (g * g)}


def adam_step(W, g, new: Mapping[str, np.ndarray], lr: float, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8, t: int = 0) -> np.ndarray:
    """With ``t' = t + 1``: ``W' = W - lr (m' / (1 - b1**t')) / (sqrt(v' / (1 - b2**t')) + eps)``."""
    c = W.dtype.type
    step = t + 1
    m_hat = new["m"] / c(1 - beta1 ** step)
    v_hat = new["v"] / c(1 - beta2 ** step)
    return W - c(lr) * m_hat / (np.sqrt(v_hat) + c(eps))


def adam_update(W: np.ndarray, g: np.ndarray, state: Mapping[str, np.ndarray], lr: float,
                beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                t: int = 0) -> tuple[np.ndarray, State]:
    """Adam after ``t`` steps already taken: the moments ``m``, ``v`` and the step with ``t + 1``.

    ``m' = b1 m + (1 - b1) g``, ``v' = b2 v + (1 - b2) g**2``, then with
    ``t' = t + 1`` the bias corrections ``1 - b1**t'`` and ``1 - b2**t'``:
    ``W' = W - lr (m' / (1 - b1**t')) / (sqrt(v' / (1 - b2**t')) + eps)``.
    """
    new = adam_state(W, g, state, beta1, beta2, eps)
    return adam_step(W, g, new, lr, beta1, beta2, eps, t), new


def _state(state: Mapping[str, np.ndarray], name: str, W: np.ndarray) -> np.ndarray:
    """The state array ``name``, zeros of W's shape and dtype when the optimiser has not stepped yet."""
    value = state.get(name)
    return np.zeros_like(W) if value is None else value


@dataclass(frozen=True)
class Optimizer:
    """One optimiser: its update, its constants (torch's defaults), the state it keeps, its formula."""

    name: str
    update: Callable[..., tuple[np.ndarray, State]]
    constants: dict[str, float]
    state: tuple[str, ...]
    formula: str
    counts_steps: bool = False  # reads t, the steps already taken (Adam's bias correction)
    #: The two halves of ``update``: ``new_state(W, g, state, [lr,] **constants)`` and
    #: ``step(W, g, new_state, lr, t=t, **constants) -> W'`` (None for sgd's state: it keeps none).
    new_state: Callable[..., State] | None = None
    step: Callable[..., np.ndarray] | None = None
    state_reads_lr: bool = False  # the velocity form scales g by lr in its state


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer("sgd", sgd_update, {}, (), "W' = W - lr·dW", step=sgd_step),
    "momentum": Optimizer("momentum", momentum_buffer_update, {"momentum": 0.9}, ("v",),
                          "v' = μ·v + dW, W' = W - lr·v'  (torch.optim.SGD's buffer)",
                          new_state=momentum_buffer_state, step=momentum_buffer_step),
    "momentum_velocity": Optimizer("momentum_velocity", momentum_velocity_update, {"momentum": 0.9}, ("v",),
                                   "v' = μ·v - lr·dW, W' = W + v'  (the course's velocity)",
                                   new_state=momentum_velocity_state, step=momentum_velocity_step,
                                   state_reads_lr=True),
    "rmsprop": Optimizer("rmsprop", rmsprop_update, {"decay": 0.99, "eps": 1e-8}, ("v",),
                         "v' = ρ·v + (1-ρ)·dW², W' = W - lr·dW / (√v' + ε)",
                         new_state=rmsprop_state, step=rmsprop_step),
    "adam": Optimizer("adam", adam_update, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, ("m", "v"),
                      "m' = β1·m + (1-β1)·dW, v' = β2·v + (1-β2)·dW², t' = t + 1, "
                      "W' = W - lr·(m'/(1-β1^t')) / (√(v'/(1-β2^t')) + ε)", counts_steps=True,
                      new_state=adam_state, step=adam_step),
}
