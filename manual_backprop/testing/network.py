"""Check a whole network written in the user's own NumPy code: one call, or one command.

    from manual_backprop.testing.network import assert_network_matches, check_network

    report = check_network(TwoLayerNet, network)       # a class, an instance, or a function
    report.ok, report.first_wrong, print(report.message())

**The forms accepted** (detected from what ``fn`` is, and from what it returns):

- ``fn(params, X, Y)`` returning a mapping of tensor names to arrays, any
  subset of the network's trace (``L``, ``Z1``, ``A1``, ``dZ2``, ``dW1``,
  ``dX``, ...): every tensor returned is judged, the intermediate ones too;
- ``fn(params, X, Y)`` returning ``(loss, grads)``, ``grads`` keyed by the
  parameter's name (``W1``, ``b1``, ... as in the course code, or ``dW1``,
  ``db1``; the names are case-sensitive: ``w1`` is refused with a hint);
- an object with a ``params`` dict and ``loss(X, y) -> (loss, grads)`` (the
  CS231n ``TwoLayerNet`` convention), used as it is: before every call the
  harness sets ``obj.params[name]`` to a copy of the trial's parameters;
- a class of such objects, instantiated once (:func:`instantiate`).

Shapes are the row layout of :class:`~manual_backprop.description.network.Network`:
``params`` ``{"W1": (n0, n1), "b1": (n1,), ...}``, ``X`` ``(N, n0)``, ``Y``
the integer labels ``(N,)`` for ``softmax_cross_entropy`` (else the ``(N, K)``
targets); ``L`` is the mean (or sum) loss, ``L = c * sum_i loss_i``.

**The trials** (every one in float64 but the last):

- ``random``: the parameters and data of the case given (a network file's own,
  or drawn from ``seed`` with ``batch`` rows);
- ``batch 1``: its first row alone (with ``batch > 1`` in ``random``, a missing
  or extra 1/N shows: at N = 1 it cannot);
- ``kink`` (a first layer whose activation kinks at 0, as ReLU): ``X[0]`` is
  the unit vector e_0 and ``b1[j] = -W1[0, j]`` for every other unit j, so
  ``Z1[0, j] = 1 * W1[0, j] + 0 + ... + b1[j]`` is exactly 0 in any order of
  summation; the derivative there is 0 (torch, JAX), so a ``Z >= 0`` mask is wrong;
- ``float32``: the ``random`` trial in float32, judged at float32's precision;
- ``batch n`` (only after a tensor of shape ``(N,)`` where ``(n,)`` belongs, as
  ``db = dZ.sum(axis=1)``): the case again with ``n`` rows, so that the
  catalogue can name the mistake the shapes hid.

Each trial's returned tensors become exact claims (``Claim(value, 0)``) of a
:class:`~manual_backprop.description.case.Case`, judged by
:func:`~manual_backprop.validation.validate` (the engine's float64 truth, the
one tolerance policy, the first wrong tensor in derivation order, own or
carried, and the catalogue's mistake): nothing is judged here a second way.

**Your own loss's finite differences.** In the ``random`` trial, when ``fn``
returns ``L`` and parameter gradients, the loss *your* code computes is
differentiated along a few random unit directions v of each parameter P::

    <dP, v>  ~  (4 D(h/2) - D(h)) / 3,   D(t) = (L(P + t v) - L(P - t v)) / 2t

(central differences at h = 1e-3 max(1, rms P) and h/2, Richardson-combined,
with a step that crosses no ReLU kink of the true forward), and compared with
your ``dP`` by the comparator (:func:`~manual_backprop.compare.compare_projections`).
It tells a wrong forward from a wrong backward: a loss that disagrees with the
truth while your gradients agree with its differences is a wrong forward with
a self-consistent backward.

The user's code is untrusted: it gets copies, whatever it raises or returns
is one line in the report (status ``error``), never a traceback; only
``KeyboardInterrupt`` and ``SystemExit`` escape. Writing into its inputs is
reported. A bad option or network is an :class:`~manual_backprop.errors.InputError`.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..compare import TensorCheck, compare_projections
from ..description.case import Case, Claim, cast_arrays, make_case
from ..description.convention import ROW, Convention, accepted_shapes, shape_text, to_user
from ..description.network import Network
from ..engine.trace import forward
from ..errors import InputError
from ..kernels import ACTIVATIONS
from ..references.finite_diff import ATTEMPTS, DIRECTIONS, RELATIVE_STEP, Projection, richardson, rms
from ..validation import ClaimReport, Validation, validate
from .signatures import Unreadable as _Unreadable
from .signatures import UserError as _UserError
from .signatures import call as _call
from .signatures import describe as _describe
from .signatures import exception as _exception
from .signatures import read as _read
from .signatures import short as _short
from .signatures import user_array

__all__ = ["NetworkReport", "TrialResult", "assert_network_matches", "check_network", "instantiate"]

#: What each form is called in a report.
FORMS = {
    "trace": "fn(params, X, Y) returning named tensors",
    "loss_grads": "fn(params, X, Y) returning (loss, grads)",
    "object": "an object with params and loss(X, y) returning (loss, grads)",
}

#: The ``__init__`` parameters a class is instantiated with, by name: the sizes of the network.
SIZE_PARAMETERS = (
    ("input_size", "hidden_size", "output_size"),   # CS231n assignment 1 TwoLayerNet
    ("input_dim", "hidden_dim", "num_classes"),     # CS231n assignment 2 TwoLayerNet
)

#: The kinds of step (:mod:`manual_backprop.validation.steps`) that make the forward.
FORWARD_KINDS = ("data", "linear", "activation", "loss")


@dataclass
class TrialResult:
    """One trial: what the user's code returned, judged, and what was wrong with it."""

    name: str
    purpose: str
    batch: int
    dtype: str
    error: str | None = None                 # the code raised, or returned nothing to judge: one line
    problems: dict[str, str] = field(default_factory=dict)  # tensor (or "") -> why it is not judged
    notes: list[str] = field(default_factory=list)          # reported, not failing (inputs written into)
    validation: Validation | None = None
    fd: dict[str, TensorCheck] = field(default_factory=dict)  # your gradients vs your own loss's differences
    fd_note: str = ""
    wrong_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # as returned, not judged

    @property
    def ok(self) -> bool:
        return (self.error is None and not self.problems and self.validation is not None and self.validation.ok
                and not any(c.failed for c in self.fd.values()))

    @property
    def wrong(self) -> list[str]:
        """Every tensor wrong in this trial, in derivation order (the problems' first)."""
        order = self._order()
        names = [n for n in self.problems if n] + (
            [n for n, c in self.validation.claims.items() if not c.ok] if self.validation else [])
        return sorted(dict.fromkeys(names), key=lambda n: order.get(n, len(order)))

    @property
    def first_wrong(self) -> str | None:
        wrong = self.wrong
        return wrong[0] if wrong else None

    def _order(self) -> dict[str, int]:
        if self.validation is None:
            return {}
        return {n: i for i, n in enumerate(self.validation.steps)}

    def verdict(self) -> str:
        if self.error is not None:
            return "ERROR: " + self.error
        judged = list(self.validation.claims) if self.validation else []
        if self.ok:
            return f"right ({', '.join(judged)})"
        wrong = self.wrong
        if not wrong:
            return "WRONG: " + "; ".join(self.problems.values())
        first = wrong[0]
        if first in self.problems:
            how = "not judged: " + self.problems[first]
        else:
            how = "own error" if self.validation.claims[first].error == "own" else \
                f"carried from {', '.join(self.validation.claims[first].carried_from)}"
        more = f"; also wrong: {', '.join(wrong[1:])}" if len(wrong) > 1 else ""
        return f"WRONG: {first} ({how}){more}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "purpose": self.purpose, "batch": self.batch, "dtype": self.dtype,
                               "ok": self.ok, "error": self.error, "problems": self.problems, "notes": self.notes,
                               "first_wrong": self.first_wrong, "wrong": self.wrong}
        if self.validation is not None:
            v = self.validation
            out.update(own_errors=v.own_errors, carried_errors=v.carried_errors,
                       claims={n: c.to_json() for n, c in v.claims.items()})
        if self.fd or self.fd_note:
            out["fd_of_your_loss"] = {"note": self.fd_note, "checks": {n: c.to_json() for n, c in self.fd.items()}}
        return out


