"""Compare the engine's trace with a reference's, tensor by tensor.

Tensors are matched by name; shape and dtype are checked before values;
NaN or Inf on either side is a failure (NaN is never equal to NaN); values
pass within the tolerance of :mod:`.tolerance`. The result of each
comparison is a :class:`TensorCheck` naming the worst element (index, both
values) and the margin reached (worst error / tolerance: at most 1 passes).

Rounding at a kink: in float32 a ReLU pre-activation within rounding of 0
can take the other sign in a framework that sums in another order, which
flips that unit's mask and moves every gradient below it by far more than
rounding. Such units are found from both runs' own Z (both within tolerance
of 0, on opposite sides); a tensor that fails the rounding tolerance but
passes once those flips are allowed for is reported as ``kink``, not as a
failure. A unit whose Z is the same in both runs (exactly 0, say) cannot
flip: a mask that differs there is a real error (``Z >= 0`` for ``Z > 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..description.network import Network
from ..kernels import ACTIVATIONS
from .tolerance import FLOOR, K, kink_scales, tolerance

#: Statuses that count as agreement.
PASSING = ("ok", "kink", "n/a")


@dataclass(frozen=True)
class Worst:
    """The element that came nearest to (or went furthest past) its tolerance."""

    index: tuple[int, ...]
    engine: float
    reference: float
    tolerance: float


@dataclass
class TensorCheck:
    """One tensor against one reference."""

    name: str
    reference: str
    status: str  # ok | kink | fail | shape | dtype | nonfinite | missing | n/a
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    margin: float | None = None
    worst: Worst | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in PASSING

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "status": self.status,
                               "max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err,
                               "margin": self.margin}
        if self.worst is not None:
            out["worst"] = {"index": list(self.worst.index), "engine": self.worst.engine,
                            "reference": self.worst.reference, "tolerance": self.worst.tolerance}
        if self.note:
            out["note"] = self.note
        out.update(self.extra)
        return out


def compared_names(network: Network) -> list[str]:
    """The order tensors are judged in: forward (Z1, A1, ..., L), then backward (dAL, ..., dX).

    The first failing tensor in this order is the first divergence: a forward
    error spoils everything after it, and in the backward pass a wrong rule
    shows first where it is applied.
    """
    return [n for n in network.forward_names() if n not in ("X", "Y")] + network.backward_names()


def compare_arrays(name: str, reference: str, a: Any, b: Any, E: np.ndarray, dtype: str,
                   kink: np.ndarray | None = None) -> TensorCheck:
    """Judge one tensor: ``a`` from the engine, ``b`` from the reference, ``E`` its rounding scale."""
    if b is None:
        return TensorCheck(name, reference, "missing", note=f"{reference} did not produce {name}")
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return TensorCheck(name, reference, "shape", note=f"shape {a.shape} here, {b.shape} in {reference}")
    if a.dtype != b.dtype:
        return TensorCheck(name, reference, "dtype", note=f"dtype {a.dtype} here, {b.dtype} in {reference}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    finite = np.isfinite(a64) & np.isfinite(b64)
    if not finite.all():
        idx = tuple(int(i) for i in np.argwhere(~finite)[0]) if a.ndim else ()
        return TensorCheck(name, reference, "nonfinite",
                           worst=Worst(idx, float(a64[idx]), float(b64[idx]), float("nan")),
                           note="NaN or Inf (never equal to anything)")
    err = np.abs(a64 - b64)
    tol = tolerance(np.asarray(E, dtype=np.float64), dtype)
    ratio = err / tol
    idx = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.ndim else ()
    idx = tuple(int(i) for i in idx)
    rel = err / np.maximum(np.abs(b64), FLOOR[dtype])
    check = TensorCheck(
        name, reference, "ok",
        max_abs_err=float(err.max()) if err.size else 0.0,
        max_rel_err=float(rel.max()) if rel.size else 0.0,
        margin=float(ratio.max()) if ratio.size else 0.0,
        worst=Worst(idx, float(a64[idx]), float(b64[idx]), float(tol[idx])) if err.size else None,
    )
    if check.margin <= 1:
        return check
    if kink is not None and kink.any():
        tol_kink = tol + kink * (1 + 1e-6)
        if (err <= tol_kink).all():
            check.status = "kink"
            check.note = "rounding at a ReLU kink: a unit within rounding of 0 took the other sign"
            return check
    check.status = "fail"
    return check


def flipped_units(network: Network, engine: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray],
                  E: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Per kinked layer, the units whose Z lies within rounding of the kink in both runs, on opposite sides."""
    out = {}
    for l, act in enumerate(network.activations, start=1):
        kink = ACTIVATIONS[act].kink
        if kink is None or f"Z{l}" not in ref:
            continue
        a = np.asarray(engine[f"Z{l}"], np.float64) - kink
        b = np.asarray(ref[f"Z{l}"], np.float64) - kink
        if a.shape != b.shape:
            continue
        tol = tolerance(E[f"Z{l}"], network.dtype)
        flips = ((a > 0) != (b > 0)) & (np.abs(a) <= tol) & (np.abs(b) <= tol)
        if flips.any():
            out[l] = flips.astype(np.float64)
    return out


