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
When only the reference's gradients are at hand (training re-checks,
benchmarks, a user's layer), :func:`possible_flips` stands in: the units whose
own Z lies within its tolerance of the kink.

Every check, whatever it judges (a trace, a layer, a training step, the
per-sample gradients, the descent step), returns a :class:`TensorCheck`, and
:func:`mismatch_message` is the one sentence that reports its failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..description.network import Network
from ..kernels import ACTIVATIONS
from ..references.finite_diff import rms
from .tolerance import (
    FLOOR,
    UNIT_ROUNDOFF,
    finite_difference_error,
    kink_scales,
    projection_judges,
    projection_tolerance,
    tolerance,
)

#: Statuses that count as agreement.
PASSING = ("ok", "kink")
#: The status of a tensor a reference could not judge: neither agreement nor failure.
NOT_JUDGED = "not judged"


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
    status: str  # ok | kink | fail | shape | dtype | nonfinite | missing | not judged
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    margin: float | None = None
    worst: Worst | None = None
    note: str = ""
    #: Anything else the check knows: ``directions``/``at_kink`` (finite differences), the layer
    #: check's ``trial``, the training re-check's ``step``. Written into the JSON.
    extra: dict[str, Any] = field(default_factory=dict)
    beyond: int | None = None  # how many elements (directions) exceed their rounding tolerance
    size: int | None = None    # out of how many
    #: For status ``kink``: the margin once the kink allowance is added to the tolerance (at most 1);
    #: ``margin`` stays the margin of the rounding tolerance alone.
    kink_margin: float | None = None

    @property
    def ok(self) -> bool | None:
        """True: agrees; False: fails; None: not judged (the reference could not decide, either way)."""
        if self.status == NOT_JUDGED:
            return None
        return self.status in PASSING

    @property
    def judged(self) -> bool:
        return self.status != NOT_JUDGED

    @property
    def failed(self) -> bool:
        return self.ok is False

    @property
    def passing_margin(self) -> float | None:
        """The margin the verdict rests on: after the kink allowance for ``kink``, else ``margin``."""
        return self.kink_margin if self.status == "kink" and self.kink_margin is not None else self.margin

    def message(self, ours: str = "numpy", where: str = "") -> str:
        """The failure sentence, :func:`mismatch_message`."""
        return mismatch_message(self, ours, where)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "status": self.status,
                               "max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err,
                               "margin": self.margin}
        if self.worst is not None:
            out["worst"] = {"index": list(self.worst.index), "engine": self.worst.engine,
                            "reference": self.worst.reference, "tolerance": self.worst.tolerance}
        if self.kink_margin is not None:
            out["kink_margin"] = self.kink_margin
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


def element(name: str, index: tuple[int, ...], direction: bool = False) -> str:
    """An element's name: ``dW2[0, 1]`` (``dW2`` for a 0-d tensor), ``<dW2, v0>`` for a direction."""
    if direction and index:
        return f"<{name}, v{index[0]}>"
    return f"{name}[{', '.join(map(str, index))}]" if index else name


def mismatch_sentence(name: str, index: tuple[int, ...], ours: float, theirs: float, allowed: float, *,
                      ours_label: str, reference: str, theirs_label: str | None = None, where: str = "",
                      beyond: int | None = None, size: int | None = None, direction: bool = False,
                      note: str = "") -> str:
    """The one failure sentence, in the manner of PyTorch's ``assert_close``::

        {where}: {name}[{index}] disagrees with {reference}: {ours_label} {ours}, {theirs_label} {theirs},
        |Δ| {|ours - theirs|} (up to {allowed} allowed); {beyond} of {size} elements beyond their tolerance; {note}

    the tensor and its worst element, both values, the difference and the
    tolerance there, and how many elements are out. Every check builds its
    message here (:func:`mismatch_message` for a :class:`TensorCheck`;
    validate's claims through ``ClaimCheck.message``).
    """
    head = f"{where}: " if where else ""
    ours, theirs = ours + 0.0, theirs + 0.0  # -0.0 reads as 0
    text = (f"{head}{element(name, index, direction)} disagrees with {reference}: {ours_label} {ours:.10g}, "
            f"{theirs_label or reference} {theirs:.10g}, |Δ| {abs(ours - theirs):.3g} (up to {allowed:.3g} allowed)")
    if beyond is not None and size is not None:
        text += f"; {beyond} of {size} {'directions' if direction else 'elements'} beyond their tolerance"
    return text + (f"; {note}" if note else "")