@dataclass(repr=False)
class NetworkReport:
    """Every trial of one piece of code; :meth:`message` is what the command line prints."""

    name: str
    form: str
    network: Network
    trials: list[TrialResult] = field(default_factory=list)
    source: str = "<options>"
    truth: str = ""  # how the truth was confirmed against the frameworks (the random trial)
    truth_confirmed: bool = True

    @property
    def ok(self) -> bool:
        return bool(self.trials) and all(t.ok for t in self.trials) and self.truth_confirmed

    @property
    def first_failing(self) -> TrialResult | None:
        return next((t for t in self.trials if not t.ok), None)

    @property
    def first_wrong(self) -> str | None:
        """The first wrong tensor (derivation order: forward, then backward) of the first failing trial."""
        t = self.first_failing
        return t.first_wrong if t else None

    @property
    def first_wrong_trial(self) -> str | None:
        t = self.first_failing
        return t.name if t else None

    @property
    def diagnosis(self) -> str | None:
        """The catalogue's sentence for the first wrong tensor (from the trial that names it best)."""
        claim = self._first_claim()
        return claim.diagnosis if claim else None

    @property
    def mistake(self) -> str | None:
        """The catalogue id of the mistake behind the first wrong tensor (``relu_mask_missing``), if one fits."""
        claim = self._first_claim()
        return claim.fits[0].mistake.id if claim and claim.fits else None

    @property
    def wrong_part(self) -> str | None:
        """``"forward"``, ``"backward"``, ``"forward and backward"``, or None (right, or not told apart).

        From the first failing trial: the forward is wrong when a forward tensor (L, Z1, ...) is,
        the backward when a gradient is; with the finite differences of your own loss (the
        ``random`` trial), a wrong L whose gradients agree with its differences is a wrong
        forward with a self-consistent backward.
        """
        t = self.first_failing
        if t is None or t.validation is None:
            return None
        fd = next((x.fd for x in self.trials if x.fd), {})
        steps = t.validation.steps
        wrong = [n for n in t.wrong if n in steps]
        fwd = any(steps[n].kind in FORWARD_KINDS for n in wrong)
        bwd = any(steps[n].kind not in FORWARD_KINDS for n in wrong)
        fd_failed = any(c.failed for c in fd.values())
        if fwd and bwd:
            # your gradients follow your own (wrong) loss: the backward is right for the forward you wrote
            return "forward and backward" if fd_failed or not any(c.ok for c in fd.values()) else "forward"
        if fwd:
            return "forward"
        if bwd:
            return "backward"
        return "forward" if fd_failed else None  # right here, but your loss moves unlike your gradients

    def _first_claim(self) -> ClaimReport | None:
        first = self.first_wrong
        if first is None:
            return None
        for t in [self.first_failing] + [t for t in self.trials if t is not self.first_failing]:
            if t.validation is not None and first in t.validation.claims and not t.validation.claims[first].ok:
                c = t.validation.claims[first]
                if c.diagnosis or t is self.trials[-1]:
                    return c
        return None

    def summary(self) -> list[str]:
        """The verdict in a few sentences."""
        if not self.truth_confirmed:
            return ["No verdict on your code: the truth it is judged against disagrees with the frameworks."]
        if self.ok:
            return [f"All {len(self.trials)} trials right: {', '.join(t.name for t in self.trials)}."]
        t = self.first_failing
        if t.error is not None:
            return [f"{t.name} trial: {t.error}"]
        first = t.first_wrong
        lines = []
        if first is None:
            lines.append(f"{t.name} trial: " + "; ".join(p for p in t.problems.values()))
        elif first in t.problems:
            lines.append(f"First wrong: {first} in the {t.name} trial: {t.problems[first]}.")
            claim = self._first_claim()
            if claim is not None and claim.diagnosis:
                where = next(x.name for x in self.trials if x.validation and claim in x.validation.claims.values())
                lines.append(f"In the {where} trial, where it has its shape: {claim.diagnosis}")
        else:
            c = t.validation.claims[first]
            how = "wrong on its own." if c.error == "own" else f"carried from {', '.join(c.carried_from)}."
            lines.append(f"First wrong: {first} in the {t.name} trial, {how}")
            lines.append(c.check.message())
            claim = self._first_claim()
            if claim is not None and claim.diagnosis:
                lines.append(claim.diagnosis)
            lines += c.notes
        part = self.wrong_part
        told = _told_apart(self)
        if told:
            lines.append(told)
        elif part:
            lines.append(f"The {part} is wrong.")
        return lines

    def message(self) -> str:
        """The table of trials and the summary, as the command line prints them."""
        head = (f"{self.name}: {self.form} · network {self.network.describe()} · {self.source}")
        rows = [("trial", "batch", "dtype", "verdict")]
        rows += [(t.name, str(t.batch), t.dtype, t.verdict()) for t in self.trials]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        table = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
        lines = [head, *table]
        failing = self.first_failing
        if failing is not None and failing.validation is not None and failing.validation.claims:
            lines.append(f"Tensors of the {failing.name} trial (in derivation order):")
            for n, c in failing.validation.claims.items():
                lines.append(f"  {n}: {_claim_verdict(c)}")
        for name, problem in (failing.problems.items() if failing else ()):
            lines.append(f"  {name or 'returned'}: {problem}")
        for t in self.trials:
            for note in t.notes:
                lines.append(f"Note ({t.name} trial): {note}")
        if self.truth:
            lines.append(self.truth[0].upper() + self.truth[1:] + ".")
        fd_line = _fd_line(self)
        if fd_line:
            lines.append(fd_line)
        lines += self.summary()
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.message()

    def _display_options(self) -> dict[str, Any]:
        from ..validation.claims import WHOLE, in_layout

        return {"whole": WHOLE, "layout": in_layout}

    def _repr_html_(self) -> str:
        """The notebook table: the trials (trial, batch, dtype, verdict), then the tensors of the first
        failing trial, yours beside the true ones, verdicts coloured."""
        from ..display.html import report_html

        return report_html(self, **self._display_options())

    def __repr__(self) -> str:
        from ..display.html import report_text

        return report_text(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"<{type(self).__name__}>" if cycle else self.message())

    def to_html(self, path: Any = None, *, backend: str | None = None) -> str:
        """One self-contained HTML page: the network with the failing trial's tensors on it, and the
        tables; written atomically to ``path`` when given."""
        from ..display.html import page
        from ..files import write_atomically

        text = page(self, backend=backend, **self._display_options())
        if path is not None:
            write_atomically(path, text)
        return text

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "name": self.name, "form": self.form, "network": self.network.describe(),
                "source": self.source, "first_wrong": self.first_wrong, "first_wrong_trial": self.first_wrong_trial,
                "mistake": self.mistake, "diagnosis": self.diagnosis, "wrong_part": self.wrong_part,
                "summary": self.summary(), "truth": self.truth, "truth_confirmed": self.truth_confirmed,
                "trials": [t.to_json() for t in self.trials]}


