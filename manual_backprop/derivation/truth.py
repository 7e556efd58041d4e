"""What a derivation is judged against: the engine's float64 trace, and its rounding scale.

The true values are the engine's (itself checked against PyTorch, JAX and
finite differences by ``manual-backprop check``), always in float64, so
that a claim is never judged against a rounded truth. The rounding scale
``E`` is the tolerance policy's (:func:`~manual_backprop.compare.error_scales`)
for the network's own dtype: a derivation done in float32 may carry float32
rounding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..case import Case, make_case
from ..compare import UNIT_ROUNDOFF, error_scales
from ..engine import run
from ..per_sample import normalisation, per_sample_from_trace
from ..sgd import next_parameters
from .steps import previous


@dataclass(frozen=True)
class Truth:
    """The true value and the rounding scale ``E`` of every name a derivation may claim."""

    values: dict[str, np.ndarray]
    E: dict[str, np.ndarray]
    u: float  # unit roundoff of the network's dtype


def in_float64(case: Case) -> Case:
    """``case`` with its network, parameters and data in float64 (itself if already so)."""
    if case.network.dtype == "float64":
        return case
    net = dataclasses.replace(case.network, dtype="float64")
    params = {k: v.astype(np.float64) for k, v in case.params.items()}
    Y = case.Y if case.Y.dtype.kind in "iu" else case.Y.astype(np.float64)
    return dataclasses.replace(make_case(net, params, case.X.astype(np.float64), Y, seed=case.seed,
                                         learning_rate=case.learning_rate, source=case.source),
                               claimed=case.claimed, title=case.title)


def true_values(case: Case) -> Truth:
    """Run ``case`` in float64: every named tensor, per-sample gradients and (with a learning rate) the step."""
    case64 = in_float64(case)
    net = case.network
    values = dict(run(case64))
    values.update(per_sample_from_trace(case64.network, values))
    E = error_scales(net, case64.params, values, case64.T)
    u = UNIT_ROUNDOFF[net.dtype]
    inverse_c = round(1 / normalisation(net, case.batch))
    for l in range(1, net.depth + 1):
        A_prev = np.abs(values[previous(l)])
        E_prev = E[previous(l)]
        dZ_ps = np.abs(values[f"dZ{l}"]) * inverse_c
        E_dZ_ps = E[f"dZ{l}"] * inverse_c
        E[f"dW{l}_per_sample"] = (np.einsum("ni,nj->nij", A_prev, E_dZ_ps) + np.einsum("ni,nj->nij", E_prev, dZ_ps)
                                  + u * np.abs(values[f"dW{l}_per_sample"]))
        E[f"db{l}_per_sample"] = E_dZ_ps + u * dZ_ps
    if case.learning_rate is not None:
        lr = case.learning_rate
        values.update(next_parameters(case64, trace=values))
        for l in range(1, net.depth + 1):
            for p in ("W", "b"):
                E[f"{p}{l}_next"] = (lr * E[f"d{p}{l}"]
                                     + u * (np.abs(case64.params[f"{p}{l}"]) + lr * np.abs(values[f"d{p}{l}"])))
    values = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    return Truth(values, E, u)