def mismatch_message(check: TensorCheck, ours: str = "numpy", where: str = "") -> str:
    """The failure sentence of ``check`` (:func:`mismatch_sentence`).

    ``ours`` names our side (``numpy``, ``hand-derived``, ``yours``), ``where``
    what the tensor belongs to (``step 3``, ``linear layer, kink trial``)::

        step 0: dW2[0, 0] disagrees with torch: hand-derived 0.1234567891, torch 0.1234557891,
        |Δ| 1e-06 (up to 3.3e-16 allowed); 8 of 8 elements beyond their tolerance

    A check without values to set side by side (shape, dtype, missing) gives
    ``where: name: note``; NaN or Inf gives ``where: name[index] is not finite: ...``.
    """
    head = f"{where}: " if where else ""
    w = check.worst
    if w is None or check.status not in ("fail", "kink", "nonfinite"):
        return f"{head}{check.name}: {check.note or check.status}"
    direction = "directions" in check.extra
    if check.status == "nonfinite":
        return (f"{head}{element(check.name, w.index, direction)} is not finite: {ours} {w.engine:.10g}, "
                f"{check.reference} {w.reference:.10g}; {check.note}")
    return mismatch_sentence(check.name, w.index, w.engine, w.reference, w.tolerance, ours_label=ours,
                             reference=check.reference, where=where, beyond=check.beyond, size=check.size,
                             direction=direction, note=check.note)


def compare_arrays(name: str, reference: str, a: Any, b: Any, E: np.ndarray, dtype: str,
                   kink: np.ndarray | None = None) -> TensorCheck:
    """Judge one tensor: ``a`` from the engine, ``b`` from the reference, ``E`` its rounding scale.

    Missing, shape and dtype come first; then :func:`compare_values`.
    """
    if b is None:
        return TensorCheck(name, reference, "missing", note=f"{reference} did not produce {name}")
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return TensorCheck(name, reference, "shape", note=f"shape {a.shape} here, {b.shape} in {reference}")
    if a.dtype != b.dtype:
        return TensorCheck(name, reference, "dtype", note=f"dtype {a.dtype} here, {b.dtype} in {reference}")
    return compare_values(name, reference, a, b, E, dtype, kink)


def compare_values(name: str, reference: str, a: Any, b: Any, E: np.ndarray, dtype: str,
                   kink: np.ndarray | None = None) -> TensorCheck:
    """The values of ``a`` (ours, of ``dtype``) against ``b`` (the reference, same shape, any float dtype).

    NaN or Inf on either side fails; otherwise each element must satisfy
    ``|a - b| <= tolerance(E, dtype)``, or, failing that, ``<= tolerance + kink``
    (the most a unit on the other side of a ReLU kink moves it: status ``kink``).
    The worst element is the one with the largest ``|a - b| / tolerance`` (the margin).
    """
    a64, b64 = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    finite = np.isfinite(a64) & np.isfinite(b64)
    if not finite.all():
        idx = tuple(int(i) for i in np.argwhere(~finite)[0]) if a64.ndim else ()
        return TensorCheck(name, reference, "nonfinite",
                           worst=Worst(idx, float(a64[idx]), float(b64[idx]), float("nan")),
                           note="NaN or Inf (never equal to anything)",
                           beyond=int((~finite).sum()), size=int(a64.size))
    err = np.abs(a64 - b64)
    tol = tolerance(np.asarray(E, dtype=np.float64), dtype)
    ratio = err / tol
    idx = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.ndim else ()
    idx = tuple(int(i) for i in idx)
    with np.errstate(over="ignore"):  # an error of 1e20 where the reference is 0 is relatively Inf
        rel = err / np.maximum(np.abs(b64), FLOOR[dtype])
    check = TensorCheck(
        name, reference, "ok",
        max_abs_err=float(err.max()) if err.size else 0.0,
        max_rel_err=float(rel.max()) if rel.size else 0.0,
        margin=float(ratio.max()) if ratio.size else 0.0,
        worst=Worst(idx, float(a64[idx]), float(b64[idx]), float(tol[idx])) if err.size else None,
        beyond=int((ratio > 1).sum()), size=int(err.size),
    )
    if check.margin <= 1:
        return check
    if kink is not None and kink.any():
        tol_kink = tol + kink * (1 + 1e-6)
        if (err <= tol_kink).all():
            check.status = "kink"
            check.kink_margin = float((err / tol_kink).max())
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
        if kink is None or f"Z{l}" not in ref or network.normed(l):  # a normed layer is never excused a flip
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