def _claim_verdict(c: ClaimReport) -> str:
    if c.ok:
        return "right"
    check = c.check
    count = f", {int(check.wrong.sum())} of {check.wrong.size} elements" if check.wrong is not None else ""
    how = "own error" if c.error == "own" else f"carried from {', '.join(c.carried_from)}"
    return f"WRONG ({how}{count}): {check.message()}"


def _fd_line(report: NetworkReport) -> str:
    t = next((t for t in report.trials if t.fd or t.fd_note), None)
    if t is None:
        return ""
    if not t.fd:
        return f"Finite differences of your own loss ({t.name} trial): {t.fd_note}"
    agree = [n for n, c in t.fd.items() if c.ok]
    fail = [n for n, c in t.fd.items() if c.failed]
    unjudged = [n for n, c in t.fd.items() if not c.judged]
    parts = []
    if agree:
        parts.append(f"{', '.join(agree)} agree with them")
    if fail:
        parts.append(f"{', '.join(fail)} disagree ({t.fd[fail[0]].message(ours='yours')})")
    if unjudged:
        parts.append(f"{', '.join(unjudged)} not judged ({t.fd[unjudged[0]].note})")
    return f"Finite differences of your own loss ({t.name} trial): " + "; ".join(parts) + "."


def _told_apart(report: NetworkReport) -> str:
    """The sentence that tells a wrong forward from a wrong backward, when the differences can."""
    t, fd = report.first_failing, next((x.fd for x in report.trials if x.fd), {})
    if t is None or t.validation is None or not fd:
        return ""
    part = report.wrong_part
    steps = t.validation.steps
    wrong_fwd = [n for n in t.wrong if n in steps and steps[n].kind in FORWARD_KINDS]
    fd_failed = any(c.failed for c in fd.values())
    if part == "forward" and not wrong_fwd:
        return ("Your loss and gradients agree with the truth here, but your gradients disagree with finite "
                "differences of your own loss: your loss is wrong near this point.")
    if part == "forward" and not fd_failed:
        return (f"Your forward is wrong ({', '.join(wrong_fwd)}) and your backward is consistent with it: your "
                f"gradients agree with finite differences of your own loss. Fix the forward.")
    if part == "forward":
        return (f"Your forward is wrong ({', '.join(wrong_fwd)}) but your gradients are the true ones: they "
                f"disagree with finite differences of your own loss. Fix the forward.")
    if part == "backward" and fd_failed:
        return ("Your forward is right and your backward is not: your gradients disagree with the truth and "
                "with finite differences of your own loss.")
    if part == "forward and backward":
        return (f"Both are wrong: the forward ({', '.join(wrong_fwd)}) and the backward, whose gradients "
                f"disagree with finite differences of your own loss too.")
    return ""


