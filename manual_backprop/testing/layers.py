"""Check a user's own NumPy layer against PyTorch and JAX.

A layer is a pure pair of functions, as in llm.c's ``layernorm.py``::

    forward(x, params) -> (out, cache)      x (N, n_in); params {"W": (n_in, n_out), "b": (n_out,)} or {}
    backward(dout, cache) -> grads          {"x": dx, "W": dW, "b": db} (keys may be "dx", "dW", "db"),
                                            or a tuple (dx, dW, db), or dx alone for a layer without parameters

or one of the forms people already write, found from the signature with no
adapter (:mod:`.signatures`): CS231n's ``affine_forward(x, w, b) -> (out,
cache)`` / ``affine_backward(dout, cache) -> (dx, dw, db)`` and
``relu_forward(x) -> (out, cache)`` / ``relu_backward(dout, cache) -> dx``; or
an object with ``forward(X) -> out`` and ``backward(dout) -> dX`` whose
parameters and gradients are found by name (numpy-ml's
``parameters``/``gradients``, course code's ``params``/``grads``, Deep
Learning from Scratch's ``W``, ``b``, ``dW``, ``db``), checked as
``check_layer(layer_object, "linear")``. :attr:`LayerReport.form` says which
form was taken, and :meth:`LayerReport.message` ends with it.

:func:`check_layer` draws x, the parameters and an arbitrary upstream
gradient ``dout``, runs the pair, and compares ``out`` and every gradient
with the references' gradients of ``(out * dout).sum()`` (the same maths in
torch and jax.numpy, differentiated by autograd), on two trials:

- ``random``: inputs drawn from the seed;
- ``kink`` (layers with a ReLU): some pre-activations placed exactly on 0,
  where the derivative is taken as 0, as by ``torch.relu`` and ``jax.nn.relu``.

Each tensor is judged by the project's one tolerance policy
(:mod:`manual_backprop.compare.tolerance`): the rounding scale ``E`` of
``out``, ``dx``, ``dW`` and ``db`` comes from the same per-step functions as
a whole network's (x, W, b and ``dout`` exact, E = 0), and an element passes
when ``|yours - reference| <= K * E + floor``. In float32 a unit whose
pre-activation lies within rounding of the ReLU kink may take the other side
in the (float64) reference; that is allowed for (status ``kink``), as in
``manual-backprop check``. Any mistake in a backward rule is many orders of
magnitude larger in float64. Every result is a
:class:`~manual_backprop.compare.TensorCheck`, with the trial in
``extra["trial"]``.

The user's code is untrusted. It gets copies (x, the parameters, ``dout``;
``out`` is copied before ``backward`` runs, so a backward that writes into a
cache holding ``out`` does not change the ``out`` compared), and whatever it
returns or raises is a failing check of status ``error``, one line naming the
function and what was wrong (``forward returned None; it must return (out,
cache)``, ``backward raised ValueError: ...``, ``backward returned an unknown
gradient 'gamma'; ...``), never a traceback from inside the checker. Only
``KeyboardInterrupt`` and ``SystemExit`` escape. A bad option is an
:class:`~manual_backprop.errors.InputError`.

Code that writes into the x, parameters or dout it was handed (``dout[mask] =
0``) fails a check of its own (status ``error``, ``backward modified dout in
place ...``): the copies it wrote into are compared with the checker's own,
which stay right. A wrong gradient whose numbers a classic mistake reproduces
(``db = dout.sum(axis=1)``, ``dout.mean(axis=0)``, a factor 2 or N, the
gradients in the wrong order, ``dout.T @ x``, the activation's own) is named in
the words of the catalogue ``validate`` uses
(:func:`~manual_backprop.validation.mistakes.layer_candidates`): each
candidate is computed from the trial's own inputs and must give the user's
array within the right gradient's tolerance, never inferred from a shape.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..compare import (
    UNIT_ROUNDOFF,
    TensorCheck,
    compare_values,
    layer_error_scales,
    may_flip,
    tolerance,
)
from ..compare.tolerance import REPLAY_ULPS, kink_layer_scales
from ..description.convention import ROW, Convention, index_to_user, shape_text, to_engine, to_user
from ..errors import InputError
from ..kernels import ACTIVATIONS, NORMS
from ..kernels.linear import linear_dA_prev, linear_db, linear_dW
from ..kernels.normalization import norm_dN
from ..validation.mistakes import BY_ID as MISTAKE_BY_ID
from ..validation.mistakes import fitting, layer_candidates
from .signatures import (
    PARAMS_FORM,
    Calls,
    Missing,
    Unreadable,
    UserError,
    count,
    describe,
    layer_calls,
    read,
    short,
    user_array,
)


@dataclass(frozen=True)
class LayerSpec:
    """A layer the references know: an optional Linear part, an optional norm, then an activation."""

    name: str
    linear: bool
    activation: str
    norm: str = "none"

    @property
    def has_kink(self) -> bool:
        """The activation's derivative jumps at a point (the registry's ``kink``): the layer gets a kink trial
        (not after a norm, whose output the trial's zero inputs do not put on the kink)."""
        return ACTIVATIONS[self.activation].kink is not None and self.norm == "none"

    @property
    def kink_words(self) -> str:
        """``the relu kink (Z == 0), where the derivative is taken as 0``: the convention, from the kernel itself."""
        act = ACTIVATIONS[self.activation]
        at = np.full((1, 1), act.kink)
        slope = float(act.derivative(at, act.forward(at))[0, 0])
        return f"the {self.activation} kink (Z == {act.kink:g}), where the derivative is taken as {slope:g}"

    @property
    def params(self) -> tuple[str, ...]:
        return (("W", "b") if self.linear else ()) + (("gamma", "beta") if self.norm != "none" else ())


#: Every layer the references know, from the registry: ``linear``, each activation alone, and
#: ``linear+ACT`` for each activation (a new activation is a new layer with no edit here).
LAYERS: dict[str, LayerSpec] = {
    s.name: s
    for s in (
        LayerSpec("linear", True, "identity"),
        *(LayerSpec(a, False, a) for a in ACTIVATIONS if a != "identity"),
        *(LayerSpec(f"linear+{a}", True, a) for a in ACTIVATIONS if a != "identity"),
        *(LayerSpec(n, False, "identity", n) for n in NORMS),
        *(LayerSpec(f"linear+{n}+relu", True, "relu", n) for n in NORMS),
    )
}


@dataclass(frozen=True)
class Trial:
    """One set of inputs for the layer."""

    name: str
    x: np.ndarray
    params: dict[str, np.ndarray]
    dout: np.ndarray
    on_kink: np.ndarray | None = None  # where the pre-activation is exactly 0
    eps: float | None = None  # a norm's (check_layer sets it)


class _Verdict:
    """What a layer's and a loss's reports share: ``ok``, the failures, ``first_wrong`` and one message.

    A subclass has ``checks``, ``references``, ``trials``, ``form``, ``hints`` and :meth:`subject`.
    """

    def subject(self) -> str:  # pragma: no cover - every report names its own
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[TensorCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def first_wrong(self) -> str | None:
        """The tensor (or the call, ``forward``/``backward``) of the first failing check; None when all agree."""
        return self.failures[0].name if self.failures else None

    def message(self) -> str:
        if self.ok:
            return (f"{self.subject()} agrees with {', '.join(self.references)} on "
                    f"{len(self.trials)} trial(s) ({', '.join(self.trials)}); called as {self.form}.")
        first = self.failures[0]
        names = dict.fromkeys(f"{c.name} ({c.extra['trial']})" for c in self.failures)  # in the order checked
        where = f"{self.subject()}, {first.extra['trial']} trial"
        head = f"{where}: {first.note}" if first.status == ERROR else first.message(ours="yours", where=where)
        hints = "".join(f" {h}" for h in self.hints)
        return head + f". Disagreeing: {', '.join(names)}.{hints} Called as {self.form}."

    # --- how it looks in a notebook and on a page (manual_backprop.display) ---------------------

    def _repr_html_(self) -> str:
        """The notebook table: one row per check (tensor, trial, reference, status, max|Δ|, margin, note)."""
        from ..display.html import report_html

        return report_html(self)

    def __repr__(self) -> str:
        """The table as text (the subclasses are ``@dataclass(repr=False)``, so this is theirs)."""
        from ..display.html import report_text

        return report_text(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text display: the table."""
        from ..display.html import pretty

        pretty(self, printer, cycle)

    def to_html(self, path: Any = None) -> str:
        """One self-contained HTML page with the table (a layer has no network to draw)."""
        from ..display.html import page
        from ..files import write_atomically

        text = page(self)
        if path is not None:
            write_atomically(path, text)
        return text


@dataclass(repr=False)
class LayerReport(_Verdict):
    """Every check of one layer; :meth:`message` names the first failure, its worst element, and any mistake.

    ``form`` is how the user's code was called (:mod:`.signatures`: ``forward(x, params)``,
    ``forward(x, w, b)``, ``forward(x)``, ``class Affine (forward(x), backward(dout); W, b -> dW, db)``);
    ``hints`` the classic mistakes whose numbers the user's reproduce (each decided on a trial's own
    values, :func:`~manual_backprop.validation.mistakes.layer_candidates`), in the order found.
    """

    layer: str
    references: list[str]
    trials: list[str]
    checks: list[TensorCheck] = field(default_factory=list)  # extra["trial"] names each one's trial
    form: str = PARAMS_FORM
    hints: list[str] = field(default_factory=list)

    def subject(self) -> str:
        return f"{self.layer} layer"


def check_layer(forward: Any, backward: Callable | str | None = None, layer: str | None = None, *,
                batch: int = 5, n_in: int = 4, n_out: int = 3, seed: int = 0, dtype: str = "float64",
                against: tuple[str, ...] | None = None, layout: str = "row", eps: float = 1e-5) -> LayerReport:
    """Run the user's layer on ``layer``'s trials and compare with the references.

    ``check_layer(forward, backward, "linear")`` for a pair of functions, in any
    form of :mod:`.signatures` (``forward(x, params)``, CS231n's
    ``affine_forward(x, w, b)`` / ``relu_forward(x)``), or
    ``check_layer(layer_object, "linear")`` for an object with ``forward(X)``
    and ``backward(dout)`` whose parameters are found by name
    (:func:`~.signatures.find_slots`). ``against`` names references
    (``"torch"``, ``"jax"``); by default every installed one. A layer without a
    Linear part keeps its width (n_out = n_in).

    A bad option is an :class:`InputError` (``batch``, ``n_in``, ``n_out``
    positive integers, ``seed`` a non-negative one, ``dtype`` float64 or
    float32, ``against`` a tuple of known names; a form the layer cannot have).
    Whatever the user's code raises or returns is a failing check in the report
    (status ``error``), never an exception from here; only ``KeyboardInterrupt``
    and ``SystemExit`` pass. Code that writes into the x, parameters or dout it
    was handed fails a check of its own (status ``error``), though the checker's
    own copies keep the right values.

    ``layout="column"`` hands the layer the course's column vectors, one sample per column:
    ``x`` (n_in, N), ``W`` (n_out, n_in), ``b`` (n_out, 1), ``dout`` (n_out, N), and reads ``out``, ``dx``,
    ``dW`` in those shapes (``db`` as ``(n_out, 1)`` or flat); the report's shapes and element indices are
    the column layout's too.

    ``batchnorm``, ``layernorm`` (and ``linear+batchnorm+relu``, ``linear+layernorm+relu``) have the
    parameters gamma, beta (after W, b): ``forward(x, params)`` with ``{"gamma", "beta"}``, or the course's
    ``batchnorm_forward(x, gamma, beta, bn_param)`` / ``batchnorm_backward(dout, cache) -> (dx, dgamma,
    dbeta)`` (``bn_param = {"mode": "train", "eps": eps}``; ``layernorm_forward(x, gamma, beta, ln_param)``
    the same). Batch norm is in training mode: the batch's own mean and biased variance, eps inside the root.
    """
    from .. import references

    if isinstance(backward, str) and layer is None:  # check_layer(layer_object, "linear")
        backward, layer = None, backward
    if layer is None:
        raise InputError("check_layer: name the layer, as check_layer(forward, backward, 'linear') or "
                         "check_layer(layer_object, 'linear')")
    spec = _spec(layer)
    try:
        view = Convention(layout)
    except InputError as exc:
        raise InputError(f"check_layer: {exc}") from None
    if spec.norm == "batchnorm" and isinstance(batch, int) and batch == 1:
        raise InputError("check_layer: batch norm on a batch of one (batch=1) has variance 0: x̂ = 0 for every "
                         "input and no gradient reaches x; use batch >= 2")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0 or not np.isfinite(eps):
        raise InputError(f"check_layer: eps must be a finite number >= 0, got {short(eps)}")
    calls = layer_calls(forward, backward, spec.name, spec.linear, spec.norm, float(eps))
    batch, n_in, n_out = (_positive(k, v) for k, v in (("batch", batch), ("n_in", n_in), ("n_out", n_out)))
    if not spec.linear:
        n_out = n_in  # the layer keeps its width
    sizes = {"batch": batch, "n_in": n_in, "n_out": n_out}
    for a, b in (("batch", "n_in"),) + ((("batch", "n_out"), ("n_in", "n_out")) if spec.linear else ()):
        if sizes[a] * sizes[b] > MAX_ELEMENTS:  # x, dout, W
            raise InputError(f"check_layer: {a} × {b} = {sizes[a] * sizes[b]} elements is too large to check "
                             f"(at most {MAX_ELEMENTS})")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"check_layer: seed must be a non-negative integer, got {short(seed)}")
    dtype = _dtype(dtype)
    names = _references(against) if against is not None else [
        r for r in REFERENCES if references.is_installed(r)]
    if not names:
        raise InputError("no reference to check a layer against: install torch or jax "
                         "(pip install 'manual-backprop[references]')")
    for r in names:
        references.load(r)  # a missing framework is an InputError with the install hint
    trials = make_trials(spec, batch, n_in, n_out, int(seed), np.dtype(dtype))
    trials = [dataclasses.replace(t, eps=float(eps)) for t in trials]
    return judge_layer(lambda trial: _run_user(calls, spec, trial, view), spec, trials, names, dtype, view,
                       calls.form)


def judge_layer(run: Callable[[Trial], tuple[dict[str, Any], list[tuple[str, str]]]], spec: LayerSpec,
                trials: list[Trial], names: list[str], dtype: str, view: Convention = ROW,
                form: str = "") -> LayerReport:
    """The layer's report from ``run(trial) -> (yours, problems)`` on each trial (raising
    :class:`~.signatures.UserError` when nothing came back): :func:`check_layer`'s comparisons, with the
    user's code run in this process (``check_layer``) or in one of its own (the grader's)."""
    report = LayerReport(spec.name, names, [t.name for t in trials], form=form)
    for trial in trials:
        extra = {"trial": trial.name}
        try:
            yours, problems = run(trial)
        except UserError as e:
            report.checks.append(TensorCheck(e.function, ", ".join(names), ERROR, note=str(e), extra=extra))
            continue
        report.checks.extend(TensorCheck(function, ", ".join(names), ERROR, note=p, extra=dict(extra))
                             for function, p in problems)
        E, kinks = _scales(spec, trial, dtype)
        checks = []
        for r in names:
            theirs = _reference(r, spec, trial)
            for name, ref in theirs.items():
                checks.append(_compare(name, r, trial, yours, ref, dtype, spec, E, kinks, view))
        report.checks.extend(checks)
        for hint in _hints(spec, trial, yours, checks, E, dtype, view):
            if hint not in report.hints:
                report.hints.append(hint)
    return report


def make_trials(spec: LayerSpec, N: int, n_in: int, n_out: int, seed: int, dtype: np.dtype) -> list[Trial]:
    """``random`` for every layer, and ``kink`` (pre-activations exactly 0) for a layer with a ReLU."""
    rng = np.random.default_rng([seed, 2])
    x = rng.standard_normal((N, n_in))
    params = {}
    if spec.linear:
        params = {"W": rng.standard_normal((n_in, n_out)) / np.sqrt(n_in),
                  "b": rng.uniform(0.05, 0.5, n_out) * rng.choice([-1.0, 1.0], n_out)}
    dout = rng.standard_normal((N, n_out))
    if spec.norm != "none":  # a stream of its own: the other layers' draws do not change
        norm_rng = np.random.default_rng([seed, 5])
        params.update(gamma=norm_rng.uniform(0.5, 1.5, n_out),
                      beta=norm_rng.uniform(0.05, 0.5, n_out) * norm_rng.choice([-1.0, 1.0], n_out))
    cast = lambda a: np.array(a, dtype=dtype, order="C")  # noqa: E731  (a copy: no two trials share one)
    trials = [Trial("random", cast(x), {k: cast(v) for k, v in params.items()}, cast(dout))]
    if spec.has_kink:
        x, params = x.copy(), {k: v.copy() for k, v in params.items()}
        if spec.linear:  # a zero input row and zero biases: those units get Z = 0 exactly
            x[0] = 0
            params["b"][::2] = 0
        else:
            x.flat[::3] = 0
        x, params = cast(x), {k: cast(v) for k, v in params.items()}
        Z = x @ params["W"] + params["b"] if spec.linear else x
        trials.append(Trial("kink", x, params, cast(dout), Z == 0))
    for t in trials:  # the reference side's inputs: nothing may write into them
        for a in (t.x, t.dout, *t.params.values()):
            a.setflags(write=False)
    return trials


def _spec(layer: str) -> LayerSpec:
    if not isinstance(layer, str) or layer not in LAYERS:
        raise InputError(f"unknown layer {layer!r}; known: {', '.join(LAYERS)}")
    return LAYERS[layer]


#: The names the convention's view knows the layer's tensors by.
_AS = {"x": "X", "dout": "dZ1", "out": "Z1", "dx": "dX", "W": "W1", "b": "b1", "dW": "dW1", "db": "db1",
       "gamma": "gamma1", "beta": "beta1", "dgamma": "dgamma1", "dbeta": "dbeta1"}


def _run_user(calls: Calls, spec: LayerSpec, trial: Trial,
              view: Convention = ROW) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The user's ``out`` and gradients, named ``out``, ``dx``, ``dW``, ``db``, and what was wrong with them.

    Copies go in, never the originals; every array that comes out is copied
    at once (``out`` before ``backward`` runs). A value that is not an array of
    real numbers becomes an :class:`_Unreadable` (its tensor's check is an
    ``error``); an unknown or doubled gradient key, or an input written into
    (:func:`_written`), is one of the ``(function, problem)`` returned; anything
    that leaves nothing to compare raises :class:`UserError`. In the column layout (``view``) the
    user's code gets and gives the transposes, turned back at once.
    """
    named, problems = _run_in_view(calls, spec, trial, view)
    for key, value in named.items():
        if isinstance(value, np.ndarray):
            named[key] = np.ascontiguousarray(to_engine(view, _AS[key], value))
    return named, problems


