"""JAX references for what comes after one batch gradient.

* per-sample gradients ``dWl_per_sample``, ``dbl_per_sample`` with
  ``jax.vmap(jax.grad(l_i))``;
* gradient accumulation over micro-batches: a plain sum of ``jax.grad`` results
  (JAX keeps no ``.grad`` buffers; the sum is what ``+=`` computes);
* one plain descent step ``p - lr * g`` over the parameter tree: ``Wl_next``, ``bl_next``.

Same maths as the NumPy engine in jax ops: ``Z = A @ W + b``, ``jax.nn.relu``
(derivative 0 at the kink), bce and softmax cross-entropy from the logits via
``jax.nn.log_sigmoid`` and ``jax.nn.log_softmax``. float64 is switched on
deliberately at import, so a float64 case stays float64 (JAX's default would
silently compute in float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..description.case import Case
from ..description.network import Network
from .jax_ref import (
    ACTIVATIONS,  # one table per framework; softmax over the last axis, so it serves one row (vmap) too
)

jax.config.update("jax_enable_x64", True)


def version() -> str:
    return f"jax {jax.__version__}"


def _params(case: Case) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in case.params.items()}


def forward(network: Network, params: dict[str, jax.Array], X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(ZL, AL)`` for a batch X of rows."""
    A = X
    for l, act in enumerate(network.activations, start=1):
        Z = A @ params[f"W{l}"] + params[f"b{l}"]
        A = ACTIVATIONS[act](Z)
    return Z, A


def terms_sum(network: Network, Z: jax.Array, A: jax.Array, T: jax.Array) -> jax.Array:
    """``sum_i l_i``: the per-sample terms of PRODUCT.md's table, summed, no normalisation."""
    if network.loss == "half_mse":
        return 0.5 * jnp.sum((A - T) ** 2)
    if network.loss == "mse":
        return jnp.sum((A - T) ** 2)
    if network.loss == "bce":
        return -jnp.sum(T * jax.nn.log_sigmoid(Z) + (1 - T) * jax.nn.log_sigmoid(-Z))
    if network.loss == "softmax_cross_entropy":
        return -jnp.sum(T * jax.nn.log_softmax(Z, axis=-1))
    raise ValueError(f"unknown loss {network.loss!r}")


def loss(network: Network, params: dict[str, jax.Array], X: jax.Array, T: jax.Array) -> jax.Array:
    """The batch loss with the network's reduction: ``sum_i l_i`` times 1, 1/N or 1/(N*K)."""
    Z, A = forward(network, params, X)
    total = terms_sum(network, Z, A, T)
    if network.reduction == "sum":
        return total
    N, K = Z.shape
    return total / (N * K) if network.loss in ("mse", "bce") else total / N


def _data(case: Case, rows: slice = slice(None)) -> tuple[jax.Array, jax.Array]:
    return jnp.asarray(case.X[rows]), jnp.asarray(case.T[rows])


def per_sample_gradients(case: Case) -> dict[str, np.ndarray]:
    """``dWl_per_sample`` (N, n_{l-1}, n_l), ``dbl_per_sample`` (N, n_l): ``d l_i / dWl`` for every i."""
    net = case.network

    def l_i(params: dict[str, jax.Array], x: jax.Array, t: jax.Array) -> jax.Array:
        Z, A = forward(net, params, x[None])                   # one sample as a batch of one row
        return terms_sum(net, Z, A, t[None])

    g = jax.vmap(jax.grad(l_i), in_axes=(None, 0, 0))(_params(case), *_data(case))
    out = {}
    for l in range(1, net.depth + 1):
        out[f"dW{l}_per_sample"] = np.asarray(g[f"W{l}"])
        out[f"db{l}_per_sample"] = np.asarray(g[f"b{l}"])
    return out


def _grad(case: Case, params: dict[str, jax.Array], rows: slice = slice(None)) -> dict[str, jax.Array]:
    return jax.grad(lambda p: loss(case.network, p, *_data(case, rows)))(params)


def gradients(case: Case) -> dict[str, np.ndarray]:
    """The batch ``dWl``, ``dbl``."""
    g = _grad(case, _params(case))
    return {f"d{k}": np.asarray(g[k]) for k in case.params}  # layer order (trees come back key-sorted)


def accumulated_gradients(case: Case, size: int) -> dict[str, np.ndarray]:
    """The sum of each micro-batch's own gradient (its own reduction), micro-batches of ``size`` rows."""
    params = _params(case)
    total = None
    for start in range(0, case.batch, size):
        g = _grad(case, params, slice(start, start + size))
        total = g if total is None else jax.tree_util.tree_map(jnp.add, total, g)
    return {f"d{k}": np.asarray(total[k]) for k in case.params}


def next_parameters(case: Case, lr: float | None = None) -> dict[str, np.ndarray]:
    """``Wl_next``, ``bl_next`` after one step ``p - lr * dp`` on the whole batch."""
    lr = case.learning_rate if lr is None else lr
    params = _params(case)
    new = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, _grad(case, params))
    return {f"{k}_next": np.asarray(new[k]) for k in case.params}