# --- the user's code, whatever form it takes -------------------------------------------------------


class UserCode:
    """The user's ``fn`` in one of the forms, run on copies: ``call(params, X, Y) -> (values, problems, notes)``."""

    def __init__(self, fn: Any, network: Network, name: str | None = None, convention: Convention = ROW):
        self.network = network
        self.convention = convention  # the user's code gets its arrays, and gives them, in this view
        self.kind = "function"
        self.obj = fn
        if inspect.isclass(fn):
            self.label = name or fn.__name__
            self.kind = "class"
            return
        if _is_course_object(fn):
            self.kind = "object"
            self.label = name or type(fn).__name__
            return
        if callable(fn):
            self.label = name or getattr(fn, "__name__", type(fn).__name__)
            try:
                sig = inspect.signature(fn)
            except (TypeError, ValueError):
                return  # a builtin: it is tried as it is
            try:
                sig.bind(None, None, None)
            except TypeError:
                raise InputError(f"{self.label} is not a recognised form: a function must take (params, X, Y), "
                                 f"got {self.label}{sig}; or give an object with params and loss(X, y)") from None
            return
        raise InputError(f"{name or _short(fn)} is not a recognised form: give fn(params, X, Y), a class or "
                         f"an object with a params dict and loss(X, y), got {_describe(fn)}")

    def setup(self) -> str | None:
        """Instantiate a class (its ``__init__`` is the user's code): None, or the one-line error."""
        if self.kind != "class":
            return None
        try:
            self.obj, call = instantiate(self.obj, self.network)
        except _UserError as e:
            return str(e)
        self.label = call
        if not _is_course_object(self.obj):
            return (f"{call} made {_describe(self.obj)} without a params dict and a loss(X, y) method; "
                    f"a class must make an object of the course form")
        self.kind = "object"
        return None

    @property
    def form(self) -> str:
        return FORMS["object"] if self.kind in ("object", "class") else "fn(params, X, Y)"

    def call(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray):
        """The user's result for one set of inputs: ``(shape, values, problems, notes)``.

        ``shape`` is ``"trace"`` or ``"loss_grads"``; ``values`` maps trace names to copies of the
        arrays returned (or an :class:`_Unreadable`); inputs written into are ``notes``.
        """
        view = self.convention
        params = {k: to_user(view, k, v) for k, v in params.items()}
        X, Y = to_user(view, "X", X), (to_user(view, "Y", Y) if Y.ndim == 2 else Y)
        mine = {k: np.array(v, order="C") for k, v in params.items()}
        X_in, Y_in = np.array(X, order="C"), np.array(Y, order="C")
        notes: list[str] = []
        if self.kind == "object":
            where = f"{self.label}.loss"
            store = _read(where, lambda: self.obj.params, self.obj)
            try:
                for k, v in mine.items():
                    store[k] = v
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # noqa: BLE001
                raise _UserError(where, f"setting {self.label}.params[{k!r}] raised {_exception(e)}") from None
            result = _call(where, self.obj.loss, X_in, Y_in)
            extra = _read(where, lambda: sorted(set(map(str, store)) - set(params)), store)
            if extra:
                notes.append(f"{self.label}.params also holds {', '.join(extra)}, which this network has not")
            for k, given in params.items():
                now = _read(where, lambda k=k: store.get(k), store)
                if now is not mine[k] or not np.array_equal(mine[k], given):
                    notes.append(f"{where} changed params[{k!r}] (it must leave the parameters as they are)")
            shape = "loss_grads"
        else:
            where = self.label
            result = _call(where, self.obj, mine, X_in, Y_in)
            for k, given in params.items():
                if not np.array_equal(mine[k], given):
                    notes.append(f"{where} wrote into params[{k!r}] (it was given a copy)")
            shape = "trace" if isinstance(result, Mapping) else "loss_grads"
        for label, given, kept in (("X", X_in, X), ("Y" if self.kind != "object" else "y", Y_in, Y)):
            if not np.array_equal(given, kept):
                notes.append(f"{where} wrote into {label} (it was given a copy)")
        values, problems = self.read(where, shape, result)
        return shape, values, problems, notes

    def read(self, where: str, shape: str, result: Any) -> tuple[dict[str, Any], dict[str, str]]:
        net = self.network
        problems: dict[str, str] = {}
        values: dict[str, Any] = {}
        if shape == "trace":
            known = net.names()
            for key, value in _read(where, lambda: list(result.items()), result):
                if not isinstance(key, str) or key not in known:
                    problems[""] = (f"{where} returned an unknown tensor {_short(key)}; this network's tensors "
                                    f"are {', '.join(known)}")
                    continue
                values[key] = user_array(where, key, value, net.dtype)
            if not values:
                raise _UserError(where, f"{where} returned an empty mapping; it must name tensors such as "
                                        f"L, Z1, dW1")
            return values, problems
        usage = "it must return (loss, grads), grads a dict keyed by parameter name (W1, b1, ...)"
        pair = _read(where, lambda: tuple(result), result) if isinstance(result, (tuple, list)) else None
        if pair is None or len(pair) != 2:
            got = f"a {type(result).__name__} of {len(pair)} values" if pair is not None else _describe(result)
            hint = "; or a mapping of tensor names" if self.kind == "function" else ""
            raise _UserError(where, f"{where} returned {got}; {usage}{hint}")
        loss, grads = pair
        if not isinstance(grads, Mapping):
            raise _UserError(where, f"{where} returned (loss, {_describe(grads)}); {usage}")
        L = user_array(where, "the loss", loss, net.dtype)
        if isinstance(L, np.ndarray) and L.size == 1:
            L = L.reshape(())
        values["L"] = L if L is not None else _Unreadable(f"{where} returned the loss as None")
        shapes = net.parameter_shapes()
        for key, value in _read(where, lambda: list(grads.items()), grads):
            param = key[1:] if isinstance(key, str) and key.startswith("d") and key[1:] in shapes else key
            if not isinstance(param, str) or param not in shapes:
                hint = ""
                if isinstance(key, str) and key[:1] in "wB" and key[:1].swapcase() + key[1:] in shapes:
                    hint = f" (did you mean {key[:1].swapcase() + key[1:]!r}? names are case-sensitive)"
                problems[""] = (f"{where} returned a gradient for {_short(key)}{hint}; this network's "
                                f"parameters are {', '.join(shapes)}")
                continue
            if f"d{param}" in values:
                problems[f"d{param}"] = f"{where} returned the gradient of {param} twice (as {param} and d{param})"
                continue
            values[f"d{param}"] = user_array(where, f"grads[{key!r}]", value, net.dtype)
        for param in shapes:
            if f"d{param}" not in values:
                problems[f"d{param}"] = f"{where} returned no gradient for {param}"
        return values, problems