def _run_in_view(calls: Calls, spec: LayerSpec, trial: Trial, view: Convention):
    def copy(name: str, a: np.ndarray) -> np.ndarray:
        return np.array(to_user(view, _AS[name], a), order="C")

    x, dout = copy("x", trial.x), copy("dout", trial.dout)
    params = {k: copy(k, v) for k, v in trial.params.items()}
    result = calls.forward(x, params)
    if calls.pair:
        pair = read("forward", lambda: tuple(result), result) if isinstance(result, (tuple, list)) else None
        if pair is None or len(pair) != 2:
            raise UserError("forward", f"forward returned {_describe_pair(result, pair)}; it must return (out, cache)")
        out, cache = pair
    else:
        out, cache = result
    dtype = trial.x.dtype.name
    named: dict[str, Any] = {"out": _as_array("forward", "out", out, dtype)}
    problems = [("forward", p) for p in _written("forward", trial, x, params, view=view)]
    grads = calls.backward(dout, cache)
    problems += [("backward", p) for p in _written("backward", trial, x, params, dout, view=view)
                 if ("forward", p.replace("backward", "forward", 1)) not in problems]
    wanted = ("x",) + spec.params
    gradients = ", ".join(f"d{k}" for k in wanted)
    usage = ('the gradient dx (or {"x": dx})' if not spec.params else
             "the gradients {" + ", ".join(f'"{k}": d{k}' for k in wanted) + "} or (" + gradients + ")")
    if grads is None or isinstance(grads, (str, bytes)):
        raise UserError("backward", f"backward returned {describe(grads)}; it must return {usage}")
    if isinstance(grads, Mapping):
        items = read("backward", lambda: list(grads.items()), grads)
        by_key: dict[str, list[Any]] = {}
        for key, value in items:
            bare = key[1:] if isinstance(key, str) and key.startswith("d") and key[1:] in wanted else key
            if not isinstance(bare, str) or bare not in wanted:
                problems.append(("backward", f"backward returned an unknown gradient {short(key)}; "
                                             f"the {spec.name} layer has {gradients}"))
                continue
            by_key.setdefault(bare, []).append((key, value))
        for bare, given in by_key.items():
            if len(given) > 1:
                problems.append(("backward", f"backward returned d{bare} twice, as {given[0][0]!r} and as "
                                             f"{given[1][0]!r}; give one"))
            named[f"d{bare}"] = _as_array("backward", f"d{bare}", given[0][1], dtype)
        return named, problems
    values = read("backward", lambda: tuple(grads), grads) if isinstance(grads, (tuple, list)) else (grads,)
    if isinstance(grads, list) and not spec.linear and _is_nested_list_dx(values, trial.x.shape):
        values = (grads,)
    if len(values) != len(wanted):
        raise UserError("backward", f"backward returned {count(len(values), 'array')}, the {spec.name} layer "
                                    f"has {count(len(wanted), 'gradient')} ({gradients})")
    for key, value in zip(wanted, values):
        named[f"d{key}"] = _as_array("backward", f"d{key}", value, dtype)
    return named, problems


