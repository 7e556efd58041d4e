"""Gradient accumulation over micro-batches: why backprop writes ``dW += ...``.

A batch's loss is a sum over its samples, and the gradient of a sum is the
sum of the gradients. Cut the batch into micro-batches B_1, ..., B_m and run
the backward once per micro-batch, *adding* each ``dWl``, ``dbl`` into the
same buffers (torch does the same to ``.grad`` on every ``backward()``)::

    "sum":   L = sum_i l_i = sum_j L_j                  ->  sum_j dL_j = dL        exactly
    "mean":  L = (1/N) sum_i l_i,  L_j = (1/n_j) sum_{i in B_j} l_i
                                                        ->  sum_j dL_j = (N/n) dL  for equal n_j = n

so under "mean" the buffers hold ``m = N/n`` times the full-batch gradient
(divide by the number of micro-batches, or scale each micro-batch's loss by
``n_j/N``, which is right for unequal sizes too). Overwriting with ``=``
instead of ``+=`` would keep only the last micro-batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..description.case import Case
from ..description.network import Network
from ..errors import InputError
from ..kernels.regularization import l2_gradient
from .per_sample import normalisation
from .trace import backward, forward


def micro_batches(N: int, size: int) -> list[slice]:
    """Consecutive slices of ``size`` rows covering 0..N (the last may be shorter)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"micro-batch size must be a positive integer, got {size!r}")
    return [slice(start, min(start + size, N)) for start in range(0, N, size)]


def accumulate(
    case: Case, size: int, buffers: dict[str, np.ndarray] | None = None, network: Network | None = None
) -> dict[str, np.ndarray]:
    """Run forward and backward on each micro-batch of ``size`` rows, ``+=`` into ``buffers``.

    Each micro-batch's loss uses ``network``'s reduction (``case.network`` by
    default) over its own rows, exactly as ``loss_j.backward()`` does in torch.
    Returns the buffers, in the order backprop first made them: ``dWL, dbL, ..., dW1, db1``.
    """
    network = network or case.network
    buffers = {} if buffers is None else buffers
    T = case.T
    for rows in micro_batches(case.batch, size):
        fwd = forward(network, case.params, case.X[rows], case.Y[rows], T[rows])
        backward(network, case.params, fwd, T[rows], accumulate_into=buffers)
    return buffers


def full_batch_gradient(case: Case, size: int) -> dict[str, np.ndarray]:
    """The full-batch ``dWl``, ``dbl`` of ``case``, accumulated over micro-batches of ``size`` rows.

    Right for any micro-batch sizes and either reduction: every micro-batch is
    run under "sum" (its gradient is ``sum_{i in B_j} d l_i``), the sums are
    accumulated with ``+=``, and the normalisation ``c`` of the whole batch
    (1, 1/N or 1/(N*K)) is applied once at the end.
    """
    net = case.network
    summed = dataclasses.replace(net, reduction="sum", l2=0.0)  # the data term; the L2 term once, below
    buffers = accumulate(case, size, network=summed)
    c = normalisation(net, case.batch)
    grads = buffers if c == 1.0 else {name: g * g.dtype.type(c) for name, g in buffers.items()}
    if net.regularized:
        for name in net.l2_names():
            grads[f"d{name}"] = grads[f"d{name}"] + l2_gradient(case.params[name], net.l2, net.l2_convention)
    return grads