def _is_course_object(obj: Any) -> bool:
    """An instance with a ``params`` mapping and a callable ``loss`` (reading them may raise: then not)."""
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return False
    try:
        return isinstance(getattr(obj, "params", None), Mapping) and callable(getattr(obj, "loss", None))
    except Exception:  # noqa: BLE001  (a property of the user's)
        return False


def instantiate(cls: type, network: Network) -> tuple[Any, str]:
    """An instance of the user's class, and the call that made it (``TwoLayerNet(4, 5, 3)``).

    ``__init__`` gets the network's sizes when it names them: ``(input_size, hidden_size,
    output_size)`` (CS231n's ``TwoLayerNet(input_size, hidden_size, output_size, std=1e-4)``)
    or ``(input_dim, hidden_dim, num_classes)``, for a network of two layers; or
    ``(hidden_dims, input_dim, num_classes)`` (a list of hidden widths, any depth). Otherwise,
    when it needs no argument, it is called with none. Its parameters are replaced in every
    trial, so ``std`` and the like do not matter. Whatever ``__init__`` raises is a
    :class:`_UserError`, one line.
    """
    label = cls.__name__
    try:
        sig = inspect.signature(cls)
        names = list(sig.parameters)
    except (TypeError, ValueError):
        sig, names = None, []
    sizes = network.sizes
    kwargs: dict[str, Any] = {}
    for trio in SIZE_PARAMETERS:
        if all(n in names for n in trio):
            if network.depth != 2:
                raise InputError(f"{label}({', '.join(trio)}) makes a two-layer network; this network has "
                                 f"{network.depth} layers ({network.describe()})")
            kwargs = dict(zip(trio, sizes))
            break
    else:
        if all(n in names for n in ("hidden_dims", "input_dim", "num_classes")):
            kwargs = {"hidden_dims": list(sizes[1:-1]), "input_dim": sizes[0], "num_classes": sizes[-1]}
        elif sig is not None:
            try:
                sig.bind()
            except TypeError:
                raise InputError(f"{label}{sig} is not a recognised form: its __init__ needs arguments, and "
                                 f"only (input_size, hidden_size, output_size), (input_dim, hidden_dim, "
                                 f"num_classes) or (hidden_dims, input_dim, num_classes) are given by name") from None
    call = f"{label}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    return _call(call, lambda: cls(**kwargs)), call


