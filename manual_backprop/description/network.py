"""The one description of a network that drives the engine, the references and the tests.

A :class:`Network` is the architecture only (widths, activations, loss,
reduction, dtype, and an optional L2 penalty, part of the loss). Together with parameters and data it makes a
:class:`~manual_backprop.case.Case`. Every tensor a run produces is named
after the maths (the README's "Tensor names"): ``X, Y, Z1, A1, ..., L`` forward and
``dAL, dZL, dWL, dbL, ..., dX`` backward.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..kernels import ACTIVATIONS, DEFAULT_VARIANCE_SHIFT, LOSSES, NORM_CHOICES
from ..kernels.losses import REDUCTIONS
from ..kernels.regularization import CONVENTIONS

DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Network:
    """Widths ``sizes = (n0, n1, ..., nL)``, one activation per Linear layer, and the loss.

    ``l2 = λ > 0`` adds ``L_reg = f λ Σ_l ‖W_l‖²`` to the loss (f = ½ under ``l2_convention =
    "half"``, 1 under ``"full"``; biases too with ``l2_biases``): ``L = L_data + L_reg``, and
    every ``dWl`` gains ``2 f λ Wl`` (:mod:`manual_backprop.kernels.regularization`).

    ``norms``, one per Linear layer (``"none"``, ``"batchnorm"``, ``"layernorm"``; empty: all
    ``"none"``), puts a normalisation between a layer's Linear part and its activation
    (:mod:`manual_backprop.kernels.normalization`, ``eps`` inside the root): ``Zl = A(l-1) @ Wl + bl``,
    ``Nl`` = x̂, ``Sl = gammal * Nl + betal``, ``Al = act(Sl)``.
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    reduction: str = "mean"
    dtype: str = "float64"
    l2: float = 0.0
    l2_convention: str = "half"
    l2_biases: bool = False
    norms: tuple[str, ...] = ()
    #: The norms' eps (None: DEFAULT_VARIANCE_SHIFT, 1e-5).
    eps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(self.sizes))
        object.__setattr__(self, "activations", tuple(self.activations))
        norms = tuple(self.norms) if self.norms else ("none",) * max(len(self.sizes) - 1, 0)
        object.__setattr__(self, "norms", norms)
        if self.eps is None:
            object.__setattr__(self, "eps", DEFAULT_VARIANCE_SHIFT)
        _check_network(self)

    def norm(self, l: int) -> str:
        """Layer l's normalisation: ``"none"``, ``"batchnorm"`` or ``"layernorm"``."""
        return self.norms[l - 1]

    def normed(self, l: int) -> bool:
        return self.norms[l - 1] != "none"

    @property
    def has_norm(self) -> bool:
        return any(n != "none" for n in self.norms)

    @property
    def has_batchnorm(self) -> bool:
        return "batchnorm" in self.norms

    def pre_activation(self, l: int) -> str:
        """The name of what layer l's activation reads: ``Sl`` after a normalisation, else ``Zl``."""
        return f"S{l}" if self.normed(l) else f"Z{l}"

    @property
    def depth(self) -> int:
        """L, the number of Linear layers."""
        return len(self.sizes) - 1

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def regularized(self) -> bool:
        """True when the loss has an L2 term (``l2 > 0``): the trace then names ``L_data`` and ``L_reg`` too."""
        return self.l2 > 0

    @property
    def l2_factor(self) -> float:
        """``f λ`` in ``L_reg = f λ Σ ‖W‖²`` (f = ½ under "half", 1 under "full"); 0 without L2."""
        return CONVENTIONS[self.l2_convention] * self.l2

    def l2_names(self) -> list[str]:
        """The parameters the L2 penalty covers: ``W1, ..., WL`` (and ``b1, ..., bL`` with ``l2_biases``)."""
        if not self.regularized:
            return []
        return [f"{p}{l}" for l in range(1, self.depth + 1) for p in ("Wb" if self.l2_biases else "W")]

    @property
    def fused(self) -> bool:
        """True when the loss is computed from the logits Z_L (bce, softmax_cross_entropy)."""
        return LOSSES[self.loss].fused_with is not None

    def normaliser(self, N: int) -> float:
        """``c`` in ``L = c * sum(terms)`` for a batch of N rows and K = n_L outputs.

        1 under "sum"; under "mean", 1/(N·K) for the losses averaged over every
        output entry (mse, bce, as ``nn.MSELoss`` and ``nn.BCEWithLogitsLoss``) and
        1/N for the others (half_mse, softmax_cross_entropy: one term per sample).
        """
        return LOSSES[self.loss].scale(N, self.sizes[-1], self.reduction)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{"W1": (n0, n1), "b1": (n1,), ...}`` in layer order."""
        shapes: dict[str, tuple[int, ...]] = {}
        for l in range(1, self.depth + 1):
            shapes[f"W{l}"] = (self.sizes[l - 1], self.sizes[l])
            shapes[f"b{l}"] = (self.sizes[l],)
            if self.normed(l):
                shapes[f"gamma{l}"] = shapes[f"beta{l}"] = (self.sizes[l],)
        return shapes

    def forward_names(self) -> list[str]:
        """``X, Y, Z1, A1, ..., ZL, AL, L``: the order the forward makes them (``L_data, L_reg, L`` with L2)."""
        names = ["X", "Y"]
        for l in range(1, self.depth + 1):
            names += [f"Z{l}", f"N{l}", f"S{l}", f"A{l}"] if self.normed(l) else [f"Z{l}", f"A{l}"]
        return names + (["L_data", "L_reg", "L"] if self.regularized else ["L"])

    def backward_names(self) -> list[str]:
        """``dAL, dZL, dWL, dbL, dA(L-1), ..., dW1, db1, dX``: the order backprop makes them.

        When the loss is fused with the output activation, ``dAL`` is the loss's
        derivative as a function of A_L (what a derivation from dL/dAL writes),
        and ``dZL`` is the fused gradient; ``dA0`` is called ``dX``.
        """
        names: list[str] = []
        for l in range(self.depth, 0, -1):
            if self.normed(l):
                names += [f"dA{l}", f"dS{l}", f"dgamma{l}", f"dbeta{l}", f"dN{l}", f"dZ{l}", f"dW{l}", f"db{l}"]
            else:
                names += [f"dA{l}", f"dZ{l}", f"dW{l}", f"db{l}"]
        return names + ["dX"]

    def names(self) -> list[str]:
        """Every tensor of a run: forward order, then backward order."""
        return self.forward_names() + self.backward_names()

    def extra_names(self) -> list[str]:
        """Per-sample gradients and the tensors after one optimiser step: ``dW1_per_sample, ..., W1_next, ...,
        vW1_next, ..., mW1_next, ...`` (which state names a step makes depends on its optimiser)."""
        names = []
        for l in range(1, self.depth + 1 if not self.has_batchnorm else 1):  # batch norm: samples interact
            names += [f"dW{l}_per_sample", f"db{l}_per_sample"]
        for l in range(1, self.depth + 1):
            names += [f"W{l}_next", f"b{l}_next"]
        for s in ("v", "m"):  # an optimiser's new state (momentum, rmsprop: v; adam: m and v)
            for l in range(1, self.depth + 1):
                names += [f"{s}W{l}_next", f"{s}b{l}_next"]
        return names

    def tensor_shapes(self, N: int) -> dict[str, tuple[int, ...]]:
        """The shape of every named tensor for a batch of N rows (Y as a (N, K) matrix)."""
        K = self.sizes[-1]
        shapes: dict[str, tuple[int, ...]] = {"X": (N, self.sizes[0]), "Y": (N, K), "L": (), "dX": (N, self.sizes[0]),
                                              "L_data": (), "L_reg": ()}
        for l in range(1, self.depth + 1):
            n_in, n_out = self.sizes[l - 1], self.sizes[l]
            for t in ("Z", "A", "dZ", "dA", "N", "S", "dN", "dS"):
                shapes[f"{t}{l}"] = (N, n_out)
            for t in ("gamma", "beta", "dgamma", "dbeta"):
                shapes[f"{t}{l}"] = (n_out,)
            shapes[f"dW{l}"] = shapes[f"W{l}_next"] = shapes[f"vW{l}_next"] = shapes[f"mW{l}_next"] = (n_in, n_out)
            shapes[f"db{l}"] = shapes[f"b{l}_next"] = shapes[f"vb{l}_next"] = shapes[f"mb{l}_next"] = (n_out,)
            shapes[f"dW{l}_per_sample"] = (N, n_in, n_out)
            shapes[f"db{l}_per_sample"] = (N, n_out)
        return shapes

    def describe(self) -> str:
        """``2-3-1 sigmoid/identity, half_mse (mean), float64``."""
        l2 = ""
        if self.regularized:
            l2 = f" + L2 λ={self.l2:g} ({self.l2_convention}{', biases too' if self.l2_biases else ''})"
        acts = [a if n == "none" else f"{n}+{a}" for n, a in zip(self.norms, self.activations)]
        eps = f" (eps {self.eps:g})" if self.has_norm else ""
        return (f"{'-'.join(map(str, self.sizes))} {'/'.join(acts)}{eps}, "
                f"{self.loss} ({self.reduction}){l2}, {self.dtype}")


_NAME = re.compile(r"^(d?)([A-Za-z]+)(\d*)(_per_sample|_next)?$")


def layer_of(name: str) -> int | None:
    """The layer a tensor name belongs to (``dW2`` -> 2, ``X`` -> 0, ``dX`` -> 0, ``L`` -> None)."""
    m = _NAME.match(name)
    if not m:
        return None
    if m.group(2) == "X":
        return 0
    return int(m.group(3)) if m.group(3) else None


def _check_network(net: Network) -> None:
    where = f"network {list(net.sizes)}"
    if len(net.sizes) < 2:
        raise InputError(f"{where}: sizes needs at least two widths (input and output), got {len(net.sizes)}")
    for i, n in enumerate(net.sizes):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"{where}: sizes[{i}] must be a positive integer, got {n!r}")
    if len(net.activations) != net.depth:
        raise InputError(
            f"{where}: {net.depth} Linear layer(s) need {net.depth} activation(s), got {len(net.activations)}"
        )
    for l, a in enumerate(net.activations, start=1):
        if a not in ACTIVATIONS:
            raise InputError(
                f"{where}: unknown activation {a!r} for layer {l}; known: {', '.join(ACTIVATIONS)}"
            )
        if ACTIVATIONS[a].last_layer_only and l != net.depth:
            raise InputError(f"{where}: activation {a!r} is allowed on the last layer only, found on layer {l}")
    if net.loss not in LOSSES:
        raise InputError(f"{where}: unknown loss {net.loss!r}; known: {', '.join(LOSSES)}")
    if net.reduction not in REDUCTIONS:
        raise InputError(f"{where}: unknown reduction {net.reduction!r}; known: {', '.join(REDUCTIONS)}")
    if net.dtype not in DTYPES:
        raise InputError(f"{where}: unknown dtype {net.dtype!r}; known: {', '.join(DTYPES)}")
    needs = LOSSES[net.loss].fused_with
    if needs is not None and net.activations[-1] != needs:
        raise InputError(
            f"{where}: loss {net.loss!r} needs a {needs!r} output activation, got {net.activations[-1]!r}"
        )
    if isinstance(net.l2, (bool, np.bool_)) or not isinstance(net.l2, (int, float, np.integer, np.floating)) \
            or not np.isfinite(net.l2) or net.l2 < 0:
        raise InputError(f"{where}: l2 must be a finite number >= 0 (λ of the L2 penalty), got {net.l2!r}")
    object.__setattr__(net, "l2", float(net.l2))
    if net.l2_convention not in CONVENTIONS:
        raise InputError(f"{where}: unknown l2 convention {net.l2_convention!r}; known: "
                         f"{', '.join(CONVENTIONS)} (half: ½λΣ‖W‖², gradient λW; full: λΣ‖W‖², gradient 2λW)")
    if not isinstance(net.l2_biases, (bool, np.bool_)):
        raise InputError(f"{where}: l2 biases must be true or false, got {net.l2_biases!r}")
    if len(net.norms) != net.depth:
        raise InputError(f"{where}: {net.depth} Linear layer(s) need {net.depth} norm(s) (\"none\" for none), "
                         f"got {len(net.norms)}")
    for l, n in enumerate(net.norms, start=1):
        if n not in NORM_CHOICES:
            raise InputError(f"{where}: unknown norm {n!r} for layer {l}; known: {', '.join(NORM_CHOICES)}")
    if net.depth and net.norms[-1] != "none":
        raise InputError(f"{where}: a norm on the output layer ({net.norms[-1]} on layer {net.depth}) is not "
                         f"supported: the loss reads the output layer's own Z; normalise a hidden layer")
    if isinstance(net.eps, (bool, np.bool_)) or not isinstance(net.eps, (int, float, np.integer, np.floating)) \
            or not np.isfinite(net.eps) or net.eps < 0:
        raise InputError(f"{where}: eps must be a finite number >= 0 (added to the variance inside the root), "
                         f"got {net.eps!r}")
    object.__setattr__(net, "eps", float(net.eps))
    if needs == "softmax" and net.sizes[-1] < 2:
        raise InputError(f"{where}: softmax_cross_entropy needs at least 2 output classes, got {net.sizes[-1]}")
