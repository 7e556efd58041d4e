"""What a derivation is judged against: the engine's float64 trace, and its rounding scale.

The true values are the engine's (itself checked against PyTorch, JAX and
finite differences by ``manual-backprop check``), always in float64, so
that a claim is never judged against a rounded truth. The rounding scale
``E`` is the tolerance policy's (:func:`~manual_backprop.compare.error_scales`)
for the network's own dtype: a derivation done in float32 may carry float32
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checking.overflow import ensure_representable, run_quietly
from ..compare import (
    UNIT_ROUNDOFF,
    error_scales,
    per_sample_error_scales,
    step_error_scales,
    trajectory_error_scales,
)
from ..description.case import Case, as_float64
from ..engine.per_sample import per_sample_from_trace
from ..engine.sgd import next_parameters, trajectory
from ..errors import InputError


@dataclass(frozen=True)
class Truth:
    """The true value and the rounding scale ``E`` of every name a derivation may claim."""

    values: dict[str, np.ndarray]
    E: dict[str, np.ndarray]
    u: float  # unit roundoff of the network's dtype


def true_values(case: Case) -> Truth:
    """Run ``case`` in float64: every named tensor, per-sample gradients and (with a learning rate) the step."""
    case64 = as_float64(case)
    net = case.network
    values = dict(run_quietly(case64))
    with np.errstate(all="ignore"):  # an overflow is reported just below, never warned about
        E = error_scales(net, case64.params, values, case64.T)
    ensure_representable(case64, values, E)  # numbers beyond float64 are the input's fault: exit 2
    with np.errstate(all="ignore"):  # judged below, for the names claimed
        if not net.has_batchnorm:  # batch norm has no per-sample gradients (its samples interact)
            values.update(per_sample_from_trace(case64.network, values))
            E.update(per_sample_error_scales(net, values, E))
        if case.step is not None and case.step.steps > 1:  # after k steps: each step's scales, carried on
            steps = trajectory(case64, trace=values)
            per_step = [step_error_scales(net, start.params, trace, error_scales(net, start.params, trace, start.T),
                                          start.step) for start, trace, _ in steps]
            values.update(steps[-1][2])
            E.update(trajectory_error_scales(per_step))
        elif case.step is not None:
            values.update(next_parameters(case64, trace=values))
            E.update(step_error_scales(net, case64.params, values, E, case64.step))
    for name in case.claimed:  # a per-sample gradient is N times a mean's share: it can leave float64 alone
        if name in values and not (np.isfinite(values[name]).all() and np.isfinite(E[name]).all()):
            raise InputError(f"{case.source}: the true {name} is beyond float64 (its values or their rounding "
                             f"overflow); scale X or the parameters down")
    values = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    return Truth(values, E, UNIT_ROUNDOFF[net.dtype])