# --- the trials ----------------------------------------------------------------------------------


def _case_of(network: Any, seed: int, batch: int) -> tuple[Case, str]:
    """The case the first trial runs, and where it came from (a Network, a Case, a file, an example)."""
    from ..description.catalog import example_names, load_example
    from ..description.netfile import load_case

    if isinstance(network, Case):
        return network, network.source
    if isinstance(network, Network):
        return make_case(network, seed=seed, batch=batch, source="check_network"), "check_network"
    if isinstance(network, (str, Path)):
        text = str(network)
        if text.endswith(".toml") or Path(text).exists() or text not in example_names():
            case = load_case(text)
        else:
            case = load_example(text)
        return case, case.source
    raise InputError(f"check_network: network must be a Network, a Case, a network file or an example name, "
                     f"got {_describe(network)}")


def _with_dtype(network: Network, dtype: str) -> Network:
    return dataclasses.replace(network, dtype=dtype)


def _trials(case: Case, float32: bool) -> list[tuple[str, str, Case | str]]:
    """``(name, purpose, case)`` of every planned trial (a case that cannot be made: the reason, a str)."""
    net64 = _with_dtype(case.network, "float64")
    params, X, Y, _ = cast_arrays(case, np.float64)
    first = make_case(net64, params, X, Y, seed=case.seed, source=case.source)
    purpose = "the parameters and data given" if case.source != "check_network" else "drawn from the seed"
    out: list[tuple[str, str, Case | str]] = [("random", purpose, first)]
    if first.batch > 1:
        out.append(("batch 1", "one sample: the mean's 1/N is 1",
                    make_case(net64, params, X[:1], Y[:1], seed=case.seed, source=case.source)))
    act = ACTIVATIONS[net64.activations[0]]
    if act.kink == 0:
        Xk, pk = X.copy(), {k: v.copy() for k, v in params.items()}
        Xk[0] = 0.0
        Xk[0, 0] = 1.0
        pk["b1"][::2] = -pk["W1"][0, ::2]  # Z1[0, j] = 1 * W1[0, j] + 0 + ... + b1[j] = 0 exactly
        out.append(("kink", f"Z1[0, ::2] exactly 0, where the {net64.activations[0]} derivative is 0",
                    make_case(net64, pk, Xk, Y, seed=case.seed, source=case.source)))
    if float32:
        net32 = _with_dtype(case.network, "float32")
        p32, X32, Y32, _ = cast_arrays(first, np.float32)
        try:
            out.append(("float32", "the random trial in float32",
                        make_case(net32, p32, X32, Y32, seed=case.seed, source=case.source)))
        except InputError as e:
            out.append(("float32", "the random trial in float32", f"not run: {e}"))
    return out


def _run_trial(code: UserCode, name: str, purpose: str, case: Case) -> tuple[TrialResult, str | None]:
    """Run the user's code on ``case`` and judge what it returned; the shape it returned in (or None)."""
    net = case.network
    trial = TrialResult(name, purpose, case.batch, net.dtype)
    try:
        shape, values, problems, notes = code.call(case.params, case.X, case.Y)
    except _UserError as e:
        trial.error = str(e)
        return trial, None
    trial.notes += notes
    trial.problems.update(problems)
    shapes = net.tensor_shapes(case.batch)
    if case.Y.ndim == 1:
        shapes["Y"] = case.Y.shape
    claims: dict[str, Claim] = {}
    other: dict[str, list[str]] = {}  # arrays returned in another float dtype than the inputs'
    for key, value in values.items():
        if isinstance(value, _Unreadable):
            trial.problems[key] = value.note
            continue
        if value is None:
            trial.problems[key] = f"{code.label} returned {key} as None"
            continue
        if value.dtype.kind not in "f":
            trial.problems[key] = (f"{key} holds {value.dtype} values where floats are needed"
                                   if value.dtype.kind in "biu" else f"{key} has dtype {value.dtype}")
            continue
        bad = ~np.isfinite(value)
        if bad.any():
            kind = "NaN" if np.isnan(value[bad]).any() else "Inf"
            at = f" at index {[int(i) for i in np.argwhere(bad)[0]]}" if value.ndim else ""
            trial.problems[key] = f"{key} has {kind}{at}"
            continue
        accepted = accepted_shapes(case.convention, key, shapes[key])
        if value.shape not in accepted and not (value.ndim == 2 and value.shape == accepted[0][::-1]):
            trial.problems[key] = (f"{key} has shape {tuple(value.shape)}, expected "
                                   f"{shape_text(case.convention, key, shapes[key])}")
            trial.wrong_shapes[key] = tuple(int(s) for s in value.shape)
            continue
        if value.ndim and value.dtype != net.np_dtype:
            other.setdefault(str(value.dtype), []).append(key)
        claims[key] = Claim(value.astype(np.float64), np.zeros(value.shape))
    for dtype, names in other.items():
        trial.notes.append(f"{', '.join(names)} returned as {dtype} for {net.dtype} inputs; judged at "
                           f"{net.dtype}'s precision")
    if claims:
        trial.validation = validate(Case(net, case.params, case.X, case.Y, case.title, case.seed, claims,
                                         None, case.source, convention=case.convention))
    elif not trial.problems:
        trial.error = f"{code.label} returned no tensor of this network to judge"
    return trial, shape


