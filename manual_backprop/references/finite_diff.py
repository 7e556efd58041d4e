"""The framework-free reference: float64 central differences along random directions.

For a gradient ``G = dL/dT`` of any named tensor T (a parameter, the input, or
an intermediate Z or A), and a random unit direction v::

    <G, v>  ~  (L(T + h v) - L(T - h v)) / 2h

Each direction costs four forward passes (steps h and h/2, combined by
Richardson extrapolation, whose spread also estimates the truncation error),
whatever the size of T: a few random directions check a tensor of hundreds
of thousands of entries as cheaply as a small one. The forward pass is the
engine's, run in float64 (a float32 case is cast explicitly for this
reference only); it differentiates the loss with respect to an intermediate
tensor by adding the perturbation as the tensor is made.

A central difference is meaningless across a ReLU kink (it returns 1/2 of a
slope where the convention says 0 or 1): a direction whose steps change any
ReLU mask is marked ``at_kink`` and not judged.

How far the estimate may be off is reported as magnitudes, never as a
tolerance: the truncation estimate ``|D2 - D1| / 3``, the step ``h``, and the
magnitude of one loss evaluation's rounding *without* the unit roundoff,
``sqrt(n_terms) * (|L| + c sum|l_i|)``. The comparator
(:func:`manual_backprop.compare.compare_projections`) applies the tolerance
policy's u and constants to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..description.case import Case, cast_arrays
from ..description.network import Network
from ..engine.trace import forward
from ..kernels import ACTIVATIONS, LOSSES

#: Random directions per tensor.
DIRECTIONS = 2
#: Step, relative to the root-mean-square size of the tensor (or 1, if larger).
RELATIVE_STEP = 1e-3


@dataclass(frozen=True)
class Projection:
    """One directional derivative: ``<G, direction>`` is estimated as ``estimate``.

    ``truncation`` is the Richardson spread ``|D2 - D1| / 3``; ``rounding`` the
    magnitude of one float64 loss evaluation's rounding, without the factor u
    (``sqrt(n_terms) * (|L| + c sum|l_i|)``); ``step`` the h of the differences.
    """

    direction: np.ndarray
    estimate: float
    truncation: float
    rounding: float
    step: float
    at_kink: bool


def target_of(grad_name: str) -> str:
    """The tensor a gradient is taken with respect to: ``dW2`` -> ``W2``, ``dX`` -> ``X``."""
    return grad_name[1:]


def version() -> str:
    return f"numpy {np.__version__} (float64 central differences)"


def run(case: Case, directions: int = DIRECTIONS, seed: int | None = None,
        device: str | None = None) -> dict[str, list[Projection]]:
    """Directional derivatives of the loss for every backward tensor of ``case``."""
    net = case.network
    net64 = Network(net.sizes, net.activations, net.loss, net.reduction, "float64")
    params, X, Y, T = cast_arrays(case, np.float64)
    base = forward(net64, params, X, Y, T)
    relu_layers = [l for l, a in enumerate(net.activations, start=1) if ACTIVATIONS[a].kink is not None]
    masks = {l: base[f"Z{l}"] > 0 for l in relu_layers}

    def loss_at(name: str, delta: np.ndarray) -> tuple[float, bool]:
        tr = forward(net64, params, X, Y, T, {name: delta}, reuse=base)
        crossed = any(not np.array_equal(tr[f"Z{l}"] > 0, masks[l]) for l in relu_layers)
        return float(tr["L"]), crossed

    Z_L, A_L = base[f"Z{net.depth}"], base[f"A{net.depth}"]
    loss = LOSSES[net.loss]
    c = loss.scale(*Z_L.shape, net.reduction)
    magnitude = abs(float(base["L"])) + c * float(np.abs(loss.terms(Z_L, A_L, T)).sum())
    n_terms = Z_L.size + sum(net.sizes)
    rounding = float(np.sqrt(n_terms) * magnitude)  # one evaluation's rounding is about u times this

    rng = np.random.default_rng([case.seed if seed is None else seed, 2])
    out: dict[str, list[Projection]] = {}
    for grad_name in net.backward_names():
        target = target_of(grad_name)
        value = params[target] if target in params else (X if target == "X" else base[target])
        h = RELATIVE_STEP * max(1.0, _rms(value))
        projections = []
        for _ in range(directions):
            v = rng.standard_normal(value.shape)
            v /= np.linalg.norm(v)
            (fp, k1), (fm, k2) = loss_at(target, h * v), loss_at(target, -h * v)
            (gp, k3), (gm, k4) = loss_at(target, 0.5 * h * v), loss_at(target, -0.5 * h * v)
            D1 = (fp - fm) / (2 * h)
            D2 = (gp - gm) / h
            estimate = (4 * D2 - D1) / 3
            projections.append(Projection(v, estimate, abs(D2 - D1) / 3, rounding, h, k1 or k2 or k3 or k4))
        out[grad_name] = projections
    return out


def _rms(a: np.ndarray) -> float:
    """Root-mean-square size, scaled first so that squaring values near the float maximum does not overflow."""
    m = float(np.abs(a).max()) if a.size else 0.0
    return m * float(np.sqrt(np.mean((a / m) ** 2))) if m > 0 else 0.0