#: What writing into each input in place breaks, for the report's line.
IN_PLACE_WHY = {
    "dout": " (dout[mask] = 0, dout *= ...?); it is a real bug when the same dout feeds two branches "
            "(a residual connection, a shared layer): work on a copy",
    "x": "; x is the previous layer's output, still needed (by its own backward, or a second branch)",
    "W": "; the parameters change only in the optimiser's step",
    "b": "; the parameters change only in the optimiser's step",
    "gamma": "; the parameters change only in the optimiser's step",
    "beta": "; the parameters change only in the optimiser's step",
}


def _written(function: str, trial: Trial, x: np.ndarray, params: Mapping[str, np.ndarray],
             dout: np.ndarray | None = None, view: Convention = ROW) -> list[str]:
    """One line per input the user's code wrote into: the copies it was handed against the trial's own
    (seen in the user's layout, ``view``).

    NaN equals NaN here (a NaN copied is not a write); a write of the same values goes unseen.
    """
    def pristine(name: str, a: np.ndarray) -> np.ndarray:
        return to_user(view, _AS[name], a)

    handed = {"x": (x, pristine("x", trial.x)), **{k: (v, pristine(k, trial.params[k])) for k, v in params.items()}}
    if dout is not None:
        handed["dout"] = (dout, pristine("dout", trial.dout))
    return [f"{function} modified {name} in place{IN_PLACE_WHY[name]}"
            for name, (mine, pristine) in handed.items()
            if mine.shape != pristine.shape or not np.array_equal(mine, pristine, equal_nan=True)]