def _follow_up_batch(trial: TrialResult, network: Network) -> int | None:
    """A batch that gives a tensor of the wrong shape its right one: ``db`` summed over axis 1 is (N,)."""
    shapes = network.tensor_shapes(trial.batch)
    for key, got in trial.wrong_shapes.items():
        want = shapes[key]
        if len(got) != len(want):
            continue
        off = [i for i in range(len(want)) if got[i] != want[i]]
        targets = {want[i] for i in off}
        if off and all(got[i] == trial.batch for i in off) and len(targets) == 1:
            n = targets.pop()
            if n > 1:
                return n
    return None


def _your_loss_differences(code: UserCode, case: Case, trial: TrialResult, directions: int) -> None:
    """Compare your parameter gradients with central differences of your own loss (in ``trial.fd``)."""
    v = trial.validation
    if v is None or "L" not in v.claims:
        trial.fd_note = "not run: your code returns no loss L to differentiate"
        return
    grads = {n: case.in_engine_form(n, v.claims[n].check.claimed) for n in v.claims  # as the engine holds them
             if n[:2] in ("dW", "db") and n[2:].isdigit() and v.claims[n].check.status in ("right", "wrong")}
    if not grads:
        trial.fd_note = "not run: your code returns no parameter gradient (dW1, db1, ...) of the right shape"
        return
    net = case.network
    params, X, Y, T = cast_arrays(case, np.float64)
    base = forward(net, params, X, Y, T)
    kinks = {l: ACTIVATIONS[a].kink for l, a in enumerate(net.activations, start=1)
             if ACTIVATIONS[a].kink is not None}
    sides = {l: base[f"Z{l}"] > k for l, k in kinks.items()}
    rng = np.random.default_rng([case.seed, 3])
    L0 = float(v.claims["L"].check.claimed)
    projections: dict[str, list[Projection]] = {}

    def your_loss(target: str, step: np.ndarray) -> float:
        moved = dict(params)
        moved[target] = params[target] + step
        _, values, _, _ = code.call(moved, X, Y)
        L = values.get("L")
        if not isinstance(L, np.ndarray) or L.size != 1:
            raise _UserError(code.label, f"{code.label} returned no readable loss at a perturbed {target}")
        return float(L.reshape(()))

    def crosses(target: str, step: np.ndarray) -> bool:
        moved = forward(net, params, X, Y, T, {target: step}, reuse=base)
        return any(not np.array_equal(moved[f"Z{l}"] > k, sides[l]) for l, k in kinks.items())

    try:
        with np.errstate(all="ignore"):
            for name in [n for n in v.steps if n in grads]:
                target = name[1:]
                value = params[target]
                h0 = RELATIVE_STEP * max(1.0, rms(value))
                found = []
                for _ in range(directions):
                    d = rng.standard_normal(value.shape)
                    d /= np.linalg.norm(d)
                    h = h0
                    for _attempt in range(ATTEMPTS):
                        if not any(crosses(target, t * h * d) for t in (1, -1, 0.5, -0.5)):
                            break
                        h /= 4
                    else:
                        found.append(Projection(d, float("nan"), float("nan"), h, True, 0.0))
                        continue
                    fp, fm, gp, gm = (your_loss(target, t * h * d) for t in (1, -1, 0.5, -0.5))
                    found.append(richardson(d, h, fp, fm, gp, gm, L0))
                projections[name] = found
    except _UserError as e:
        trial.fd_note = f"not run: at a perturbed parameter, {e}"
        return
    checks = compare_projections(net, grads, projections, v.truth.E, reference="finite differences of your loss")
    trial.fd = {n: checks[n] for n in projections}


def _confirm_truth(case: Case) -> tuple[bool, str]:
    """Whether the engine's trace, the truth every trial is judged against, agrees with torch and JAX here.

    ``check`` on the random trial's own parameters and data, against every installed framework
    (PyTorch autograd, JAX autodiff, the same network written in each): the user's code is then
    judged, through the engine, against both frameworks. The engine never disagrees on a correct
    network; if it did, no verdict could be trusted, and the report says so (``ok`` is False).
    """
    from .. import references
    from ..checking import check

    names = [r for r in ("torch", "jax") if references.is_installed(r)]
    if not names:
        return True, "the truth is the engine's float64 trace alone: install torch or JAX to confirm it"
    result = check(case, against=names)
    if result.ok:
        return True, f"the truth (the engine's float64 trace) agrees with {' and '.join(names)} on the random trial"
    return False, (f"the truth could not be confirmed: the engine disagrees with {' and '.join(names)} at "
                   f"{result.first_divergence or 'some tensor'} (a bug in manual_backprop: please report it)")