def may_flip(Z: np.ndarray, E_Z: np.ndarray, kink: float, dtype: str) -> np.ndarray:
    """Which units of one kinked layer may take the other side of the kink in a correct reference (bool, Z's shape).

    For when the reference's own Z are not at hand. A unit may flip when its Z
    lies within its tolerance of the kink, and Z carries rounding at all::

        |Z - kink| <= tolerance(E_Z)   and   E_Z > 0

    ``E_Z = 0`` means Z was computed without rounding (every product and the
    bias zero): every correct implementation gets the same Z, so it cannot flip,
    and a mask that differs there is a real error.
    """
    Z, E_Z = np.asarray(Z, np.float64), np.asarray(E_Z, np.float64)
    return (np.abs(Z - kink) <= tolerance(E_Z, dtype)) & (E_Z > 0)


def possible_flips(network: Network, trace: Mapping[str, np.ndarray],
                   E: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Per kinked layer l, the units of ``trace``'s Zl that :func:`may_flip` (as 0/1 floats, (N, n_l)).

    The stand-in for :func:`flipped_units` when only the reference's gradients
    are at hand (a training re-check, a benchmark); it allows for every unit
    that could flip, where :func:`flipped_units` allows only for those that did.
    """
    out = {}
    for l, act in enumerate(network.activations, start=1):
        kink = ACTIVATIONS[act].kink
        if kink is None or network.normed(l):
            continue
        near = may_flip(trace[f"Z{l}"], E[f"Z{l}"], kink, network.dtype)
        if near.any():
            out[l] = near.astype(np.float64)
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
                        E: Mapping[str, np.ndarray], reference: str = "fd",
                        params: Mapping[str, np.ndarray] | None = None) -> dict[str, TensorCheck]:
    """Every compared tensor against finite-difference directional derivatives.

    For each direction v the engine's ``<G, v>`` must match the estimate within
    :func:`~.tolerance.projection_tolerance`: the engine's own rounding
    (``K <E, |v|>``), the sum's rounding, and the estimate's own error
    (:func:`~.tolerance.finite_difference_error`: its truncation, and the
    rounding of the loss evaluations, the policy's ``E_L`` taken in float64,
    divided by the step). A direction is judged only when that error can tell
    a right projection from a wrong one (:func:`~.tolerance.projection_judges`)
    and it crosses no kink; a tensor no direction judged is ``not judged``.
    Forward tensors are never judged: finite differences of the loss
    differentiate the engine's own forward, they cannot check it.

    Rounding at a kink: finite differences run the forward in float64, so a
    float32 unit within rounding of a ReLU kink may lie on the other side
    there. With ``params``, in float32, the units that may flip
    (:func:`possible_flips`) are allowed for along v (``<kink_scales, |v|>``),
    and a direction that passes only with that allowance makes the tensor
    ``kink``, as for a framework. (In float64 the reference's forward is the
    engine's own, bit for bit: nothing is allowed for.)
    """
    # E's rounding is linear in u: one float64 evaluation of the loss rounds by about E_L scaled to u64
    E_L = float(E["L"]) * UNIT_ROUNDOFF["float64"] / UNIT_ROUNDOFF[network.dtype]
    # in float64 the reference's forward is the engine's, bit for bit: no unit can lie on the other side
    flips = possible_flips(network, engine, E) if params is not None and network.dtype != "float64" else {}
    kinks = kink_scales(network, params, engine, flips) if flips else {}
    checks: dict[str, TensorCheck] = {}
    for name in compared_names(network):
        if name not in projections:
            checks[name] = TensorCheck(name, reference, NOT_JUDGED,
                                       note="finite differences of the loss differentiate the engine's own "
                                            "forward; they cannot judge its values")
            continue
        G = np.asarray(engine[name], np.float64)
        if not np.isfinite(G).all():  # dL/dAL where AL saturates (the checker leaves it out, and says why)
            checks[name] = TensorCheck(name, reference, NOT_JUDGED,
                                       note="the engine's value is not finite: no projection can judge it")
            continue
        typical = rms(G)
        worst: tuple[float, int, float, float, float] | None = None
        errs, rels, at_kink, noisy, overflowed, beyond, kink_margin = [], [], 0, 0, 0, 0, 0.0
        for i, p in enumerate(projections[name]):
            if p.at_kink:
                at_kink += 1
                continue
            if p.overflow:
                overflowed += 1
                continue
            mine = float((G * p.direction).sum())
            fd_error = finite_difference_error(p.truncation, E_L, p.step)
            exact_zero = p.flat and mine == 0  # the loss did not move at all, and the engine says 0
            if not exact_zero and not (np.isfinite(p.estimate)
                                       and projection_judges(fd_error, max(abs(mine), abs(p.estimate), typical))):
                noisy += 1
                continue
            tol = projection_tolerance(float((np.asarray(E[name]) * np.abs(p.direction)).sum()),
                                       float(np.abs(G * p.direction).sum()), G.size,
                                       p.truncation, E_L, p.step)
            err = abs(mine - p.estimate)
            errs.append(err)
            rels.append(err / max(abs(p.estimate), FLOOR["float64"]))
            beyond += err > tol
            if name in kinks:
                kink_margin = max(kink_margin, err / (tol + float((kinks[name] * np.abs(p.direction)).sum())
                                                      * (1 + 1e-6)))
            if worst is None or not err <= tol * worst[0]:
                worst = (err / tol, i, mine, p.estimate, tol)
        d = len(projections[name])
        extra = {"directions": d, "judged": len(errs), "at_kink": at_kink, "too_noisy": noisy,
                 "overflowed": overflowed}
        unjudged = _unjudged_note(at_kink, noisy, d, overflowed)
        if worst is None:
            checks[name] = TensorCheck(name, reference, NOT_JUDGED, extra=extra,
                                       note=f"finite differences cannot judge it: {unjudged}")
            continue
        margin, i, mine, est, tol = worst
        status, note = "ok", f"{unjudged}: not judged" if unjudged else ""
        if margin > 1:
            status = "kink" if name in kinks and kink_margin <= 1 else "fail"
        check = TensorCheck(
            name, reference, status,
            max_abs_err=max(errs), max_rel_err=max(rels), margin=margin,
            worst=Worst((i,), mine, est, tol), extra=extra, note=note,
            beyond=int(beyond), size=len(errs),
        )
        if status == "kink":
            n = int(sum(f.sum() for f in flips.values()))
            check.kink_margin = kink_margin
            layers = ", ".join(f"Z{l}" for l in flips)
            kink_note = (f"rounding at a ReLU kink: {n} unit(s) of {layers} within rounding of the kink "
                         "may lie on the other side in float64")
            check.note = f"{kink_note}; {note}" if note else kink_note
        checks[name] = check
    return checks


def _unjudged_note(at_kink: int, noisy: int, directions: int, overflowed: int = 0) -> str:
    """``of 2 directions, 1 crossed a ReLU kink at every step tried, 1 ...``; empty if every direction judged."""
    parts = []
    if overflowed:
        parts.append(f"{overflowed} took the loss beyond float64 at the step (values near the largest float)")
    if at_kink:
        parts.append(f"{at_kink} crossed a ReLU kink at every step tried")
    if noisy:
        parts.append(f"{noisy} had an estimate whose own error (truncation, and the rounding of the loss "
                     f"over a step kept short of a kink) could not tell a right gradient from a wrong one")
    return f"of {directions} direction(s), " + ", ".join(parts) if parts else ""