def _hints(spec: LayerSpec, trial: Trial, yours: Mapping[str, Any], checks: list[TensorCheck],
           E: Mapping[str, np.ndarray], dtype: str, view: Convention = ROW) -> list[str]:
    """The classic mistakes (of :mod:`~manual_backprop.validation.mistakes`) the failing gradients reproduce.

    Each candidate is computed from this trial's own x, W, b and dout in float64 and must give the
    user's numbers within the right gradient's tolerance (the policy's), as validate decides.
    """
    if spec.norm != "none":
        return _norm_hints(spec, trial, yours, checks, E, dtype)
    failed = {c.name for c in checks if not c.ok and c.status in ("fail", "shape")} - {"out"}
    mine = {g: np.asarray(yours[g], dtype=np.float64) for g in failed
            if isinstance(yours.get(g), np.ndarray) and yours[g].dtype.kind in "biuf"}
    if not mine:
        return []
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    x, params, dout = f64(trial.x), {k: f64(v) for k, v in trial.params.items()}, f64(trial.dout)
    act = ACTIVATIONS[spec.activation]
    Z = x @ params["W"] + params["b"] if spec.linear else x
    out = act.forward(Z)
    dZ = act.backward(dout, Z, out)
    values = {"x": x, "dout": dout, "Z": Z, "out": out, "dZ": dZ, **params}
    if spec.linear:
        values.update(dx=linear_dA_prev(dZ, params["W"]), dW=linear_dW(x, dZ), db=linear_db(dZ))
    else:
        values["dx"] = dZ
    tol = {g: tolerance(E[g], dtype) for g in ("dx", "dW", "db") if g in E}
    found = fitting(layer_candidates(spec.linear, spec.activation, trial.x.shape[0]), values, mine, tol,
                    UNIT_ROUNDOFF[dtype])
    return [found[g].sentence(column=view.layout == "column") for g in ("dx", "dW", "db") if g in found]


