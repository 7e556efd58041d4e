"""Check a user's own NumPy loss against PyTorch and JAX.

A loss is one function, as in CS231n's ``softmax_loss``::

    fn(x, y) -> (loss, dx)        loss a scalar, L = c * sum(terms); dx = dL/dx, x's shape

What ``x`` and ``y`` are is the project's loss registry's
(:data:`~manual_backprop.kernels.LOSSES`), for a batch of N rows and width K:

=========================  =======================================  ===============================
loss                       x (N, K)                                 y
=========================  =======================================  ===============================
``half_mse``               the predictions A                        targets (N, K), floats
``mse``                    the predictions A                        targets (N, K), floats
``bce``                    the logits Z (the sigmoid is the loss's)  targets (N, K), 0.0 or 1.0
``softmax_cross_entropy``  the logits Z (CS231n's ``x``)            integer class labels (N,), 0..K-1
=========================  =======================================  ===============================

``c`` is the reduction's (``reduction="mean"``, the default: 1/N for
half_mse and softmax_cross_entropy, as CS231n's mean over the batch; 1/(N·K)
for mse and bce, as ``nn.MSELoss`` and ``nn.BCEWithLogitsLoss``;
``reduction="sum"``: 1). :func:`check_loss` draws x and y from the seed, runs
the function, and compares ``loss`` and ``dx`` with the references': torch
and JAX, whose loss of a one-layer network with ``W = I``, ``b = 0`` and the
loss's output activation (so that ``Z1 = x`` exactly) gives ``L`` and
``dL/dZ1 = dL/dx`` by autograd.

Each is judged by the project's one tolerance policy
(:mod:`manual_backprop.compare.tolerance`): ``E`` of the loss and of its
gradient are :func:`~manual_backprop.compare.tolerance.loss_error` and
:func:`~manual_backprop.compare.tolerance.loss_gradient_error` with exact x
and y (the output activation's own rounding carried for bce and
softmax_cross_entropy), and an element passes when
``|yours - reference| <= K * E + floor``. A wrong value that reproduces a
classic mistake (a missing or doubled 1/N, half-MSE for MSE, the sign, a
fused gradient without Y) is named, from the same catalogue as ``validate``
(:func:`~manual_backprop.validation.mistakes.loss_candidates`).

The user's code is untrusted, as in :func:`~manual_backprop.testing.check_layer`:
it gets copies; whatever it raises or returns is a failing check of status
``error`` with one line; writing into x or y fails a check of its own. A bad
option is an :class:`~manual_backprop.errors.InputError`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..compare import UNIT_ROUNDOFF, TensorCheck, compare_values, tolerance
from ..compare.tolerance import FLUSH, activation_error, loss_error, loss_gradient_error
from ..description.case import make_case
from ..description.network import Network
from ..errors import InputError
from ..kernels import ACTIVATIONS, LOSSES
from ..kernels.losses import REDUCTIONS, one_hot
from ..validation.mistakes import fitting, loss_candidates
from .layers import (
    ERROR,
    MAX_ELEMENTS,
    REFERENCES,
    _as_array,
    _describe_pair,
    _dtype,
    _references,
    _Unreadable,
    _Verdict,
)
from .signatures import UserError, call, read, required_positional, short, type_name


@dataclass(frozen=True)
class LossTrial:
    """One set of inputs for the loss: x (N, K) and y (N, K) floats or (N,) labels, read-only."""

    name: str
    x: np.ndarray
    y: np.ndarray


@dataclass(repr=False)
class LossReport(_Verdict):
    """Every check of one loss; :meth:`message` names the first failure, its worst element, and any mistake."""

    loss: str
    references: list[str]
    trials: list[str]
    form: str
    checks: list[TensorCheck] = field(default_factory=list)  # extra["trial"] names each one's trial
    hints: list[str] = field(default_factory=list)

    def subject(self) -> str:
        return f"{self.loss} loss"


def check_loss(fn: Callable, loss: str, *, batch: int = 5, width: int = 4, seed: int = 0,
               dtype: str = "float64", reduction: str = "mean",
               against: tuple[str, ...] | None = None) -> LossReport:
    """Run the user's ``fn(x, y) -> (loss, dx)`` on a trial of ``loss`` and compare with the references.

    ``width`` is K, the number of outputs (of classes, for softmax_cross_entropy);
    ``against`` names references (``"torch"``, ``"jax"``), by default every
    installed one. A bad option is an :class:`InputError`; whatever ``fn``
    raises or returns is a failing check in the report.
    """
    from .. import references

    if not isinstance(loss, str) or loss not in LOSSES:
        raise InputError(f"check_loss: unknown loss {short(loss)}; known: {', '.join(LOSSES)}")
    if not callable(fn):
        raise InputError(f"check_loss: fn must be a function fn(x, y) -> (loss, dx), got {type_name(fn)}")
    n = required_positional(fn)
    if n is not None and n != 2:
        raise InputError(f"check_loss: fn requires {n} argument(s); it must be fn(x, y) -> (loss, dx)")
    for option, value in (("batch", batch), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise InputError(f"check_loss: {option} must be a positive integer, got {short(value)}")
    batch, width = int(batch), int(width)
    if batch * width > MAX_ELEMENTS:
        raise InputError(f"check_loss: batch × width = {batch * width} elements is too large to check "
                         f"(at most {MAX_ELEMENTS})")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"check_loss: seed must be a non-negative integer, got {short(seed)}")
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise InputError(f"check_loss: reduction must be one of {', '.join(REDUCTIONS)}, got {short(reduction)}")
    try:
        dtype = _dtype(dtype)
        names = _references(against) if against is not None else [
            r for r in REFERENCES if references.is_installed(r)]
    except InputError as e:
        raise InputError(str(e).replace("check_layer:", "check_loss:", 1)) from None
    if not names:
        raise InputError("no reference to check a loss against: install torch or jax "
                         "(pip install 'manual-backprop[references]')")
    for r in names:
        references.load(r)
    trials = make_loss_trials(loss, batch, width, int(seed), np.dtype(dtype))
    report = LossReport(loss, names, [t.name for t in trials], _form(fn))
    for trial in trials:
        extra = {"trial": trial.name}
        try:
            yours, problems = _run_user(fn, trial)
        except UserError as e:
            report.checks.append(TensorCheck("loss function", ", ".join(names), ERROR, note=str(e), extra=extra))
            continue
        report.checks.extend(TensorCheck("loss function", ", ".join(names), ERROR, note=p, extra=dict(extra))
                             for p in problems)
        E, values = _scales_and_values(loss, reduction, trial, dtype)
        checks = []
        for r in names:
            theirs = _reference(r, loss, reduction, trial)
            checks += [_compare(name, r, trial, yours, theirs[name], E[name], dtype) for name in ("loss", "dx")]
        report.checks.extend(checks)
        failed = {c.name for c in checks if c.status in ("fail", "shape")}
        mine = {g: np.asarray(yours[g], np.float64) for g in failed if isinstance(yours.get(g), np.ndarray)}
        if mine:
            found = fitting(loss_candidates(loss, reduction, batch, width, "x"), values, mine,
                            {g: tolerance(E[g], dtype) for g in ("loss", "dx")}, UNIT_ROUNDOFF[dtype])
            for g in ("loss", "dx"):
                if g in found and found[g].sentence() not in report.hints:
                    report.hints.append(found[g].sentence())
    return report


def make_loss_trials(loss: str, N: int, K: int, seed: int, dtype: np.dtype) -> list[LossTrial]:
    """``random``: x standard normal (logits twice that for bce), y as the loss takes it (see the module)."""
    rng = np.random.default_rng([seed, 3])
    x = rng.standard_normal((N, K)) * (2.0 if loss == "bce" else 1.0)
    if LOSSES[loss].labels:
        y = rng.integers(0, K, N).astype(np.int64)
    elif loss == "bce":
        y = rng.integers(0, 2, (N, K)).astype(dtype)
    else:
        y = rng.standard_normal((N, K)).astype(dtype)
    trial = LossTrial("random", np.array(x, dtype=dtype, order="C"), np.array(y, order="C"))
    for a in (trial.x, trial.y):
        a.setflags(write=False)
    return [trial]


def _form(fn: Callable) -> str:
    """``softmax_loss(x, y) -> (loss, dx)``: the user's own names."""
    name = getattr(fn, "__name__", None)
    name = name if isinstance(name, str) and name.isidentifier() else "fn"
    try:
        import inspect

        args = [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:2]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001
        args = []
    return f"{name}({', '.join(args) if len(args) == 2 else 'x, y'}) -> (loss, dx)"


