"""Values too large for the dtype: an input error, told apart from a wrong rule, never warned about.

Finite inputs can still leave the dtype's range: ``X = 1e30`` times
``W1 = 1e10`` is Inf in float32, and ``1e200 * 1e200`` is Inf in float64. The
frameworks would then "agree" on Inf or NaN, and NumPy would print a
``RuntimeWarning`` per operation. So the engine runs with floating-point
warnings off (:func:`run_quietly`), and its trace is examined afterwards
(:func:`ensure_representable`), at the first tensor, forward then backward,
that holds a NaN or an Inf. Every input of the step that made it is finite
(they all come earlier), so the question is what that one step did with them:

- a product or a sum (``Z = A_prev @ W + b``, ``dW = A_prev.T @ dZ``,
  ``db = sum dZ``, ``dA_prev = dZ @ W.T``): its magnitudes, ``|A_prev| @ |W| + |b|``
  and so on, are taken in log space from those finite operands. Beyond the
  dtype's largest number, the values overflowed it: an :class:`InputError` names
  the tensor, the index and the dtype. Within it, a correct sum cannot
  overflow, so the engine made the NaN or Inf itself: a wrong rule, left to the
  comparator, which fails it (NaN is never equal to anything);
- an activation, the loss or its gradient: the step alone is evaluated again,
  the same kernel on the same inputs (exactly widened) in a wider type (float32
  in float64, float64 in ``np.longdouble`` where that is wider). Finite there,
  the dtype's range was left inside the step (``exp`` of a large logit, a row of
  logits spread wider than the largest float): an input error. Not finite
  there either, or no wider type: the comparator judges it.

Where the non-finite value first appears decides it, not whether some later
value is finite in the wider type: twenty layers of ``1e300`` weights overflow
float64 at ``Z2``, and long double too at ``Z17``; the first is what counts.

A rounding scale that is not finite while every value is (the magnitudes
``|A| @ |W|`` compounding over the layers although the values cancel) leaves
no tolerance to trust: an input error too, rather than an infinitely tolerant
pass. The descent step ``W - lr * dW`` is judged the same way
(:func:`ensure_step_representable`) before it is taken.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..compare import UNIT_ROUNDOFF
from ..description.case import Case
from ..description.network import layer_of
from ..description.optimizer import sgd
from ..engine.trace import Trace, run
from ..errors import InputError
from ..kernels import ACTIVATIONS, LOSSES

#: The type a step is repeated in to tell an overflow inside it from a wrong rule.
WIDER = {"float32": np.dtype(np.float64), "float64": np.dtype(np.longdouble)}
WIDER_NAME = {"float32": "float64", "float64": "long double"}


def run_quietly(case: Case) -> Trace:
    """The engine's trace, with NumPy's overflow and invalid-value warnings off (judged afterwards)."""
    with np.errstate(all="ignore"):
        return run(case)


def ensure_representable(case: Case, trace: Mapping[str, np.ndarray],
                         scales: Mapping[str, np.ndarray] | None = None) -> None:
    """Raise :class:`InputError` if ``case``'s numbers leave its dtype's range anywhere in ``trace``.

    ``scales`` are the rounding scales ``E`` of the tolerance policy, if computed. A
    case with its own learning rate (``[sgd]``) has its descent step judged too.
    """
    net = case.network
    names = net.names()
    if unfused_gradient_left_out(case, trace, scales) is not None:  # infinite by the maths, not an overflow
        names = [n for n in names if n != f"dA{net.depth}"]
    bad = _first_nonfinite(trace, names)
    if bad is not None:
        name, where = bad
        with np.errstate(all="ignore"):
            found = _step_overflow(case, trace, name, where)
        if found is None:
            return  # the engine made the NaN or Inf from representable numbers: the comparator judges it
        value = float(np.asarray(trace[name])[where]) if where else float(np.asarray(trace[name]))
        kind = "NaN" if np.isnan(value) else "Inf"
        raise InputError(f"{case.source}: the values overflow {net.dtype}: {name} is {kind}{_at(where)} "
                         f"({found}, beyond the largest {net.dtype}, {_largest(net.dtype)}); {_hint(case)}")
    if scales is not None:
        bad = _first_nonfinite(scales, [n for n in names if n in scales])
        if bad is not None:
            raise InputError(
                f"{case.source}: {bad[0]} cannot be judged in {net.dtype}: the magnitudes behind it "
                f"(|values| multiplied and summed without cancellation) grow beyond "
                f"{_largest('float64')}, far outside {net.dtype}'s range, so its rounding cannot be "
                f"bounded; scale X or the parameters down"
            )
    if case.step is not None:
        ensure_step_representable(case, case.step, trace)


def unfused_gradient_left_out(case: Case, trace: Mapping[str, np.ndarray],
                              scales: Mapping[str, np.ndarray] | None = None) -> str | None:
    """Why a fused network's ``dA_L`` (the loss differentiated as a function of A_L) cannot be judged, or None.

    It is infinite where the output is exactly 0 or 1 in ``trace``'s dtype at a term of nonzero
    weight (the loss's ``unbounded``: A == 1 with Y < 1 for bce, A == 0 with Y > 0); with the
    rounding ``scales``, it is not determined either where A_L lies within its rounding of that
    pole (its scale is not finite), since a reference computing it from A_L may divide by 0 there.
    The sentence names the first such element: ``A3 is exactly 1.0 in float64 at index [2, 0]
    (Z3 = 40.0), where dL/dA3 is infinite``.
    """
    net = case.network
    loss, L = LOSSES[net.loss], net.depth
    if loss.unbounded is None or f"A{L}" not in trace:
        return None
    Z, A = np.asarray(trace[f"Z{L}"]), np.asarray(trace[f"A{L}"])
    dtype = A.dtype.name
    exact = loss.unbounded(A, np.asarray(case.T))
    if exact.any():
        where = tuple(int(i) for i in np.argwhere(exact)[0])
        return (f"A{L} is exactly {_written(A[where])} in {dtype} at index {list(where)} "
                f"(Z{L} = {_written(Z[where])}), where dL/dA{L} is infinite")
    E = None if scales is None else scales.get(f"dA{L}")
    if E is not None and not np.isfinite(E).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(E))[0])
        pole = 1 if net.loss == "bce" and A[where] > 0.5 else 0
        return (f"A{L} is {float(A[where]):.17g} in {dtype} at index {list(where)} (Z{L} = {_written(Z[where])}), "
                f"within rounding of {pole}, where dL/dA{L} computed from A{L} is not determined")
    return None


def _written(x) -> str:
    """A number as a float is written: ``1.0``, ``40.0``, ``-3.25``, ``1e-300``."""
    text = f"{float(x):.6g}"
    return text if any(ch in text for ch in ".en") else text + ".0"


def ensure_step_representable(case: Case, step, trace: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`InputError` if the optimiser ``step`` leaves ``case``'s dtype.

    The plain step ``Wl - lr * dWl`` (and ``bl - lr * dbl``) is judged from the magnitudes
    ``|Wl| + lr |dWl|`` in log space, before the step is taken (so that it never overflows, nor
    warns); ``lr`` itself must be a number of the dtype, which the step multiplies in. Any other
    optimiser's update is taken once in the wider type, quietly: a value beyond the dtype there
    is the input's (a learning rate, a state or a gradient too large), not a wrong rule. A number
    for ``step`` is the plain step at that learning rate.
    """
    if isinstance(step, (int, float)):
        step = sgd(float(step))
    if step.rule != "sgd":
        _ensure_update_representable(case, step, trace)
        return
    lr = step.learning_rate
    net = case.network
    if lr > float(np.finfo(net.np_dtype).max):
        raise InputError(f"{case.source}: the values overflow {net.dtype}: the learning rate {lr:.4g} is "
                         f"beyond the largest {net.dtype} ({_largest(net.dtype)}); take a smaller one")
    limit = _log_largest(net.dtype)
    with np.errstate(all="ignore"):
        for name in net.parameter_shapes():
            grad = trace.get(f"d{name}")
            if grad is None or not np.isfinite(np.asarray(grad, np.float64)).all():
                continue  # a non-finite gradient is judged on its own, in the trace
            log_size = np.logaddexp(_log_abs(case.params[name]), np.log(lr) + _log_abs(grad))
            index = _beyond(log_size, limit, net.dtype, 2)
            if index is not None:
                raise InputError(
                    f"{case.source}: the values overflow {net.dtype}: {name}_next would be Inf{_at(index)} "
                    f"({name} - lr * d{name} with lr = {lr:.4g} and |d{name}| = "
                    f"{_fmt(np.abs(np.asarray(grad, np.float64))[index])} reaches {_fmt_log(log_size[index])}, "
                    f"beyond the largest {net.dtype}, {_largest(net.dtype)}); take a smaller learning rate"
                )


def _ensure_update_representable(case: Case, step, trace: Mapping[str, np.ndarray]) -> None:
    net = case.network
    if step.learning_rate > float(np.finfo(net.np_dtype).max):
        raise InputError(f"{case.source}: the values overflow {net.dtype}: the learning rate "
                         f"{step.learning_rate:.4g} is beyond the largest {net.dtype} ({_largest(net.dtype)})")
    wide = WIDER[net.dtype]
    largest = float(np.finfo(net.np_dtype).max)
    with np.errstate(all="ignore"):
        for name in net.parameter_shapes():
            grad = trace.get(f"d{name}")
            if grad is None or not np.isfinite(np.asarray(grad, np.float64)).all():
                continue  # a non-finite gradient is judged on its own, in the trace
            P = np.asarray(case.params[name]).astype(wide)
            state = {s: np.asarray(v).astype(wide) for s, v in step.state_of(name, case.params[name]).items()}
            P_next, new = step.optimizer.update(P, np.asarray(grad).astype(wide), state, step.learning_rate,
                                                t=step.t, **step.constants)
            for what, value in ((f"{name}_next", P_next), *((f"{s}{name}_next", v) for s, v in new.items())):
                beyond = ~(np.abs(value) <= largest)
                if beyond.any():
                    index = tuple(int(i) for i in np.argwhere(beyond)[0])
                    raise InputError(f"{case.source}: the values overflow {net.dtype}: {what} would be Inf"
                                     f"{_at(index)} (the {step.rule} update reaches "
                                     f"{float(np.abs(value[index])):.4g}, beyond the largest {net.dtype}, "
                                     f"{_largest(net.dtype)}); take a smaller learning rate or state")


# --- the step that made the first non-finite value ---------------------------------------------

def _step_overflow(case: Case, trace: Mapping[str, np.ndarray], name: str, where: tuple[int, ...]) -> str | None:
    """Why ``name[where]`` (the first non-finite value) is an overflow of the dtype, or None if it is not one."""
    net = case.network
    L = net.depth
    kind, l = name.rstrip("0123456789"), layer_of(name) or 0
    prev = (lambda k: trace[f"A{k - 1}"] if k > 1 else trace["X"])  # noqa: E731
    fused_top = net.fused and name == f"dZ{L}"
    if kind == "Z":
        sizes = _log_matmul(prev(l), case.params[f"W{l}"])
        sizes = np.logaddexp(sizes, _log_abs(case.params[f"b{l}"]))
        return _linear(sizes, where, net.dtype, f"|A{l - 1}| @ |W{l}| + |b{l}|" if l > 1 else
                       f"|X| @ |W{l}| + |b{l}|", net.sizes[l - 1] + 1)
    if kind in ("dW", "db"):  # a sum of products, plus the L2 term 2fλ|P| where the penalty covers P
        p = f"{kind[1]}{l}"
        if kind == "dW":
            sizes = _log_matmul(prev(l).T, trace[f"dZ{l}"])
            formula, n = f"|{'A' + str(l - 1) if l > 1 else 'X'}|.T @ |dZ{l}|", case.batch
        else:
            sizes, formula, n = _log_matmul(np.ones((1, case.batch)), trace[f"dZ{l}"])[0], f"sum |dZ{l}|", case.batch
        if p in net.l2_names():
            sizes = np.logaddexp(sizes, np.log(2 * net.l2_factor) + _log_abs(case.params[p]))
            formula, n = f"{formula} + 2fλ|{p}|", n + 1
        return _linear(sizes, where, net.dtype, formula, n)
    if name == "L_reg":  # f λ Σ w², its magnitude in log space
        logs = np.concatenate([2 * _log_abs(case.params[p]).ravel() for p in net.l2_names()])
        size = np.log(net.l2_factor) + np.logaddexp.reduce(logs)
        return _linear(np.asarray(size), (), net.dtype, "the L2 penalty f·λ·Σ‖W‖²", logs.size)
    if name == "L" and net.regularized:  # L = L_data + L_reg, both finite
        size = np.logaddexp(_log_abs(trace["L_data"]), _log_abs(trace["L_reg"]))
        return _linear(np.asarray(size), (), net.dtype, "|L_data| + |L_reg|", 2)
    if kind in ("dA", "dX") and not (kind == "dA" and l == L):
        k = l + 1 if kind == "dA" else 1
        return _linear(_log_matmul(trace[f"dZ{k}"], np.asarray(case.params[f"W{k}"]).T), where, net.dtype,
                       f"|dZ{k}| @ |W{k}|.T", net.sizes[k])
    # a step that is not a sum of products: the same kernel, on the same inputs, in the wider type
    wide = WIDER[net.dtype]
    if np.finfo(wide).max <= np.finfo(net.np_dtype).max:
        return None  # long double is plain double on this platform
    w = lambda a: np.asarray(a).astype(wide) if np.asarray(a).dtype.kind == "f" else np.asarray(a)  # noqa: E731
    T = w(case.T)
    if kind == "A":
        value, what = ACTIVATIONS[net.activations[l - 1]].forward(w(trace[f"Z{l}"])), f"act(Z{l})"
    elif name in ("L", "L_data"):
        value, what = LOSSES[net.loss].value(w(trace[f"Z{L}"]), w(trace[f"A{L}"]), T, net.reduction), "the loss"
    elif net.fused and name == f"dA{L}":  # the loss as a function of A_L, from the logits
        value = LOSSES[net.loss].unfused_gradient(w(trace[f"Z{L}"]), w(trace[f"A{L}"]), T, net.reduction)
        what = f"dL/dA{L}"
    elif fused_top or name == f"dA{L}":
        value = LOSSES[net.loss].gradient(w(trace[f"Z{L}"]), w(trace[f"A{L}"]), T, net.reduction)
        what = "the loss gradient"
    elif kind == "dZ":
        value = ACTIVATIONS[net.activations[l - 1]].backward(w(trace[f"dA{l}"]), w(trace[f"Z{l}"]),
                                                            w(trace[f"A{l}"]))
        what = f"dA{l} * act'(Z{l})"
    else:  # pragma: no cover - every name of a trace is one of the above
        return None
    value = np.asarray(value)
    v = value[where] if where else value
    if not np.isfinite(v):
        return None
    if abs(v) > np.finfo(net.np_dtype).max:
        return f"{what} is {_fmt(v)} when computed in {WIDER_NAME[net.dtype]}"
    return (f"{what} is {_fmt(v)} when computed in {WIDER_NAME[net.dtype]}, but a value inside the step "
            f"(exp of a large logit, a difference of logits) goes")  # ..., beyond the largest float32


def _linear(log_sizes: np.ndarray, where: tuple[int, ...], dtype: str, formula: str, n: int) -> str | None:
    """The sentence for a sum of n products whose magnitude at ``where`` exceeds the dtype, or None.

    Within range (allowing for the n roundings of the sum), a correct sum of these cannot overflow.
    """
    size = float(log_sizes[where]) if where else float(log_sizes)
    if _beyond(np.asarray(size), _log_largest(dtype), dtype, n) is None:
        return None
    return f"{formula} reaches {_fmt_log(size)}"


def _log_abs(a) -> np.ndarray:
    """``log|a|`` in float64 (-inf at 0), quietly."""
    with np.errstate(divide="ignore"):
        return np.log(np.abs(np.asarray(a, dtype=np.float64)))


def _log_matmul(a, b) -> np.ndarray:
    """``log(|a| @ |b|)`` without overflow: each factor scaled by its largest magnitude first."""
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    sa, sb = (float(x.max()) if x.size else 0.0 for x in (a, b))
    if sa == 0 or sb == 0:
        return np.full((a.shape[0], b.shape[1]), -np.inf)
    with np.errstate(divide="ignore", under="ignore"):
        return np.log((a / sa) @ (b / sb)) + np.log(sa) + np.log(sb)


def _beyond(log_sizes: np.ndarray, limit: float, dtype: str, n: int) -> tuple[int, ...] | None:
    """The first index whose magnitude, rounded up n times in ``dtype``, exceeds ``exp(limit)``; or None."""
    over = np.asarray(log_sizes + np.log1p(n * UNIT_ROUNDOFF[dtype]) > limit)
    if not over.any():
        return None
    return tuple(int(i) for i in np.argwhere(over)[0]) if over.ndim else ()


def _log_largest(dtype: str) -> float:
    return float(np.log(np.finfo(np.dtype(dtype)).max))


def _largest(dtype: str) -> str:
    return f"{float(np.finfo(np.dtype(dtype)).max):.4g}"


def _fmt(x) -> str:
    """A number as ``6.8e+308`` or ``0.5``, a long double beyond float64 included."""
    x = np.asarray(x)[()]
    if np.isfinite(float(x)) and abs(float(x)) < 1e15:
        return f"{float(x):.4g}"
    return np.format_float_scientific(x, precision=3, unique=False, trim="-")


def _fmt_log(log_size: float) -> str:
    """``e**log_size`` written as a decimal, however large: ``1e+600``, ``6.8e+308``."""
    exponent = log_size / np.log(10)
    whole = int(np.floor(exponent))
    mantissa = f"{10 ** (exponent - whole):.3g}"
    if float(mantissa) >= 10:  # 9.9996 rounds to 10
        whole, mantissa = whole + 1, f"{float(mantissa) / 10:.3g}"
    return f"{mantissa}e+{whole}"


def _at(where: tuple[int, ...]) -> str:
    return f" at index {list(where)}" if where else ""


def _hint(case: Case) -> str:
    """What to do: scale down; for float32, float64 too if the whole case stays finite there."""
    hint = "scale X or the parameters down"
    if case.network.dtype == "float32" and _finite_in_float64(case):
        hint += ', or use dtype = "float64", where every value of this case is finite'
    return hint


def _finite_in_float64(case: Case) -> bool:
    from ..description.case import as_float64

    with np.errstate(all="ignore"):
        wide = run(as_float64(case))
    return _first_nonfinite(wide, case.network.names()) is None


def _first_nonfinite(trace: Mapping[str, np.ndarray], names: list[str]) -> tuple[str, tuple[int, ...]] | None:
    for name in names:
        a = np.asarray(trace[name])
        if a.dtype.kind != "f":
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            return name, tuple(int(i) for i in np.argwhere(bad)[0])
    return None