def _norm_hints(spec: LayerSpec, trial: Trial, yours: Mapping[str, Any], checks: list[TensorCheck],
                E: Mapping[str, np.ndarray], dtype: str) -> list[str]:
    """A norm layer's dx that is ``dxhat * inv_std`` (the mean and variance taken as constants), named in
    validate's words when it reproduces the user's numbers within dx's tolerance."""
    if spec.linear or not any(c.name == "dx" and not c.ok and c.status == "fail" for c in checks):
        return []
    mine = yours.get("dx")
    if not isinstance(mine, np.ndarray) or mine.dtype.kind not in "biuf":
        return []
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    x, p, dout = f64(trial.x), {k: f64(v) for k, v in trial.params.items()}, f64(trial.dout)
    norm = NORMS[spec.norm]
    N, _, inv_std = norm.forward(x, p["gamma"], p["beta"], trial.eps)
    constant = norm_dN(dout, p["gamma"]) * (inv_std if norm.axis == 1 else inv_std[None, :])
    if np.all(np.abs(f64(mine) - constant) <= tolerance(E["dx"], dtype) + np.abs(constant) * REPLAY_ULPS * UNIT_ROUNDOFF[dtype]):
        m = "N" if norm.axis == 0 else "D"
        return [MISTAKE_BY_ID["norm_statistics_constant"].say(
            n="dx", dxhat="dxhat", Z="x",
            right=f"dx = (1/{m}) * inv_std * ({m}*dxhat - dxhat.sum({norm.axis}) - xhat * (dxhat*xhat).sum({norm.axis}))")]
    return []


