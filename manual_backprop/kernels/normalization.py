"""Batch norm (training mode) and layer norm: one forward/backward pair, statistics over one axis.

Forward, for the Linear output Z (N, n) of a layer, ``axis`` 0 for batch norm (each unit over
the m = N samples of the batch) and 1 for layer norm (each sample over its m = n features)::

    mu      = mean(Z, axis)                       batch norm (n,), layer norm (N, 1)
    var     = mean((Z - mu)**2, axis)             the biased variance: 1/m, not Bessel's 1/(m - 1)
    inv_std = 1 / sqrt(var + eps)                 eps inside the root
    N       = (Z - mu) * inv_std                  x̂, the normalised value        (N, n)
    S       = gamma * N + beta                    the scaled output, gamma, beta (n,)

Backward, given dS = dL/dS (N, n)::

    dbeta  = 1.T @ dS                             column sums, over the samples (axis 0) for both norms
    dgamma = 1.T @ (dS * N)                       (n,)
    dN     = dS * gamma                           (N, n)
    dZ     = (1/m) * inv_std * (m*dN - sum(dN, axis) - N * sum(dN * N, axis))      (N, n)

The compact dZ, as derived by hand. Z enters N three ways: directly, through mu and through var::

    dN/dZ directly   : inv_std
    dvar = sum(dN * (Z - mu), axis) * (-1/2) * inv_std**3
    dmu  = -inv_std * sum(dN, axis) + dvar * (-2/m) * sum(Z - mu, axis)      (the last sum is 0)
    dZ   = dN * inv_std + dvar * 2 (Z - mu) / m + dmu / m

With ``Z - mu = N / inv_std``, ``dvar * 2 (Z - mu) / m = -(1/m) inv_std N sum(dN * N)`` and
``dmu / m = -(1/m) inv_std sum(dN)``: the three terms share ``(1/m) inv_std``, which gives the
one-line form above. Treating mu and var as constants keeps only the first term, ``dN * inv_std``.
Every dtype is kept (a float32 Z gives float32 results).
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np


def norm_forward(Z: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float,
                 axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, S, inv_std)``: x̂ = (Z - mean) / sqrt(var + eps) over ``axis`` and S = gamma * x̂ + beta.

    Z (N, n), gamma and beta (n,); inv_std (n,) for axis 0, (N, 1) for axis 1.
    """
    mu = Z.mean(axis=axis, keepdims=True)
    centred = Z - mu
    var = (centred * centred).mean(axis=axis, keepdims=True)   # biased: divided by m
    inv_std = 1 / np.sqrt(var + Z.dtype.type(eps))             # eps inside the root
    N = centred * inv_std
    S = gamma * N + beta
    return N, S, (inv_std[0] if axis == 0 else inv_std)


def norm_backward(dS: np.ndarray, N: np.ndarray, gamma: np.ndarray, inv_std: np.ndarray,
                  axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(dgamma, dbeta, dN, dZ)`` from dS (N, n), x̂ = N, gamma (n,) and inv_std of the forward.

    ``dZ = (1/m) inv_std (m dN - sum(dN) - N sum(dN N))``, the sums over ``axis`` (m its length).
    """
    dgamma, dbeta = norm_dgamma(dS, N), norm_dbeta(dS)
    dN = norm_dN(dS, gamma)
    return dgamma, dbeta, dN, norm_dZ(dN, N, inv_std, axis)


def norm_dgamma(dS: np.ndarray, N: np.ndarray) -> np.ndarray:
    """``dgamma = 1.T @ (dS * N)``: summed over the samples (axis 0), (N, n) -> (n,)."""
    return (dS * N).sum(axis=0)


def norm_dbeta(dS: np.ndarray) -> np.ndarray:
    """``dbeta = 1.T @ dS``: summed over the samples (axis 0), (N, n) -> (n,)."""
    return dS.sum(axis=0)


def norm_dN(dS: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """``dN = dS * gamma``, (N, n) * (n,) -> (N, n)."""
    return dS * gamma


def norm_dZ(dN: np.ndarray, N: np.ndarray, inv_std: np.ndarray, axis: int) -> np.ndarray:
    """``dZ = (1/m) inv_std (m dN - sum(dN) - N sum(dN N))``, the sums over ``axis`` of length m, (N, n)."""
    m = N.shape[axis]
    inv = inv_std if axis == 1 else inv_std[None, :]
    return (inv / m) * (m * dN - dN.sum(axis=axis, keepdims=True) - N * (dN * N).sum(axis=axis, keepdims=True))


def norm_apply(Z: np.ndarray, mu: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
               beta: np.ndarray) -> np.ndarray:
    """Batch norm with given statistics (inference mode): ``S = gamma * (Z - mu) * inv_std + beta``.

    Z (M, n) any batch; mu, inv_std (n,) those of the batch the network was trained on, so that a
    query point's output does not depend on the other points queried with it.
    """
    return gamma * ((Z - mu) * inv_std) + beta


@dataclass(frozen=True)
class Norm:
    """One normalisation: the axis its statistics run over, and the kernel pair bound to it."""

    name: str
    axis: int
    over: str  # what the statistics are taken over, in words

    def forward(self, Z, gamma, beta, eps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return norm_forward(Z, gamma, beta, eps, self.axis)

    def backward(self, dS, N, gamma, inv_std) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return norm_backward(dS, N, gamma, inv_std, self.axis)


#: eps, the shift added to the variance inside the root when a network file gives none (torch's and the
#: course's 1e-5). It is part of the function computed, not a tolerance.
DEFAULT_VARIANCE_SHIFT = 1e-5

#: ``none`` is the plain Linear -> activation layer; the others insert ``N``, ``S`` before the activation.
NORMS: dict[str, Norm] = {
    "batchnorm": Norm("batchnorm", 0, "the samples of the batch (axis 0)"),
    "layernorm": Norm("layernorm", 1, "the features of each sample (axis 1)"),
}
NORM_CHOICES: tuple[str, ...] = ("none", *NORMS)