def check_network(fn: Any, network: Any, *, seed: int = 0, batch: int = 4, float32: bool = True,
                  directions: int = DIRECTIONS, name: str | None = None, layout: str | None = None,
                  deltas: str | None = None) -> NetworkReport:
    """Run the user's network code on every trial and judge it against the truth (see the module).

    ``network``: a :class:`Network` (parameters and data drawn from ``seed``, ``batch`` rows), a
    :class:`Case` (its parameters and data for the first trial), a network file's path, or a
    shipped example's name. ``float32``: run the float32 trial too. ``directions``: random
    directions per parameter for the finite differences of your own loss. ``name``: what the
    report calls the code (default: its ``__name__``).

    ``layout`` and ``deltas`` (default: the network file's, else ``"row"`` and ``"gradient"``) say how
    the code takes and gives its arrays: ``layout="column"`` hands it ``X`` (n0, N), ``Wl`` (nl, n(l-1)),
    ``bl`` (nl, 1), ``Y`` (K, N) and reads its tensors in those shapes; ``deltas="per_sample"`` reads
    its ``dZl``, ``dAl`` as summed over the samples, the 1/N in ``dWl`` and ``dbl``
    (:mod:`~manual_backprop.description.convention`).

    A bad option, network or form is an :class:`InputError`; whatever the user's code raises or
    returns is in the report (status ``error``), never an exception from here.
    """
    for option, value, least in (("seed", seed, 0), ("batch", batch, 1), ("directions", directions, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise InputError(f"check_network: {option} must be an integer of at least {least}, got {_short(value)}")
    if not isinstance(float32, bool):
        raise InputError(f"check_network: float32 must be True or False, got {_short(float32)}")
    case, source = _case_of(network, int(seed), int(batch))
    if case.network.has_norm:  # its trials (batch 1, the kink on Z1) and gradients (no dgamma) know no norm yet
        raise InputError(f"check_network: {source}: a network with a norm ({'/'.join(case.network.norms)}) is not "
                         f"checked as whole-network code yet; check the layer with check_layer(..., 'batchnorm') "
                         f"or write the numbers under [claimed] for validate")
    if layout is not None or deltas is not None:
        try:
            view = Convention(layout or case.convention.layout, deltas or case.convention.deltas,
                              case.convention.biases)
        except InputError as exc:
            raise InputError(f"check_network: {exc}") from None
        case = dataclasses.replace(case, convention=view)
    code = UserCode(fn, _with_dtype(case.network, "float64"), name, case.convention)
    return judge_code(code, case, source, float32=float32, directions=int(directions))


def judge_code(code: Any, case: Case, source: str, *, float32: bool = True, directions: int = DIRECTIONS,
               confirm: bool = True) -> NetworkReport:
    """The trials of :func:`check_network` for ``code``: the user's code as an object with ``label``,
    ``form``, ``kind``, ``network`` (set per trial), ``setup() -> error or None`` and ``call(params, X, Y)
    -> (shape, values, problems, notes)`` raising ``UserError`` (a :class:`UserCode`, or the grader's code run
    in a process of its own, which also has ``prepare(cases)``: every planned trial's inputs, at once).
    ``directions = 0`` leaves out the finite differences of the user's own loss; ``confirm = False`` the
    frameworks' confirmation of the truth (a grader confirms it once for the class)."""
    report = NetworkReport(code.label, code.form, case.network, source=source)
    error = code.setup()
    if error is not None:
        report.name = code.label
        report.trials.append(TrialResult("setup", "making the object", case.batch, "float64", error=error))
        return report
    report.name = code.label
    first_shape = None
    planned = [(n, purpose, dataclasses.replace(c, convention=case.convention))
               for n, purpose, c in _trials(case, float32) if not isinstance(c, str)]
    if hasattr(code, "prepare"):
        code.prepare([c for _, _, c in planned])
    for trial_name, purpose, trial_case in planned:
        code.network = trial_case.network
        trial, shape = _run_trial(code, trial_name, purpose, trial_case)
        first_shape = first_shape or shape
        if trial_name == "random" and trial.validation is not None:
            if directions:
                _your_loss_differences(code, trial_case, trial, int(directions))
            if confirm:
                report.truth_confirmed, report.truth = _confirm_truth(trial_case)
        report.trials.append(trial)
        n = _follow_up_batch(trial, trial_case.network)
        if n is not None and all(t.batch != n for t in report.trials):
            rows = np.resize(np.arange(trial_case.batch), n)  # the trial's own rows, repeated if need be
            again = dataclasses.replace(
                make_case(trial_case.network, trial_case.params, trial_case.X[rows], trial_case.Y[rows],
                          seed=trial_case.seed, source=trial_case.source), convention=case.convention)
            follow, _ = _run_trial(code, f"batch {n}", f"a tensor had shape (N,): N = {n} gives it its shape",
                                   again)
            report.trials.append(follow)
    if code.kind == "function" and first_shape:
        report.form = FORMS[first_shape]
    return report


def assert_network_matches(fn: Any, network: Any, **options) -> NetworkReport:
    """Raise ``AssertionError`` (its message: :meth:`NetworkReport.message`) unless every trial is right.

    ``options`` are :func:`check_network`'s. Returns the report when it passes.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    known = [p.name for p in inspect.signature(check_network).parameters.values() if p.kind is p.KEYWORD_ONLY]
    for key in options:
        if key not in known:
            raise InputError(f"assert_network_matches: unknown option {key!r}; known: {', '.join(known)}")
    report = check_network(fn, network, **options)
    if not report.ok:
        raise AssertionError(report.message())
    return report
