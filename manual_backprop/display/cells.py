"""How numbers and verdicts are written, once, for the terminal and for HTML alike.

The command line (:mod:`manual_backprop.cli.check`, :mod:`manual_backprop.cli.validate`) and the
notebook and page renderers (:mod:`.html`, :mod:`.drawing`) read the same functions here, so a
verdict is worded and classified in one place:

- :func:`check_verdict`: a tensor of a ``check`` report: ``ok``, ``ok (kink rounding)``,
  ``FAIL (torch)``, ``NOT JUDGED`` (a gradient no reference judged: it keeps ``ok`` False) or
  ``not judged`` (a forward value finite differences cannot judge);
- :func:`claim_verdict`: a claim of ``validate``: ``right``, ``WRONG: own error (2 of 4)``,
  ``wrong: carried from dZ1 (6 of 12)``;

each with its *kind*, one of :data:`KINDS`, which picks the colour. A tensor not judged is
always the kind ``not_judged`` (grey), never ``right``.

This module reads the report objects by their attributes (duck typing): it imports nothing
from ``checking``, ``validation`` or ``testing``, which import it.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from typing import Any

import numpy as np

#: Every verdict kind, and what it means (the legend of the page).
KINDS = {
    "right": "right",
    "kink": "right once rounding at a ReLU kink is allowed for",
    "carried": "wrong, carried: the right rule applied to a wrong input",
    "own": "wrong on its own (the first mistake)",
    "wrong": "disagrees with a reference",
    "not_judged": "not judged (no reference judged it, or it was not claimed): never counted as right",
    "data": "given (parameters and data)",
}

#: Rows and columns of a tensor shown in a table cell; a larger one is cut with "…".
MAX_ROWS, MAX_COLS = 8, 8
#: The mark after a wrong element.
MARK = "✗"


def fmt(x: float | None) -> str:
    """A max|Δ| or a margin: ``-`` for none, ``0``, 4 significant digits, or ``1.1e-16``."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.1e}" if (abs(x) < 1e-3 or abs(x) >= 1e4) else f"{x:.4g}"


def compact(a: Any) -> str:
    """``[[0.1, -0.2], [0, 0]]``: 5 significant digits, no padding."""
    a = np.asarray(a)
    if a.ndim == 0:
        v = float(a)
        return "0" if v == 0 else f"{v:.5g}"
    return "[" + ", ".join(compact(x) for x in a) + "]"


# --- check ---------------------------------------------------------------------------------------

def margins(report: Any, name: str | None = None) -> list[float]:
    """The margins a check's verdicts rest on (after the kink allowance), of one tensor or of all."""
    pers = [report.checks.get(name, {})] if name is not None else list(report.checks.values())
    return [c.passing_margin for per in pers for c in per.values() if c.judged and c.passing_margin is not None]


def check_verdict(report: Any, name: str) -> tuple[str, str]:
    """The verdict of tensor ``name`` in a ``check`` report, as the terminal writes it, and its kind."""
    per = report.checks.get(name, {})
    bad = [r for r, c in per.items() if c.failed]
    if bad:
        return ("FAIL (" + ", ".join(f"{r}: {per[r].status}" if per[r].status != "fail" else r for r in bad) + ")",
                "wrong")
    if not report.judged(name):
        return ("NOT JUDGED" if name in report.gradients else "not judged"), "not_judged"
    if any(c.status == "kink" for c in per.values()):
        return "ok (kink rounding)", "kink"
    return "ok", "right"


def claims_not_judged(report: Any) -> str | None:
    """The one sentence (terminal and HTML alike) saying that ``check`` left the case's claims unjudged,
    or None when it has none::

        3 claimed values in the file were not judged: check compares the engine with the references;
        run manual-backprop validate net.toml to judge them.
    """
    names = list(getattr(report, "claims_not_judged", None) or [])
    if not names:
        return None
    source = str(getattr(report.case, "source", "") or "")
    if source.startswith("example "):
        where, how = "the file", f"run manual-backprop validate --example {source.removeprefix('example ')}"
    elif not source or source.startswith("<"):  # a case made in Python: no file to name
        where, how = "the case", "call manual_backprop.validate(case)"
    else:
        where, how = "the file", f"run manual-backprop validate {shlex.quote(source)}"
    values = "1 claimed value" if len(names) == 1 else f"{len(names)} claimed values"
    return (f"{values} in {where} {'was' if len(names) == 1 else 'were'} not judged: check compares the engine "
            f"with the references; {how} to judge them.")


def reference_cell(report: Any, name: str, ref: str) -> str:
    """One reference's max|Δ| for one tensor: ``-`` if it has nothing to say there."""
    c = report.checks.get(name, {}).get(ref)
    if c is None or (not c.judged and name not in report.gradients):
        return "-"
    return "not judged" if not c.judged else fmt(c.max_abs_err)


def check_columns(report: Any) -> list[str]:
    """The columns of the terminal's ``check`` table."""
    return ["tensor", "shape", *[f"{r} max|Δ|" for r in report.references], "margin", "verdict"]


def check_row(report: Any, name: str) -> list[str]:
    """One row of the terminal's ``check`` table (plain text; the verdict last)."""
    m = margins(report, name)
    return [name, str(tuple(report.case.shown(name, report.trace[name]).shape)),
            *[reference_cell(report, name, r) for r in report.references],
            fmt(max(m)) if m else "-", check_verdict(report, name)[0]]