#: The status of a check whose tensor the user's code did not give as an array to compare (it raised, or
#: returned something else, see :class:`UserError`, :class:`_Unreadable`): never passing.
ERROR = "error"

#: The most elements any one array of a trial may have (batch × n_in, batch × n_out, n_in × n_out).
MAX_ELEMENTS = 10_000_000


_Unreadable = Unreadable


def _as_array(function: str, name: str, value: Any, dtype: str) -> Any:
    """:func:`~.signatures.user_array`, but a gradient of None (or one a layer object never set) is missing."""
    if value is None and function == "backward":
        return None
    if isinstance(value, Missing):  # a layer object's gradient not set by its backward
        return value
    real = "gradients are real" if function == "backward" else "out is real"
    return user_array(function, name, value, dtype, real)


def _is_nested_list_dx(grads: tuple, shape: tuple[int, ...]) -> bool:
    """Whether a list from a layer without parameters is dx itself (``dx.tolist()``) rather than ``[dx]``.

    A list of arrays is a list of gradients; a list of one element is ``[dx]``
    unless the whole list has dx's shape (batch 1).
    """
    if all(isinstance(g, np.ndarray) for g in grads):
        return False
    if len(grads) != 1:
        return True
    try:
        return np.shape(grads) == shape
    except Exception:  # noqa: BLE001  (ragged)
        return False