def _run_user(fn: Callable, trial: LossTrial) -> tuple[dict[str, Any], list[str]]:
    """The user's ``loss`` (0-d float64) and ``dx``, and one line per input it wrote into."""
    x, y = trial.x.copy(), trial.y.copy()
    result = call("loss function", fn, x, y, label=_name(fn))
    pair = read(_name(fn), lambda: tuple(result), result) if isinstance(result, (tuple, list)) else None
    if pair is None or len(pair) != 2:
        raise UserError("loss function", f"{_name(fn)} returned {_describe_pair(result, pair)}; "
                                         f"it must return (loss, dx)")
    value, dx = pair
    dtype = trial.x.dtype.name
    named = {"loss": _as_array("loss function", "loss", value, dtype),
             "dx": _as_array("loss function", "dx", dx, dtype)}
    for key in named:  # the messages name the user's function
        if isinstance(named[key], _Unreadable):
            named[key] = _Unreadable(named[key].note.replace("loss function returned", f"{_name(fn)} returned", 1))
    if named["dx"] is None:
        named["dx"] = _Unreadable(f"{_name(fn)} returned dx as None, not an array of numbers")
    if isinstance(named["loss"], np.ndarray):
        if named["loss"].size != 1:
            named["loss"] = _Unreadable(f"{_name(fn)} returned loss as an array of shape {named['loss'].shape}; "
                                        f"the loss is one number (reduction over the batch)")
        else:
            named["loss"] = named["loss"].reshape(()).astype(np.float64)  # a scalar: any float type
    problems = [f"{_name(fn)} modified {name} in place; the caller's {name} is still needed"
                for name, mine, pristine in (("x", x, trial.x), ("y", y, trial.y))
                if mine.shape != pristine.shape or not np.array_equal(mine, pristine, equal_nan=True)]
    return named, problems