def compare_traces(network: Network, params: Mapping[str, np.ndarray], engine: Mapping[str, np.ndarray],
                   ref: Mapping[str, Any], reference: str, E: Mapping[str, np.ndarray]) -> dict[str, TensorCheck]:
    """Every compared tensor of ``engine`` against a framework reference's full trace."""
    flips = flipped_units(network, engine, ref, E)
    kinks = kink_scales(network, params, engine, flips) if flips else {}
    checks = {}
    for name in compared_names(network):
        check = compare_arrays(name, reference, engine[name], ref.get(name), E[name], network.dtype,
                               kinks.get(name))
        if check.status == "kink":
            n = int(sum(f.sum() for f in flips.values()))
            layers = ", ".join(f"Z{l}" for l in flips)
            check.note = f"rounding at a ReLU kink: {n} unit(s) of {layers} within rounding of 0 took the other sign"
        checks[name] = check
    return checks


def compare_projections(network: Network, engine: Mapping[str, np.ndarray], projections: Mapping[str, list],
                        E: Mapping[str, np.ndarray], reference: str = "fd") -> dict[str, TensorCheck]:
    """Every backward tensor against finite-difference directional derivatives.

    For each direction v the engine's ``<G, v>`` must match the estimate within
    the engine's own rounding (``K <E, |v|>``), the sum's rounding, and the
    difference's estimated error. Directions that cross a kink are not judged.
    """
    u = 2.0**-53
    checks: dict[str, TensorCheck] = {}
    for name in compared_names(network):
        if name not in projections:
            checks[name] = TensorCheck(name, reference, "n/a", note="forward tensors are not differentiated")
            continue
        G = np.asarray(engine[name], np.float64)
        worst: tuple[float, int, float, float, float] | None = None
        errs, rels, skipped = [], [], 0
        for i, p in enumerate(projections[name]):
            if p.at_kink:
                skipped += 1
                continue
            mine = float((G * p.direction).sum())
            tol = (K * float((np.asarray(E[name]) * np.abs(p.direction)).sum())
                   + K * np.sqrt(G.size) * u * float(np.abs(G * p.direction).sum())
                   + 4 * p.error + FLOOR["float64"])
            err = abs(mine - p.estimate)
            errs.append(err)
            rels.append(err / max(abs(p.estimate), FLOOR["float64"]))
            if worst is None or err / tol > worst[0]:
                worst = (err / tol, i, mine, p.estimate, tol)
        extra = {"directions": len(projections[name]), "at_kink": skipped}
        if worst is None:
            checks[name] = TensorCheck(name, reference, "n/a", extra=extra,
                                       note="every direction crosses a ReLU kink; finite differences cannot judge it")
            continue
        margin, i, mine, est, tol = worst
        checks[name] = TensorCheck(
            name, reference, "ok" if margin <= 1 else "fail",
            max_abs_err=max(errs), max_rel_err=max(rels), margin=margin,
            worst=Worst((i,), mine, est, tol), extra=extra,
            note=f"{skipped} direction(s) crossed a kink and were not judged" if skipped else "",
        )
    return checks
