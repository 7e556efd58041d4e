"""Check a user's own NumPy layer against PyTorch and JAX.

A layer is a pure pair of functions, as in llm.c's ``layernorm.py``::

    forward(x, params) -> (out, cache)      x (N, n_in); params {"W": (n_in, n_out), "b": (n_out,)} or {}
    backward(dout, cache) -> grads          {"x": dx, "W": dW, "b": db} (keys may be "dx", "dW", "db"),
                                            or a tuple (dx, dW, db), or dx alone for a layer without parameters

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..compare import (
    UNIT_ROUNDOFF,
    TensorCheck,
    compare_values,
    layer_error_scales,
    may_flip,
)
from ..compare.tolerance import kink_layer_scales
from ..errors import InputError
from ..kernels import ACTIVATIONS


@dataclass(frozen=True)
class LayerSpec:
    """A layer the references know: an optional Linear part, then an activation."""

    name: str
    linear: bool
    activation: str

    @property
    def has_kink(self) -> bool:
        return self.activation == "relu"

    @property
    def params(self) -> tuple[str, ...]:
        return ("W", "b") if self.linear else ()


LAYERS: dict[str, LayerSpec] = {
    s.name: s
    for s in (
        LayerSpec("linear", True, "identity"),
        LayerSpec("relu", False, "relu"),
        LayerSpec("sigmoid", False, "sigmoid"),
        LayerSpec("tanh", False, "tanh"),
        LayerSpec("softmax", False, "softmax"),
        LayerSpec("linear+relu", True, "relu"),
        LayerSpec("linear+sigmoid", True, "sigmoid"),
        LayerSpec("linear+tanh", True, "tanh"),
        LayerSpec("linear+softmax", True, "softmax"),
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


@dataclass
class LayerReport:
    """Every check of one layer; :meth:`message` names the first failure and its worst element."""

    layer: str
    references: list[str]
    trials: list[str]
    checks: list[TensorCheck] = field(default_factory=list)  # extra["trial"] names each one's trial

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[TensorCheck]:
        return [c for c in self.checks if not c.ok]

    def message(self) -> str:
        if self.ok:
            return (f"{self.layer} layer agrees with {', '.join(self.references)} on "
                    f"{len(self.trials)} trial(s) ({', '.join(self.trials)}).")
        first = self.failures[0]
        names = dict.fromkeys(f"{c.name} ({c.extra['trial']})" for c in self.failures)  # in the order checked
        where = f"{self.layer} layer, {first.extra['trial']} trial"
        return first.message(ours="yours", where=where) + f". Disagreeing: {', '.join(names)}."


def check_layer(forward: Callable, backward: Callable, layer: str, *, batch: int = 5, n_in: int = 4,
                n_out: int = 3, seed: int = 0, dtype: str = "float64",
                against: tuple[str, ...] | None = None) -> LayerReport:
    """Run the user's ``forward``/``backward`` pair on ``layer``'s trials and compare with the references.

    ``against`` names references (``"torch"``, ``"jax"``); by default every
    installed one. A layer without a Linear part keeps its width (n_out = n_in).
    """
    from .. import references

    spec = _spec(layer)
    if dtype not in UNIT_ROUNDOFF:
        raise InputError(f"unknown dtype {dtype!r}; known: {', '.join(UNIT_ROUNDOFF)}")
    names = list(against) if against is not None else [r for r in ("torch", "jax") if references.is_installed(r)]
    if not names:
        raise InputError("no reference to check a layer against: install torch or jax "
                         "(pip install 'manual-backprop[references]')")
    for r in names:
        if r not in REFERENCES:
            raise InputError(f"unknown layer reference {r!r}; known: {', '.join(REFERENCES)}")
        references.load(r)  # a missing framework is an InputError with the install hint
    trials = make_trials(spec, batch, n_in, n_out if spec.linear else n_in, seed, np.dtype(dtype))
    report = LayerReport(spec.name, names, [t.name for t in trials])
    for trial in trials:
        yours = _run_user(forward, backward, spec, trial)
        E, kinks = _scales(spec, trial, dtype)
        for r in names:
            theirs = _reference(r, spec, trial)
            for name, ref in theirs.items():
                report.checks.append(_compare(name, r, trial, yours, ref, dtype, spec, E, kinks))
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
    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
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
    return trials


def _spec(layer: str) -> LayerSpec:
    if layer not in LAYERS:
        raise InputError(f"unknown layer {layer!r}; known: {', '.join(LAYERS)}")
    return LAYERS[layer]


def _run_user(forward: Callable, backward: Callable, spec: LayerSpec, trial: Trial) -> dict[str, Any]:
    """The user's ``out`` and gradients, named ``out``, ``dx``, ``dW``, ``db``; copies go in, never the originals."""
    out, cache = forward(trial.x.copy(), {k: v.copy() for k, v in trial.params.items()})
    grads = backward(trial.dout.copy(), cache)
    wanted = ("x",) + spec.params
    named: dict[str, Any] = {"out": out}
    if isinstance(grads, Mapping):
        for key in wanted:
            value = grads.get(key, grads.get(f"d{key}"))
            named[f"d{key}"] = value
    elif isinstance(grads, (tuple, list)):
        for key, value in zip(wanted, grads):
            named[f"d{key}"] = value
    else:
        named["dx"] = grads
    return named