def _name(fn: Callable) -> str:
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) and name.isidentifier() else "the loss function"


def _network(loss: str, reduction: str, K: int) -> Network:
    """One Linear layer K -> K with the loss's output activation (identity unless the loss is fused), float64."""
    return Network((K, K), (LOSSES[loss].fused_with or "identity",), loss, reduction, "float64")


def _scales_and_values(loss: str, reduction: str, trial: LossTrial,
                       dtype: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``E`` of ``loss`` and ``dx`` (the policy's, x and y exact), and the right float64 values for the hints."""
    spec, net = LOSSES[loss], _network(loss, reduction, trial.x.shape[1])
    Z = np.asarray(trial.x, np.float64)
    act = ACTIVATIONS[net.activations[0]]
    A = act.forward(Z)
    labels = trial.y.ndim == 1
    T = one_hot(trial.y, Z.shape[1], np.float64) if labels else np.asarray(trial.y, np.float64)
    u, flush = UNIT_ROUNDOFF[dtype], FLUSH[dtype]
    zeros = np.zeros(Z.shape)
    E_A = activation_error(act.name, Z, A, zeros, u, flush) if spec.fused_with else zeros
    E = {"loss": loss_error(net, Z, A, T, E_A, zeros, u, flush),
         "dx": loss_gradient_error(net, Z, A, T, E_A, u, flush)}
    target = trial.y if labels else T
    values = {"x": Z, "A": A, "T": T, "loss": np.asarray(spec.value(Z, A, target, reduction), np.float64),
              "dx": spec.gradient(Z, A, target, reduction)}
    return E, values


def _reference(name: str, loss: str, reduction: str, trial: LossTrial) -> dict[str, np.ndarray]:
    """``loss`` and ``dx`` by reference ``name``, in float64: ``L`` and ``dZ1`` of the network with W = I, b = 0."""
    from .. import references

    K = trial.x.shape[1]
    net = _network(loss, reduction, K)
    y = trial.y if trial.y.ndim == 1 else np.asarray(trial.y, np.float64)
    case = make_case(net, {"W1": np.eye(K), "b1": np.zeros(K)}, np.asarray(trial.x, np.float64), y,
                     source="check_loss")
    trace = references.load(name).run(case)
    return {"loss": np.asarray(trace["L"], np.float64), "dx": np.asarray(trace["dZ1"], np.float64)}


def _compare(name: str, reference: str, trial: LossTrial, yours: dict[str, Any], ref: np.ndarray,
             E: np.ndarray, dtype: str) -> TensorCheck:
    extra = {"trial": trial.name}
    mine = yours.get(name)
    if isinstance(mine, _Unreadable):
        return TensorCheck(name, reference, ERROR, extra=extra, note=mine.note)
    if mine.shape != ref.shape:
        note = f"shape {mine.shape}, expected {ref.shape} (x's shape)"
        return TensorCheck(name, reference, "shape", extra=extra, note=note)
    if name == "dx" and mine.dtype != np.dtype(dtype):
        return TensorCheck(name, reference, "dtype", extra=extra,
                           note=f"dtype {mine.dtype}, expected {dtype} (the dtype of x)")
    check = compare_values(name, reference, mine, ref, E, dtype)
    check.extra.update(extra)
    return check