def _describe_pair(value: Any, items: tuple | None) -> str:
    if items is not None:
        return f"a {type(value).__name__} of {count(len(items), 'value')}"
    if isinstance(value, np.ndarray):
        return f"{describe(value)}, not a pair"
    return describe(value)


def _positive(option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"check_layer: {option} must be a positive integer, got {short(value)}")
    return int(value)


def _dtype(dtype: Any) -> str:
    if isinstance(dtype, (type, np.dtype)):
        try:
            dtype = np.dtype(dtype).name
        except TypeError:
            pass
    if not isinstance(dtype, str) or dtype not in UNIT_ROUNDOFF:
        raise InputError(f"check_layer: dtype must be one of {', '.join(UNIT_ROUNDOFF)}, got {short(dtype)}")
    return dtype


def _references(against: Any) -> list[str]:
    """``against`` as a list of reference names: a tuple (or list) of known names, none twice."""
    if isinstance(against, str):
        raise InputError(f"check_layer: against must be a tuple of reference names such as ('torch',), "
                         f"got the string {against!r}")
    if not isinstance(against, (tuple, list)):
        raise InputError(f"check_layer: against must be a tuple of reference names such as ('torch',), "
                         f"got {short(against)}")
    if not against:
        raise InputError(f"check_layer: against must name at least one reference: {', '.join(REFERENCES)}")
    names: list[str] = []
    for r in against:
        if not isinstance(r, str) or r not in REFERENCES:
            raise InputError(f"check_layer: against names an unknown reference {short(r)}; "
                             f"known: {', '.join(REFERENCES)}")
        if r in names:
            raise InputError(f"check_layer: against names {r!r} twice")
        names.append(r)
    return names


