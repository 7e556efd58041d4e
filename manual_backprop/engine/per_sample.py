"""Per-sample gradients: the gradient of each sample's own loss term, all at once.

Every loss here is ``L = c * sum_i l_i`` (:mod:`manual_backprop.kernels.losses`): ``l_i`` is
sample i's own term *before* the reduction's normalisation ``c``, which is
1 for "sum", 1/N for half_mse and softmax_cross_entropy under "mean", and
1/(N*K) for mse and bce under "mean" (as torch's ``MSELoss`` and
``BCEWithLogitsLoss`` divide by every element). So ``dWl_per_sample[i]`` is
``d l_i / dWl``, and for every reduction::

    dWl = c * sum_i dWl_per_sample[i]          dbl = c * sum_i dbl_per_sample[i]

Why one batch backward is enough: row i of every ``dZl`` depends only on
sample i (each layer acts on rows independently, and the loss is a sum over
rows), and the backward is linear in the upstream gradient. So the batch
``dZl`` divided by ``c`` is, row by row, the ``dZl`` of ``l_i`` alone::

    dZl_ps = dZl / c                                    (N, n_l)
    dWl_per_sample[i] = outer(A(l-1)[i], dZl_ps[i])     (N, n_{l-1}, n_l)
    dbl_per_sample[i] = dZl_ps[i]                       (N, n_l)

which is the "X^T delta" rule with the sum over samples left out. ``1/c``
is the integer 1, N or N*K, so the division is an exact multiplication.
No loop over samples: the outer products are one ``einsum``.
"""

from __future__ import annotations

import numpy as np

from ..description.case import Case
from ..description.network import Network
from ..errors import InputError
from ..kernels import LOSSES
from .trace import Trace, run


def normalisation(network: Network, N: int) -> float:
    """``c`` in ``L = c * sum_i l_i``: 1, 1/N or 1/(N*K)."""
    return LOSSES[network.loss].scale(N, network.sizes[-1], network.reduction)


def per_sample_dZ(network: Network, trace: Trace, l: int) -> np.ndarray:
    """``dZl / c``: row i is ``d l_i / dZl[i]``, (N, n_l)."""
    dZ = trace[f"dZ{l}"]
    inverse_c = round(1 / normalisation(network, dZ.shape[0]))  # 1, N or N*K: an exact integer
    return dZ * dZ.dtype.type(inverse_c)


def refuse_batchnorm(network: Network) -> None:
    """An :class:`InputError` for a network with batch norm: its per-sample gradients are not defined.

    Batch norm's mean and variance are taken over the batch, so each sample's output depends on every
    other sample: ``L`` is not a sum of terms ``l_i`` of sample i alone, and "the gradient of sample i's
    own term" has no meaning (row i of ``dZl`` mixes every sample). Layer norm's statistics are each
    sample's own, so its per-sample gradients are defined and computed as for any other layer.
    """
    if network.has_batchnorm:
        layers = ", ".join(str(l) for l in range(1, network.depth + 1) if network.norm(l) == "batchnorm")
        raise InputError(f"per-sample gradients are not defined with batch norm (layer {layers}): its mean and "
                         f"variance are taken over the batch, so every sample's loss depends on every other "
                         f"sample; drop --per-sample, or use layernorm (per sample)")


def per_sample_from_trace(network: Network, trace: Trace) -> dict[str, np.ndarray]:
    """``dW1_per_sample, db1_per_sample, ..., dWL_per_sample, dbL_per_sample`` from a run's trace
    (refused with batch norm: :func:`refuse_batchnorm`)."""
    refuse_batchnorm(network)
    out: dict[str, np.ndarray] = {}
    for l in range(1, network.depth + 1):
        A_prev = trace[f"A{l - 1}"] if l > 1 else trace["X"]            # (N, n_{l-1})
        dZ_ps = per_sample_dZ(network, trace, l)                         # (N, n_l)
        out[f"dW{l}_per_sample"] = np.einsum("ni,nj->nij", A_prev, dZ_ps)  # (N, n_{l-1}, n_l)
        out[f"db{l}_per_sample"] = dZ_ps
    return out


def per_sample_gradients(case: Case, trace: Trace | None = None) -> dict[str, np.ndarray]:
    """The per-sample gradients of ``case``, named as ``case.network.extra_names()`` names them.

    ``trace`` is the case's :func:`~manual_backprop.engine.run` if already at hand.
    """
    return per_sample_from_trace(case.network, trace if trace is not None else run(case))


def reduce_per_sample(network: Network, per_sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``dWl = c * sum_i dWl_per_sample[i]``, ``dbl`` likewise: back to the batch gradient."""
    N = per_sample["db1_per_sample"].shape[0]
    c = normalisation(network, N)
    out = {}
    for l in range(1, network.depth + 1):
        for p in ("W", "b"):
            g = per_sample[f"d{p}{l}_per_sample"]
            out[f"d{p}{l}"] = g.sum(axis=0) * g.dtype.type(c)
        # (sum first, then scale once: the order torch's mean reduction uses too)
    return out


def per_sample_rows(network: Network, trace: Trace) -> list[dict[str, np.ndarray]]:
    """One dict per sample, for a table like seed 000's: every backward name, as sample i alone sees it.

    Row i holds ``dX``, ``dAl``, ``dZl`` (the i-th rows of the batch tensors divided by
    ``c``) and ``dWl``, ``dbl`` (``dWl_per_sample[i]``, ``dbl_per_sample[i]``), in backward
    order: the gradients sample i's own term ``l_i`` would have if it were the whole loss.
    """
    N = trace["X"].shape[0]
    inverse_c = round(1 / normalisation(network, N))
    per_sample = per_sample_from_trace(network, trace)
    rows: list[dict[str, np.ndarray]] = [{} for _ in range(N)]
    for name in network.backward_names():
        if name.startswith(("dgamma", "dbeta")):  # layer norm's: sample i's own rows of dS * N and dS
            l = name.removeprefix("dgamma").removeprefix("dbeta")
            dS = trace[f"dS{l}"] * trace[f"dS{l}"].dtype.type(inverse_c)
            full = dS * trace[f"N{l}"] if name.startswith("dgamma") else dS
        elif name.startswith(("dW", "db")):
            full = per_sample[f"{name}_per_sample"]
        else:
            full = trace[name] * trace[name].dtype.type(inverse_c)
        for i in range(N):
            rows[i][name] = full[i]
    return rows
