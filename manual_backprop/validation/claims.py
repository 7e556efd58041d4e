"""Judging a claim at the precision it was written with.

A claimed element is right when::

    |claimed - true| <= resolution + tolerance

``resolution`` is half a unit in the last decimal written (``0.40704483``
is right if the truth rounds to it: within 5e-9); ``tolerance`` is the
project's rounding policy, ``K * E + floor`` (:mod:`manual_backprop.compare`),
the most two correct computations of the tensor may differ by.

Whole numbers need a decision. The file loader reads ``0`` as 0 ± 0.5, but
in a derivation a whole number is rarely a rounding to units: seed 000's
table writes ``h = [0, 0]`` beside ``z2 = [0.28496, 0.13220]``, and
``h = 0.5`` must not pass as "0 rounded". So a whole number is read at the
precision of the decimals written beside it: the coarsest decimal
resolution in the same tensor, else in the whole ``[claimed]`` table; a
derivation written in whole numbers only keeps ± 0.5. Seed 003's
``dZ3 = [0.5, -0.5, 0]`` thus reads ``0`` as 0.0 ± 0.05, and seed 000's
``h = [0, 0]`` as 0.00000 ± 0.000005.

Exact claims have resolution 0 and are judged with the tolerance alone:
``exact = true`` in ``[claimed]`` (every claim), ``dZ1 = { value = [...],
exact = true }`` (one tensor, overriding the table's), and every array passed
from Python (``make_case(..., claimed={"dW1": array})``). Borrowing never
touches them, and they lend nothing to the whole numbers elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..compare import mismatch_sentence, tolerance
from ..description.case import Claim

#: The loader's resolution of a number written without a decimal point.
WHOLE = 0.5


def judged_resolutions(claims: Mapping[str, Claim]) -> dict[str, np.ndarray]:
    """The resolution each claimed element is judged at (whole numbers read as above).

    An exact element (resolution 0: ``exact = true`` in the file, or an array passed from Python)
    stays exact, and lends nothing: it says nothing about how the numbers beside it were rounded,
    so a whole number borrows only from decimals *written* beside it (> 0), else keeps ± 0.5.
    """
    decimal = [np.asarray(c.resolution)[_written(np.asarray(c.resolution))] for c in claims.values()]
    decimal = [d for d in decimal if d.size]
    table = max(float(d.max()) for d in decimal) if decimal else WHOLE
    out = {}
    for name, claim in claims.items():
        res = np.array(claim.resolution, dtype=np.float64)
        whole = res == WHOLE
        if whole.any():
            beside = res[_written(res)]
            res[whole] = float(beside.max()) if beside.size else table
        out[name] = res
    return out


def _written(res: np.ndarray) -> np.ndarray:
    """Which elements were written with decimals: neither a whole number (``WHOLE``) nor exact (0)."""
    return (res != WHOLE) & (res > 0)


def is_transposed(claimed: np.ndarray, true: np.ndarray) -> bool:
    """A 2-D claim written in the transposed layout: shape (n, m) where (m, n) is expected."""
    return claimed.ndim == 2 and true.ndim == 2 and claimed.shape != true.shape and claimed.shape == true.shape[::-1]


def in_layout(value: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``value`` in ``like``'s layout: transposed back if it was written transposed."""
    return value.T if is_transposed(value, like) else value


@dataclass
class ClaimCheck:
    """One claimed tensor beside its true value.

    A type of its own (not :class:`~manual_backprop.compare.TensorCheck`): it
    carries the claim as written, its resolution and which elements are wrong,
    which the diagnosis reads. Its failure sentence is the comparator's
    (:func:`~manual_backprop.compare.mismatch_sentence`), as for every check.
    """

    name: str
    claimed: np.ndarray          # as written (possibly in the transposed layout)
    true: np.ndarray
    written: np.ndarray          # resolution as written, in claimed's shape
    resolution: np.ndarray       # resolution as judged (whole numbers read beside their decimals)
    tolerance: np.ndarray        # K * E + floor, in true's shape
    status: str                  # right | wrong | transposed | shape
    wrong: np.ndarray | None     # which claimed elements are wrong (None for a shape mismatch)
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    margin: float | None = None  # worst |claimed - true| / allowed: at most 1 is right
    worst: tuple[int, ...] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "right"

    def message(self) -> str:
        """Why the claim is wrong, in the comparator's words (empty for a right claim)::

            dW2[0, 1] disagrees with the true value: claimed 0.41, true 0.40704483, |Δ| 0.00296
            (up to 5e-09 allowed); 1 of 4 elements beyond their tolerance
        """
        if self.ok:
            return ""
        if self.worst is None or self.wrong is None:
            return (f"{self.name}: shape {tuple(self.claimed.shape)} claimed, {tuple(self.true.shape)} expected"
                    + (" (the transposed layout)" if self.status == "transposed" else ""))
        allowed = float((self.resolution + self.tolerance)[self.worst])
        return mismatch_sentence(self.name, self.worst, float(self.claimed[self.worst]), float(self.true[self.worst]),
                                 allowed, ours_label="claimed", reference="the true value", theirs_label="true",
                                 beyond=int(self.wrong.sum()), size=int(self.wrong.size))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "status": self.status, "max_abs_err": self.max_abs_err,
                               "max_rel_err": self.max_rel_err, "margin": self.margin,
                               "claimed": self.claimed.tolist(), "shape_claimed": list(self.claimed.shape)}
        if self.wrong is not None:
            out["wrong_elements"] = [list(map(int, i)) for i in np.argwhere(self.wrong)]
        if self.worst is not None:
            out["worst"] = {"index": list(self.worst), "claimed": float(self.claimed[self.worst]),
                            "true": float(self.true[self.worst]),
                            "allowed": float((self.resolution + self.tolerance)[self.worst])}
        if not self.ok:
            out["message"] = self.message()
        return out


def judge(name: str, claim: Claim, true: np.ndarray, E: np.ndarray, dtype: str,
          resolution: np.ndarray | None = None) -> ClaimCheck:
    """Judge ``claim`` against ``true`` (float64) with the rounding scale ``E`` of a network of ``dtype``."""
    claimed = np.asarray(claim.value, dtype=np.float64)
    written = np.asarray(claim.resolution, dtype=np.float64)
    res = written if resolution is None else resolution
    tol = tolerance(np.asarray(E, dtype=np.float64), dtype)
    if claimed.shape != true.shape:
        status = "transposed" if is_transposed(claimed, true) else "shape"
        return ClaimCheck(name, claimed, true, written, res, tol, status, None)
    err = np.abs(claimed - true)
    allowed = res + tol
    ratio = err / allowed
    wrong = ~(ratio <= 1)  # a NaN (claimed or true) is never right
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape)) if ratio.ndim else ()
    rel = err / np.maximum(np.abs(true), allowed)  # against a true 0, relative to what the claim may miss by
    return ClaimCheck(name, claimed, true, written, res, tol, "wrong" if wrong.any() else "right", wrong,
                      float(err.max()) if err.size else 0.0, float(rel.max()) if rel.size else 0.0,
                      float(ratio.max()) if ratio.size else 0.0, worst)