def _scales(spec: LayerSpec, trial: Trial, dtype: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``E`` of ``out``, ``dx`` (, ``dW``, ``db``), and what a unit that may flip at the kink moves them.

    From the layer's own float64 values: ``Z = x @ W + b`` (or x), ``out = act(Z)``
    and ``dZ = dout * act'(Z)``, by the engine's kernels.
    """
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    x, params, dout = f64(trial.x), {k: f64(v) for k, v in trial.params.items()}, f64(trial.dout)
    act = ACTIVATIONS[spec.activation]
    Z = x @ params["W"] + params["b"] if spec.linear else x
    if spec.norm != "none":
        norm = NORMS[spec.norm]
        N, S, inv_std = norm.forward(Z, params["gamma"], params["beta"], trial.eps)
        out = act.forward(S)
        dS = act.backward(dout, S, out)
        dZ = norm.backward(dS, N, params["gamma"], inv_std)[3]
        values = {"Z": Z, "N": N, "S": S, "inv_std": inv_std, "out": out, "dout": dout, "dS": dS, "dZ": dZ}
        return layer_error_scales(spec.activation, x, params, values, dtype, norm.axis), {}
    out = act.forward(Z)
    values = {"Z": Z, "out": out, "dout": dout, "dZ": act.backward(dout, Z, out)}
    E = layer_error_scales(spec.activation, x, params, values, dtype)
    kinks: dict[str, np.ndarray] = {}
    if act.kink is not None:
        flips = may_flip(Z, E["Z"], act.kink, dtype)
        if flips.any():
            W = params["W"] if spec.linear else np.eye(x.shape[1])
            _, dW, db, dx = kink_layer_scales(x, W, dout, None, None, flips.astype(np.float64))
            kinks = {"dx": dx, **({"dW": dW, "db": db} if spec.linear else {})}
    return E, kinks


def _compare(name: str, reference: str, trial: Trial, yours: Mapping[str, Any], ref: np.ndarray,
             dtype: str, spec: LayerSpec, E: Mapping[str, np.ndarray],
             kinks: Mapping[str, np.ndarray], view: Convention = ROW) -> TensorCheck:
    extra = {"trial": trial.name}
    mine = yours.get(name)
    if isinstance(mine, _Unreadable):
        return TensorCheck(name, reference, ERROR, extra=extra, note=mine.note)
    if mine is None:
        return TensorCheck(name, reference, "missing", extra=extra,
                           note=f"backward returned no {name} (give {name[1:]!r} or {name!r})")
    if isinstance(mine, Missing):
        return TensorCheck(name, reference, "missing", extra=extra, note=mine.note)
    if mine.shape != ref.shape:
        note = (f"shape {to_user(view, _AS[name], mine).shape}, expected "
                f"{shape_text(view, _AS[name], ref.shape)}")
        if mine.ndim == 2 and mine.shape == ref.shape[::-1]:
            note += (" (the transposed layout: is it x @ dout.T instead of dout @ x.T?)" if view.layout == "column"
                     else " (the transposed layout: is it dout.T @ x instead of x.T @ dout?)")
        return TensorCheck(name, reference, "shape", extra=extra, note=note)
    if mine.dtype != np.dtype(dtype):
        return TensorCheck(name, reference, "dtype", extra=extra,
                           note=f"dtype {mine.dtype}, expected {dtype} (the dtype of the inputs)")
    check = compare_values(name, reference, mine, ref, E[name], dtype, kinks.get(name))
    check.extra.update(extra)
    on_kink = (name in ("out", "dx") and not spec.linear and check.worst is not None and trial.on_kink is not None
               and bool(trial.on_kink[check.worst.index]))
    if view.layout == "column" and check.worst is not None:  # the element as the user's layout indexes it
        check.worst = dataclasses.replace(check.worst, index=index_to_user(view, _AS[name], check.worst.index))
    if check.status == "fail" and trial.on_kink is not None and trial.on_kink.any():
        check.note = (f"this trial puts pre-activations exactly on {spec.kink_words}, "
                      f"as torch and JAX take it")
        if name in ("out", "dx") and not spec.linear and on_kink:
            check.note = f"x there is exactly on {spec.kink_words} (torch, JAX)"
    return check


def _reference(name: str, spec: LayerSpec, trial: Trial) -> dict[str, np.ndarray]:
    """``out`` and the gradients of ``(out * dout).sum()`` by reference ``name``, in float64."""
    from .. import references

    if spec.norm != "none":
        return references.load(name).layer_gradients(spec.linear, spec.activation, trial.x, trial.params,
                                                     trial.dout, norm=spec.norm, eps=trial.eps)
    return references.load(name).layer_gradients(spec.linear, spec.activation, trial.x, trial.params, trial.dout)


#: The references a layer is checked against.
REFERENCES = ("torch", "jax")