def _scales(spec: LayerSpec, trial: Trial, dtype: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``E`` of ``out``, ``dx`` (, ``dW``, ``db``), and what a unit that may flip at the kink moves them.

    From the layer's own float64 values: ``Z = x @ W + b`` (or x), ``out = act(Z)``
    and ``dZ = dout * act'(Z)``, by the engine's kernels.
    """
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    x, params, dout = f64(trial.x), {k: f64(v) for k, v in trial.params.items()}, f64(trial.dout)
    act = ACTIVATIONS[spec.activation]
    Z = x @ params["W"] + params["b"] if spec.linear else x
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
             kinks: Mapping[str, np.ndarray]) -> TensorCheck:
    extra = {"trial": trial.name}
    mine = yours.get(name)
    if mine is None:
        return TensorCheck(name, reference, "missing", extra=extra,
                           note=f"backward returned no {name} (give {name[1:]!r} or {name!r})")
    mine = np.asarray(mine)
    if mine.shape != ref.shape:
        note = f"shape {mine.shape}, expected {ref.shape}"
        if mine.ndim == 2 and mine.shape == ref.shape[::-1]:
            note += " (the transposed layout: is it dout.T @ x instead of x.T @ dout?)"
        return TensorCheck(name, reference, "shape", extra=extra, note=note)
    if mine.dtype != np.dtype(dtype):
        return TensorCheck(name, reference, "dtype", extra=extra,
                           note=f"dtype {mine.dtype}, expected {dtype} (the dtype of the inputs)")
    check = compare_values(name, reference, mine, ref, E[name], dtype, kinks.get(name))
    check.extra.update(extra)
    if check.status == "fail" and trial.on_kink is not None and trial.on_kink.any():
        check.note = ("this trial puts pre-activations exactly on the ReLU kink (Z == 0), where the "
                      "derivative is taken as 0, as by torch.relu and jax.nn.relu")
        if name in ("out", "dx") and not spec.linear and trial.on_kink[check.worst.index]:
            check.note = "x there is exactly 0, the ReLU kink, where the derivative is 0 (torch.relu, jax.nn.relu)"
    return check


def _reference(name: str, spec: LayerSpec, trial: Trial) -> dict[str, np.ndarray]:
    """``out`` and the gradients of ``(out * dout).sum()`` by reference ``name``, in float64."""
    from .. import references

    return references.load(name).layer_gradients(spec.linear, spec.activation, trial.x, trial.params, trial.dout)


#: The references a layer is checked against.
REFERENCES = ("torch", "jax")
