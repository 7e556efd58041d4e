"""``compare_tensor("dW1", my_dW1, case)``: one tensor of yours against the engine's truth, in one line.

    >>> from manual_backprop import compare, load_example, run
    >>> case = load_example("seed-002")
    >>> compare("dW1", run(case)["dW1"], case)
    dW1 (2, 3): exact; within tolerance; max |Δ| 0, margin 0 (≤ 1 passes)

The truth is the engine's float64 trace (:func:`manual_backprop.run`) and the tolerance is the
project's one policy (:func:`manual_backprop.compare.error_scales`, judged by
:func:`manual_backprop.compare.compare_arrays`, with the allowance for units within rounding
of a ReLU kink, :func:`~manual_backprop.compare.possible_flips`): nothing is decided here.
A list or an integer array is read in the case's dtype; another float dtype, or another
shape, is reported as such (not within tolerance). The result prints as its one line, shows
as one coloured line in a notebook, and keeps the :class:`~manual_backprop.compare.TensorCheck`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..compare import TensorCheck, compare_arrays, error_scales, kink_scales, possible_flips
from ..engine import run
from ..errors import InputError
from . import cells
from .drawing import COLOURS


@dataclass
class Comparison:
    """One tensor against the truth: ``exact``, ``ok`` (within tolerance), ``max_abs_err``, ``margin``."""

    name: str
    shape: tuple[int, ...]
    exact: bool
    check: TensorCheck
    true: np.ndarray

    @property
    def ok(self) -> bool:
        return bool(self.check.ok)

    @property
    def max_abs_err(self) -> float | None:
        return self.check.max_abs_err

    @property
    def margin(self) -> float | None:
        return self.check.passing_margin

    @property
    def line(self) -> str:
        """``dW1 (2, 3): not exact; within tolerance; max |Δ| 1.1e-16, margin 0.02 (≤ 1 passes)``."""
        c = self.check
        head = f"{self.name} {self.shape}: "
        if c.status in ("shape", "dtype", "missing", "nonfinite"):
            return head + f"NOT within tolerance: {c.message(ours='yours', where='').split(': ', 1)[-1]}"
        within = ("within tolerance" if c.status == "ok" else
                  "within tolerance once rounding at a ReLU kink is allowed for" if c.status == "kink" else
                  "NOT within tolerance")
        text = (f"{head}{'exact' if self.exact else 'not exact'}; {within}; max |Δ| {cells.fmt(c.max_abs_err)}, "
                f"margin {cells.fmt(self.margin)} (≤ 1 passes)")
        if c.failed and c.worst is not None:
            idx = ", ".join(map(str, c.worst.index))
            text += (f"; worst {self.name}[{idx}]: yours {c.worst.engine + 0.0:.10g}, true {c.worst.reference + 0.0:.10g}"
                     f" ({c.beyond} of {c.size} elements beyond their tolerance)")
        return text

    def __repr__(self) -> str:
        return self.line

    __str__ = __repr__

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.line)

    def _repr_html_(self) -> str:
        kind = "right" if self.ok else "wrong"
        fill, line, ink = COLOURS[kind]
        return (f'<div class="mb-compare" data-kind="{kind}" style="font-family: Menlo, Consolas, monospace; '
                f'font-size: 12px; background: {fill}; color: {ink}; border-left: 3px solid {line}; '
                f'padding: 3px 8px">{html.escape(self.line)}</div>')


def compare_tensor(name: str, yours: Any, case: Any) -> Comparison:
    """Judge your ``name`` (a tensor of the network's trace: ``dW1``, ``Z2``, ``dX``, ...) against the
    engine's truth for ``case``, at the one tolerance policy; returns a :class:`Comparison`."""
    net = case.network
    trace = run(case)
    if name not in trace or name in ("X", "Y"):
        known = [n for n in trace if n not in ("X", "Y")]
        raise InputError(f"compare: {name!r} is not a tensor of this network's pass; known: {', '.join(known)}")
    true = np.asarray(trace[name])
    mine = np.asarray(yours)
    if not np.issubdtype(mine.dtype, np.floating):
        try:
            mine = mine.astype(net.dtype)
        except (TypeError, ValueError):
            raise InputError(f"compare: {name} must be an array of numbers, got {type(yours).__name__}") from None
    with np.errstate(all="ignore"):
        E = error_scales(net, case.params, trace, case.T)
        kinks = kink_scales(net, case.params, trace, possible_flips(net, trace, E))
    check = compare_arrays(name, "the truth", mine, true, E[name], net.dtype, kinks.get(name))
    exact = mine.shape == true.shape and bool(np.array_equal(mine, true))
    return Comparison(name, tuple(true.shape), exact, check, true)
