"""How a file writes its tensors: the layout, where the mean's 1/N lives, and the bias shapes.

The engine, the references and the comparisons work in one convention, the row
layout with every delta a true gradient::

    Zl = A(l-1) @ Wl + bl      X (N, n0), Wl (n(l-1), nl), bl (nl,), Zl, Al, dZl, dAl (N, nl)
    dZl, dAl = ∂L/∂Zl, ∂L/∂Al (the mean's 1/N inside)

A :class:`Convention` is how the user writes the same numbers, and it is only a
view: each tensor is turned into the engine's form when it comes in
(:func:`to_engine`) and back when it is shown (:func:`to_user`), never
computed twice.

- ``layout = "column"`` (one sample per column, the most followed course's)::

      Zl = Wl @ A(l-1) + bl    X (n0, N), Wl (nl, n(l-1)), bl (nl, 1), Zl, Al, dZl, dAl (nl, N)

  Every 2-D tensor is the transpose of the engine's (``Wl_col = Wl_row.T``,
  ``Zl_col = Zl_row.T``); a per-sample ``dWl_per_sample`` (N, nl, n(l-1)) has its
  last two axes swapped. Scalars and flat biases are the same.
- ``deltas = "per_sample"`` (the same course): ``dZl``, ``dAl`` and ``dX`` are summed
  over the samples without the mean's 1/N, which is applied in ``dWl`` and ``dbl``::

      dZl_user = N · ∂L/∂Zl         dWl = (1/N) · (the product of dZl_user)

  so under ``reduction = "mean"`` each delta is N times the engine's; under "sum"
  there is no 1/N and the two conventions are the same numbers. The parameter
  gradients are the same true gradients under either.
- **bias shapes**: a bias (and its gradient, its step, its optimiser state) may be
  written flat ``(n,)``, as a row ``(1, n)`` in the row layout, or as a column ``(n, 1)``
  in the column layout, and is shown back as written. Nothing else is broadcast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import InputError

LAYOUTS = ("row", "column")
DELTAS = ("gradient", "per_sample")

def kind(name: str) -> str:
    """What a tensor is, for the view: ``batch`` (one row per sample: X, Y, Zl, Al, dZl, dAl, dX),
    ``weight`` (Wl, dWl, Wl_next, vWl, ...), ``bias`` (bl, dbl, bl_next, vbl, ...), ``per_sample_weight``,
    ``per_sample_bias`` or ``scalar`` (L, L_data, L_reg)."""
    if name in ("L", "L_data", "L_reg"):
        return "scalar"
    if name.endswith("_per_sample"):
        return "per_sample_weight" if name.startswith("dW") else "per_sample_bias"
    base = name.removesuffix("_next")
    if base[:1] in ("v", "m") and base[1:2] in ("W", "b"):
        base = base[1:]
    base = base[1:] if base.startswith("d") and len(base) > 1 and base[1] in "WbZAXNSg" else base
    if base.startswith(("gamma", "beta")):  # a norm's scale and shift: flat vectors, like a bias
        return "bias"
    if base[:1] == "W":
        return "weight"
    if base[:1] == "b":
        return "bias"
    return "batch"


def is_delta(name: str) -> bool:
    """``dZl``, ``dAl``, ``dX`` (and a norm's ``dNl``, ``dSl``): the tensors whose 1/N ``deltas`` places."""
    return bool(re.fullmatch(r"d(Z\d+|A\d+|N\d+|S\d+|X)", name))


def bias_shapes(layout: str, n: int) -> tuple[tuple[int, ...], ...]:
    """The shapes a bias of width n may be written in: flat, and the layout's row or column."""
    return ((n,), (1, n)) if layout == "row" else ((n,), (n, 1))


@dataclass(frozen=True)
class Convention:
    """The layout, where the 1/N lives, and how each bias was written (``{"b1": (1, 3)}``)."""

    layout: str = "row"
    deltas: str = "gradient"
    #: The shape each bias parameter was written in, when not flat; its gradient and step follow it.
    biases: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InputError(f"layout must be \"row\" (one sample per row, Z = X @ W + b) or \"column\" "
                             f"(one sample per column, Z = W @ X + b), got {self.layout!r}")
        if self.deltas not in DELTAS:
            raise InputError(f"deltas must be \"gradient\" (every dZ, dA is ∂L/∂·, the 1/N inside) or "
                             f"\"per_sample\" (dZ, dA summed over samples, the 1/N applied in dW and db), "
                             f"got {self.deltas!r}")

    @property
    def is_default(self) -> bool:
        return self.layout == "row" and self.deltas == "gradient" and not self.biases

    def describe(self) -> str:
        """``column layout, per-sample deltas`` (empty for the default)."""
        parts = []
        if self.layout == "column":
            parts.append("column layout")
        if self.deltas == "per_sample":
            parts.append("per-sample deltas")
        return ", ".join(parts)

    def delta_factor(self, reduction: str, N: int) -> float:
        """How many times the engine's delta the user's is: N under per-sample deltas and a mean, else 1."""
        return float(N) if self.deltas == "per_sample" and reduction == "mean" else 1.0

    def bias_shape(self, name: str, n: int) -> tuple[int, ...]:
        """The shape bias-like ``name`` (``db2``, ``b2_next``, ``vb2_next``) is shown in: as its bias was
        written, else flat in the row layout and a column ``(n, 1)`` in the column layout."""
        param = ("gamma" if "gamma" in name else "beta" if "beta" in name else "b") + re.sub(r"\D", "", name)
        if param in self.biases:
            return tuple(self.biases[param])
        return (n,) if self.layout == "row" else (n, 1)


ROW = Convention()


def to_user(convention: Convention, name: str, value: np.ndarray, *, reduction: str = "mean", N: int = 1,
            like: tuple[int, ...] | None = None) -> np.ndarray:
    """The engine's ``value`` of tensor ``name`` as the user writes it.

    ``like`` is the shape the user wrote this very tensor in (a claimed ``db1`` as ``(1, 3)``), for
    a bias; ``N`` and ``reduction`` size a delta under per-sample deltas.
    """
    a = np.asarray(value)
    k = kind(name)
    if k == "scalar" or (convention.is_default and (like is None or k != "bias")):
        return a
    if is_delta(name):
        a = a * a.dtype.type(convention.delta_factor(reduction, N)) if a.dtype.kind == "f" else a
    a = _transposed(convention, k, a)
    if k == "bias" and a.ndim == 1:
        shape = like if like is not None and int(np.prod(like)) == a.size else convention.bias_shape(name, a.size)
        a = a.reshape(shape)
    return a


def to_engine(convention: Convention, name: str, value: np.ndarray, *, reduction: str = "mean",
              N: int = 1) -> np.ndarray:
    """The user's ``value`` of tensor ``name`` in the engine's form (the inverse of :func:`to_user`).

    A bias in one of its accepted shapes (:func:`bias_shapes`) is made flat; any other shape is left
    as it is, for the caller to refuse or to name as the other layout.
    """
    a = np.asarray(value)
    k = kind(name)
    if k == "scalar":
        return a
    if k == "bias" and a.ndim == 2 and convention.layout == "row" and a.shape[0] == 1:
        a = a.reshape(-1)
    elif k == "bias" and a.ndim == 2 and convention.layout == "column" and a.shape[1] == 1:
        a = a.reshape(-1)
    if convention.is_default:
        return a
    a = _transposed(convention, k, a)
    if is_delta(name) and a.dtype.kind == "f":
        a = a / a.dtype.type(convention.delta_factor(reduction, N))
    return a


def _transposed(convention: Convention, k: str, a: np.ndarray) -> np.ndarray:
    """The column layout's transpose of a tensor of kind ``k`` (its own inverse): every 2-D tensor but a
    bias, and a per-sample weight gradient's last two axes; in the row layout the tensor as it is."""
    if convention.layout != "column":
        return a
    if k in ("batch", "weight", "per_sample_bias") and a.ndim == 2:
        return a.T
    if k == "per_sample_weight" and a.ndim == 3:
        return np.swapaxes(a, 1, 2)
    return a


def index_to_user(convention: Convention, name: str, index: tuple[int, ...]) -> tuple[int, ...]:
    """An element's index in the engine's tensor, in the user's (transposed in the column layout)."""
    k = kind(name)
    if convention.layout != "column" or k == "scalar":
        return tuple(index)
    if k in ("batch", "weight", "per_sample_bias") and len(index) == 2:
        return (index[1], index[0])
    if k == "per_sample_weight" and len(index) == 3:
        return (index[0], index[2], index[1])
    return tuple(index)


def written_biases(layout: str, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The biases among the parameters' written ``shapes`` that take a 2-D form: ``{"b1": (1, 3)}``."""
    out = {}
    for name, shape in shapes.items():
        if kind(name) == "bias" and len(shape) == 2 and shape in bias_shapes(layout, int(np.prod(shape)))[1:]:
            out[name] = tuple(int(s) for s in shape)
    return out


def user_shape(convention: Convention, name: str, engine_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape the user writes tensor ``name`` in, given the engine's shape (a bias: as it was written)."""
    return tuple(to_user(convention, name, np.zeros(engine_shape, dtype=bool)).shape)


def accepted_shapes(convention: Convention, name: str, engine_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every shape a user may write ``name`` in: the layout's, and for a bias each accepted form."""
    if kind(name) == "bias" and len(engine_shape) == 1:
        return list(bias_shapes(convention.layout, engine_shape[0]))
    return [user_shape(convention, name, engine_shape)]


def shape_text(convention: Convention, name: str, engine_shape: tuple[int, ...]) -> str:
    """``(3, 1)``, or ``(3,) or (1, 3)`` for a bias."""
    return " or ".join(str(s) for s in accepted_shapes(convention, name, engine_shape))