# --- validate ------------------------------------------------------------------------------------

def claims_judged(report: Any) -> str:
    """How a ``validate`` report's claims were judged, terminal and page alike: ``12 claims, each judged at
    the precision it was written with`` (``; 3 exact, judged to the tolerance alone`` when some are)."""
    n = len(report.claims)
    exact = sum(1 for c in report.claims.values() if not np.any(c.check.written))
    text = f"{n} claim{'s' if n != 1 else ''}, each judged at the precision it was written with"
    if exact == n:
        return f"{n} claim{'s' if n != 1 else ''}, each exact (judged to the tolerance alone)"
    return text + (f" ({exact} exact, judged to the tolerance alone)" if exact else "")


def claim_verdict(c: Any) -> tuple[str, str]:
    """The verdict of one claim of ``validate`` (a ``ClaimReport``), as the terminal writes it, and its kind."""
    check = c.check
    if c.ok:
        return "right", "right"
    count = ""
    if check.wrong is not None and check.wrong.size > 1:
        count = f" ({int(check.wrong.sum())} of {check.wrong.size})"
    if check.status in ("transposed", "shape"):
        count = f" (shape {tuple(check.claimed.shape)}, not {tuple(check.true.shape)})"
    if c.error == "carried":
        return f"wrong: carried from {', '.join(c.carried_from)}{count}", "carried"
    return f"WRONG: own error{count}", "own"


def decimals(resolution: float) -> int:
    """How many decimals a value of this resolution was written with (0.5 or more -> 0, 5e-5 -> 4, 0 -> 17)."""
    if resolution <= 0:
        return 17
    return min(20, max(0, round(-math.log10(2 * resolution))))


def number(x: float, resolution: float, trim: bool = False) -> str:
    """``x`` with the decimals its resolution implies (``trim``: without trailing zeros); never "-0".

    An exact value (resolution 0: an exact claim, or one judged as exact) is written in the shortest
    form that reads back as the same float64 (``0.5``, ``2.0``, ``0.40704483298830035``, ``1e-20``),
    not padded to 17 decimals."""
    if resolution <= 0 and math.isfinite(x):
        text = repr(float(x))
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    text = f"{x:.{decimals(resolution)}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def tensor_lines(a: np.ndarray, resolution: np.ndarray, wrong: np.ndarray | None,
                 trim: np.ndarray | None, element: Callable[[str, bool], str]) -> list[str]:
    """A tensor as rows of numbers, one matrix row (or per-sample block) per line.

    Each number is written with the decimals its resolution implies, then handed to
    ``element(text, is_wrong)``, which escapes it and marks a wrong one for its medium (rich
    markup in the terminal, a ``<span>`` in HTML). At most :data:`MAX_ROWS` rows and
    :data:`MAX_COLS` items per row are shown.
    """
    a = np.asarray(a, dtype=np.float64)
    res = np.broadcast_to(np.asarray(resolution, dtype=np.float64), a.shape)

    def one(idx) -> str:
        return element(number(float(a[idx]), float(res[idx]), trim is not None and bool(trim[idx])),
                       wrong is not None and bool(wrong[idx]))

    if a.ndim == 0:
        return [one(())]
    if a.ndim == 1:
        return [_row([one((j,)) for j in range(a.shape[0])])]
    lines = []
    for i in range(min(a.shape[0], MAX_ROWS)):
        if a.ndim == 2:
            lines.append(_row([one((i, j)) for j in range(a.shape[1])]))
        else:
            lines.append(_row([_row([one((i, j, k)) for k in range(a.shape[2])]) for j in range(a.shape[1])]))
    if a.shape[0] > MAX_ROWS:
        lines.append(f"… {a.shape[0] - MAX_ROWS} more rows")
    return lines


def _row(items: list[str]) -> str:
    if len(items) > MAX_COLS:
        items = items[:MAX_COLS - 1] + [f"… ({len(items)} in all)"]
    return "[" + ", ".join(items) + "]"


def in_shape(res: np.ndarray, like: np.ndarray, layout: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """A claim's resolution in the true value's layout (``layout``: validation's ``in_layout``, which
    turns a claim written transposed back)."""
    res = layout(np.asarray(res), like)
    return res if res.shape == like.shape else np.full(like.shape, float(np.min(res)))


def claim_lines(check: Any, whole: float, layout: Callable, element: Callable[[str, bool], str]
                ) -> tuple[list[str], list[str]]:
    """The claimed and the true cell of one claim (a ``ClaimCheck``): the claim as written, its wrong
    elements marked; the true value at the precision the claim is judged at (without trailing
    zeros where the claim was a whole number, ``whole`` being the loader's resolution of one)."""
    claimed = tensor_lines(check.claimed, check.written, check.wrong, None, element)
    true = tensor_lines(check.true, in_shape(check.resolution, check.true, layout), None,
                        in_shape(check.written, check.true, layout) == whole, element)
    return claimed, true


def plain_lines(a: Any, max_rows: int = MAX_ROWS) -> list[str]:
    """An unclaimed or engine tensor's value, 5 significant digits, one matrix row per line."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim <= 1:
        return [_cut(compact(a))]
    rows = [_cut(compact(r)) for r in a[:max_rows]]
    if a.shape[0] > max_rows:
        rows.append(f"… {a.shape[0] - max_rows} more rows")
    return rows


def _cut(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
