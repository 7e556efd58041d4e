"""Values too large for the dtype: an input error, told apart from a wrong rule, never warned about.

Finite inputs can still leave the dtype's range: ``X = 1e30`` times
``W1 = 1e10`` is Inf in float32, and ``1e200 * 1e200`` is Inf in float64. The
frameworks would then "agree" on Inf or NaN, and NumPy would print a
``RuntimeWarning`` per operation. So the engine runs with floating-point
warnings off (:func:`run_quietly`), and its trace is examined afterwards
(:func:`ensure_representable`):

- every tensor finite, every rounding scale finite: nothing to say;
- a tensor not finite: the same case is re-run in a wider type (float32 in
  float64, float64 in ``np.longdouble`` where that is wider). Finite there,
  the dtype overflowed: an :class:`InputError` names the tensor and the
  index. Not finite there either, the engine made the NaN or Inf from
  representable numbers: that is a wrong rule, left to the comparator, which
  fails it (NaN is never equal to anything);
- a rounding scale not finite (the magnitudes ``|A| @ |W|`` overflow float64
  even though the values themselves cancel): no tolerance could be trusted,
  so this too is an input error rather than an infinitely tolerant pass.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..description.case import Case, cast_arrays
from ..engine.trace import Trace, backward, forward, run
from ..errors import InputError

#: The type each dtype's run is repeated in to tell overflow from a wrong rule.
WIDER = {"float32": np.dtype(np.float64), "float64": np.dtype(np.longdouble)}
WIDER_NAME = {"float32": "float64", "float64": "long double"}


def run_quietly(case: Case) -> Trace:
    """The engine's trace, with NumPy's overflow and invalid-value warnings off (judged afterwards)."""
    with np.errstate(all="ignore"):
        return run(case)


def ensure_representable(case: Case, trace: Mapping[str, np.ndarray],
                         scales: Mapping[str, np.ndarray] | None = None) -> None:
    """Raise :class:`InputError` if ``case``'s numbers leave its dtype's range anywhere in ``trace``.

    ``scales`` are the rounding scales ``E`` of the tolerance policy, if computed.
    """
    names = case.network.names()
    bad = _first_nonfinite(trace, names)
    if bad is not None:
        name, where = bad
        wide = _wider_trace(case)
        if wide is None or _first_nonfinite(wide, names) is not None:
            return  # not an overflow of the dtype: the comparator judges it
        value = float(np.asarray(trace[name])[where]) if where else float(np.asarray(trace[name]))
        kind = "NaN" if np.isnan(value) else "Inf"
        at = f" at index {list(where)}" if where else ""
        hint = "; scale X or the parameters down" + (", or use dtype = \"float64\"" if case.network.dtype == "float32" else "")
        raise InputError(
            f"{case.source}: the values overflow {case.network.dtype}: {name} is {kind}{at} "
            f"(finite when computed in {WIDER_NAME[case.network.dtype]}){hint}"
        )
    if scales is not None:
        bad = _first_nonfinite(scales, [n for n in names if n in scales])
        if bad is not None:
            raise InputError(
                f"{case.source}: the magnitudes in {bad[0]} overflow float64 (|values| summed without "
                f"cancellation), so its rounding cannot be bounded; scale X or the parameters down"
            )


def _first_nonfinite(trace: Mapping[str, np.ndarray], names: list[str]) -> tuple[str, tuple[int, ...]] | None:
    for name in names:
        a = np.asarray(trace[name])
        if a.dtype.kind != "f":
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            return name, tuple(int(i) for i in np.argwhere(bad)[0])
    return None


def _wider_trace(case: Case) -> Trace | None:
    """The engine's trace of ``case`` computed in the wider type, or None if there is none."""
    dt = WIDER[case.network.dtype]
    if np.finfo(dt).max <= np.finfo(case.network.np_dtype).max:
        return None  # long double is plain double on this platform
    params, X, Y, T = cast_arrays(case, dt)
    with np.errstate(all="ignore"):
        fwd = forward(case.network, params, X, Y, T)
        return {**fwd, **backward(case.network, params, fwd, T)}
