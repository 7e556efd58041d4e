"""How a user's layer is called: the forms people already write, found from the signature.

:func:`layer_calls` reads the user's code (``inspect.signature``, and for an
object its methods) and returns a :class:`Calls`: the same two calls
``forward(x, params) -> (out, cache)`` and ``backward(dout, cache) -> grads``
for the checker, whatever the form, and the form's name for the report.

Functions (``check_layer(forward, backward, layer)``), by the number of
arguments ``forward`` requires (those without a default):

=====  =======================  ==============================================================
args   form                     calls
=====  =======================  ==============================================================
2      ``forward(x, params)``   ``forward(x, {"W": W, "b": b}) -> (out, cache)`` ({} without
                                parameters); ``backward(dout, cache) -> grads``: a dict
                                ``{"x": dx, "W": dW, "b": db}``, a tuple ``(dx, dW, db)``, or dx
3      ``forward(x, w, b)``     CS231n's ``affine_forward(x, w, b) -> (out, cache)``,
                                ``affine_backward(dout, cache) -> (dx, dw, db)`` (and
                                ``affine_relu_forward``/``_backward``): a Linear layer only
1      ``forward(x)``           CS231n's ``relu_forward(x) -> (out, cache)``,
                                ``relu_backward(dout, cache) -> dx``: a layer without parameters
=====  =======================  ==============================================================

A signature that cannot be read (a builtin, ``*args``) is taken as ``forward(x, params)``.

An object (``check_layer(layer_object, "linear")``: an instance, never a class)
with methods ``forward(X) -> out`` and ``backward(dout) -> dX`` (a list of
one dX, as numpy-ml's ``backward`` returns, is taken as dX). Its parameters
are found by name, in this order (the first that is there is used):

1. a dict attribute ``parameters``, gradients in the dict ``gradients``  (numpy-ml ``FullyConnected``);
2. a dict attribute ``params``, gradients in the dict ``grads``          (course code);
3. attributes ``W`` (or ``w``) and ``b``, gradients ``dW`` (``dw``) and ``db``  (Deep Learning from Scratch ``Affine``);

in a dict, the keys ``"W"`` (or ``"w"``) and ``"b"``. For each trial the
checker sets copies of the parameters it drew into those places (a bias
kept as a row ``(1, n_out)``, numpy-ml's layout, stays a row, and its
gradient is read back as ``(n_out,)``), clears the gradients (each dict entry
set to zeros, since numpy-ml adds into them; each attribute to None), runs
``forward`` then ``backward``, and reads the gradients from their places.
A parameter still None (numpy-ml makes its parameters on the first forward)
is made by one forward on the trial's x first; a method ``flush_gradients()``
(numpy-ml's, which forgets the inputs kept by earlier forwards) is called
before each trial.

Whatever the user's code raises is a :class:`UserError` naming the function
(:func:`call`); only ``KeyboardInterrupt`` and ``SystemExit`` escape.
"""

from __future__ import annotations

import inspect
import os
import sysconfig
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import InputError

#: The function forms, by the number of arguments forward requires.
PARAMS_FORM = "forward(x, params)"
WB_FORM = "forward(x, w, b)"
X_FORM = "forward(x)"
NORM_FORM = "forward(x, gamma, beta, bn_param)"
LINEAR_NORM_FORM = "forward(x, w, b, gamma, beta, bn_param)"
FUNCTION_FORMS = {2: PARAMS_FORM, 3: WB_FORM, 1: X_FORM}
#: The course's norm forms (``batchnorm_forward(x, gamma, beta, bn_param)``, ``affine_bn_relu_forward(x, w, b,
#: gamma, beta, bn_param)``), by the number of arguments forward requires: for a layer with a norm only.
NORM_FORMS = {4: NORM_FORM, 6: LINEAR_NORM_FORM}

#: Where an object keeps its parameters, searched in this order: ``(dict attribute, its gradients' dict)``,
#: then ``{parameter: ((attribute, its gradient's attribute), ...)}``.
DICT_SLOTS = (("parameters", "gradients"), ("params", "grads"))
DICT_KEYS = {"W": ("W", "w"), "b": ("b",)}
ATTRIBUTE_SLOTS = {"W": (("W", "dW"), ("w", "dw")), "b": (("b", "db"),)}


class UserError(Exception):
    """The user's ``function`` raised, or returned something with nothing to compare: one line saying so."""

    def __init__(self, function: str, message: str):
        super().__init__(message)
        self.function = function


@dataclass(frozen=True)
class Missing:
    """A gradient the user's code did not give, and the words for it."""

    note: str


@dataclass
class Calls:
    """The user's layer as ``forward(x, params) -> (out, cache)`` and ``backward(dout, cache) -> grads``.

    ``form`` names the form for the report. ``pair``: forward's result is the
    user's own and must be a pair ``(out, cache)`` (functions); an object's
    forward returns ``out`` alone and ``forward`` here makes the pair.
    """

    form: str
    forward: Callable[[np.ndarray, dict[str, np.ndarray]], Any]
    backward: Callable[[np.ndarray, Any], Any]
    pair: bool = True


def layer_calls(forward: Any, backward: Any, layer: str, linear: bool, norm: str = "none",
                eps: float = 1e-5) -> Calls:
    """The :class:`Calls` of the user's ``forward``/``backward`` (or of a layer object in ``forward``).

    A layer with a ``norm`` also takes the course's ``forward(x, gamma, beta, bn_param)`` (after a Linear
    part, ``forward(x, w, b, gamma, beta, bn_param)``), called with ``bn_param = {"mode": "train", "eps": eps}``
    (a new dict each call: the course's code stores running statistics in it).

    A form that cannot be the layer's (``forward(x, w, b)`` for a layer
    without parameters, an object with no parameters to be found) is an
    :class:`InputError`: nothing of the user's code has run.
    """
    if _is_layer_object(forward):
        if backward is not None:
            raise InputError(f"check_layer: a layer object brings its own backward; call "
                             f"check_layer(layer, {layer!r}), without a backward function")
        return _object_calls(forward, layer, linear)
    if isinstance(forward, type):
        raise InputError(f"check_layer: forward is the class {forward.__name__}; pass an instance, "
                         f"check_layer({forward.__name__}(...), {layer!r})")
    for name, value, shape in (("forward", forward, "forward(x, params) -> (out, cache)"),
                               ("backward", backward, "backward(dout, cache) -> grads")):
        if not callable(value):
            raise InputError(f"check_layer: {name} must be a function {shape}, got {type_name(value)}")
    n = required_positional(forward)
    if norm != "none":
        return _norm_calls(forward, backward, layer, linear, n, eps)
    form = FUNCTION_FORMS.get(n, PARAMS_FORM) if n is not None else PARAMS_FORM
    if n is not None and n not in FUNCTION_FORMS:
        raise InputError(f"check_layer: forward requires {count(n, 'argument')}; the forms known are "
                         f"{PARAMS_FORM}, {WB_FORM} (a Linear layer) and {X_FORM} (no parameters)")
    if form == WB_FORM and not linear:
        raise InputError(f"check_layer: forward takes (x, w, b), but the {layer} layer has no parameters; "
                         f"write {X_FORM} or {PARAMS_FORM}")
    if form == X_FORM and linear:
        raise InputError(f"check_layer: forward takes x alone, but the {layer} layer has W and b; "
                         f"write {WB_FORM} or {PARAMS_FORM}")
    if form == WB_FORM:
        return Calls(form, lambda x, p: call("forward", forward, x, p["W"], p["b"]),
                     lambda dout, cache: call("backward", backward, dout, cache))
    if form == X_FORM:
        return Calls(form, lambda x, p: call("forward", forward, x),
                     lambda dout, cache: call("backward", backward, dout, cache))
    return Calls(form, lambda x, p: call("forward", forward, x, p),
                 lambda dout, cache: call("backward", backward, dout, cache))


def _norm_calls(forward: Any, backward: Any, layer: str, linear: bool, n: int | None, eps: float) -> Calls:
    """The calls of a layer with a norm: ``forward(x, params)`` or the course's form with ``bn_param``."""
    course = LINEAR_NORM_FORM if linear else NORM_FORM
    if "layernorm" in layer:
        course = course.replace("bn_param", "ln_param")
    wanted = 6 if linear else 4
    if n is None or n == 2:
        return Calls(PARAMS_FORM, lambda x, p: call("forward", forward, x, p),
                     lambda dout, cache: call("backward", backward, dout, cache))
    if n != wanted:
        raise InputError(f"check_layer: forward requires {count(n, 'argument')}; the {layer} layer is called as "
                         f"{PARAMS_FORM} or {course}")
    bn_param = lambda: {"mode": "train", "eps": eps}  # noqa: E731
    if linear:
        return Calls(course, lambda x, p: call("forward", forward, x, p["W"], p["b"], p["gamma"], p["beta"],
                                               bn_param()),
                     lambda dout, cache: call("backward", backward, dout, cache))
    return Calls(course, lambda x, p: call("forward", forward, x, p["gamma"], p["beta"], bn_param()),
                 lambda dout, cache: call("backward", backward, dout, cache))


def required_positional(fn: Callable) -> int | None:
    """How many positional arguments ``fn`` requires (no default); None if unknown (``*args``, unreadable)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001  (a builtin, or a __signature__ of the user's)
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return sum(1 for p in parameters
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)


def _is_layer_object(value: Any) -> bool:
    """An instance (not a class, not a plain function) with ``forward`` and ``backward`` methods."""
    if isinstance(value, type) or inspect.isroutine(value):
        return False
    try:
        return callable(getattr(value, "forward", None)) and callable(getattr(value, "backward", None))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001  (a __getattr__ of the user's)
        return False


# --- an object: forward(X), backward(dout), parameters by name ------------------------------------

@dataclass(frozen=True)
class _Slot:
    """Where one parameter and its gradient live: ``obj.<dict>[key]`` / ``obj.<grads>[key]``, or attributes."""

    param: str                 # "W" or "b"
    holder: str | None         # the dict attribute ("parameters"), or None for a plain attribute
    key: str                   # the dict key, or the attribute
    grad_holder: str | None
    grad_key: str

    @property
    def words(self) -> str:
        return f"{self.holder}[{self.key!r}]" if self.holder else self.key

    @property
    def grad_words(self) -> str:
        return f"{self.grad_holder}[{self.grad_key!r}]" if self.grad_holder else self.grad_key


def find_slots(obj: Any, layer: str) -> list[_Slot]:
    """The places of W and b in ``obj``, by the names of :data:`DICT_SLOTS` then :data:`ATTRIBUTE_SLOTS`."""
    cls = type(obj).__name__
    for holder, grads in DICT_SLOTS:
        d = _attribute(obj, holder)
        if not isinstance(d, Mapping):
            continue
        keys = {p: next((k for k in ks if k in d), None) for p, ks in DICT_KEYS.items()}
        if keys["W"] is None and keys["b"] is None:
            continue
        lacking = [p for p, k in keys.items() if k is None]
        if lacking:
            raise InputError(f"check_layer: {cls}.{holder} has no {lacking[0]!r}; the {layer} layer has W and b")
        return [_Slot(p, holder, keys[p], grads, keys[p]) for p in ("W", "b")]
    slots = []
    for p, names in ATTRIBUTE_SLOTS.items():
        found = next(((a, g) for a, g in names if _has_attribute(obj, a)), None)
        if found is not None:
            slots.append(_Slot(p, None, found[0], None, found[1]))
    if len(slots) == 2:
        return slots
    raise InputError(f"check_layer: {cls} has no parameters the checker knows; it looks for a dict attribute "
                     f"'parameters' (gradients in 'gradients') or 'params' (gradients in 'grads') with keys "
                     f"'W' (or 'w') and 'b', then attributes 'W' (or 'w') and 'b' (gradients 'dW', 'db')")


def _attribute(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001
        return None


def _has_attribute(obj: Any, name: str) -> bool:
    """Whether ``obj`` has the attribute; one whose reading raises is there (the trial will say what it raised)."""
    try:
        return hasattr(obj, name)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001
        return True


def _method_form(obj: Any) -> str:
    """``forward(x), backward(dout)`` in the object's own argument names."""
    def first(method: str, default: str) -> str:
        try:
            names = [p.name for p in inspect.signature(getattr(obj, method)).parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001
            names = []
        return names[0] if names else default
    return f"forward({first('forward', 'x')}), backward({first('backward', 'dout')})"


def _object_calls(obj: Any, layer: str, linear: bool) -> Calls:
    cls = type(obj).__name__
    slots = find_slots(obj, layer) if linear else []
    form = f"class {cls} ({_method_form(obj)}"
    if slots:
        form += (f"; {', '.join(s.words for s in slots)} -> {', '.join(s.grad_words for s in slots)}")
    form += ")"
    layouts: dict[str, tuple[int, ...]] = {}

    def get(phase: str, holder: str | None, key: str) -> Any:
        if holder is None:
            return call(phase, lambda: getattr(obj, key, None), label=f"reading {cls}.{key}")
        d = call(phase, lambda: getattr(obj, holder, None), label=f"reading {cls}.{holder}")
        if not isinstance(d, Mapping):
            return None
        return call(phase, lambda: d.get(key), label=f"reading {cls}.{holder}[{key!r}]")

    def put(holder: str | None, key: str, value: Any) -> None:
        if holder is None:
            call("forward", setattr, obj, key, value, label=f"setting {cls}.{key}")
            return
        d = call("forward", lambda: getattr(obj, holder, None), label=f"reading {cls}.{holder}")
        if d is None and holder != slots[0].holder:  # a gradients dict not made yet
            d = {}
            call("forward", setattr, obj, holder, d, label=f"setting {cls}.{holder}")
        if not isinstance(d, MutableMapping):
            raise UserError("forward", f"{cls}.{holder} is {describe(d)}, not a dict the checker can write into")
        call("forward", d.__setitem__, key, value, label=f"setting {cls}.{holder}[{key!r}]")

    def forward(x: np.ndarray, params: dict[str, np.ndarray]) -> tuple[Any, None]:
        if any(get("forward", s.holder, s.key) is None for s in slots):  # numpy-ml: made by the first forward
            call("forward", obj.forward, x.copy())
        flush = _attribute(obj, "flush_gradients")
        if callable(flush):
            call("forward", flush, label=f"{cls}.flush_gradients()")
        for s in slots:
            value = params[s.param]
            current = get("forward", s.holder, s.key)
            shape = np.shape(current) if isinstance(current, np.ndarray) else value.shape
            if shape != value.shape and int(np.prod(shape)) == value.size:
                value = value.reshape(shape)  # the layer's own layout (numpy-ml's b: (1, n_out)); a view
            layouts[s.param] = shape if shape != params[s.param].shape and value.shape == shape else ()
            put(s.holder, s.key, value)
            put(s.grad_holder, s.grad_key, np.zeros(value.shape, value.dtype) if s.grad_holder else None)
        return call("forward", obj.forward, x), None

    def backward(dout: np.ndarray, cache: Any) -> dict[str, Any]:
        dx = call("backward", obj.backward, dout)
        if dx is None:
            dx = Missing(f"{cls}.backward returned None; it must return dX (and set the parameters' gradients)")
        if isinstance(dx, (list, tuple)) and len(dx) == 1 and isinstance(dx[0], np.ndarray):
            dx = dx[0]  # numpy-ml: [dX] (a list of arrays is a list of gradients; dx.tolist() holds no arrays)
        grads: dict[str, Any] = {"x": dx}
        for s in slots:
            g = get("backward", s.grad_holder, s.grad_key)
            if g is None:
                g = Missing(f"after backward, {cls}.{s.grad_words} is {'None' if _slot_exists(s) else 'not there'}"
                            f" (backward should set it to d{s.param})")
            elif layouts.get(s.param) and isinstance(g, np.ndarray) and g.shape == layouts[s.param]:
                g = g.reshape(-1)  # back from the layer's layout to the checker's (n_out,)
            grads[s.param] = g
        return grads

    def _slot_exists(s: _Slot) -> bool:
        if s.grad_holder is None:
            return _has_attribute(obj, s.grad_key)
        d = _attribute(obj, s.grad_holder)
        return isinstance(d, Mapping) and s.grad_key in d

    return Calls(form, forward, backward, pair=False)


# --- calling the user's code ----------------------------------------------------------------------

def call(function: str, fn: Callable, *args: Any, label: str | None = None) -> Any:
    """``fn(*args)``; whatever the user's code raises (but KeyboardInterrupt, SystemExit) is a :class:`UserError`.

    ``function`` (forward, backward) names the check; ``label`` what raised, if not the function itself
    (``setting Affine.W``).
    """
    try:
        return fn(*args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except UserError:
        raise
    except BaseException as e:  # noqa: BLE001  (the user's own exception, whatever it is)
        raise UserError(function, f"{label or function} raised {exception(e)}{where(e)}") from None


def read(function: str, reader: Callable[[], Any], value: Any) -> Any:
    """Read a container the user's code returned (its own methods may raise)."""
    try:
        return reader()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001
        raise UserError(function, f"{function} returned {describe(value)} that could not be read: "
                                  f"{exception(e)}") from None


@dataclass(frozen=True)
class Unreadable:
    """A value the user's code returned that is not an array of real numbers, and why."""

    note: str


def user_array(function: str, name: str, value: Any, dtype: str, real: str = "it must be real") -> Any:
    """A copy of what ``function`` returned as ``name``, as an array, or an :class:`Unreadable` saying why not.

    Refused: None, strings, mappings and sets; anything ``np.array`` cannot read (a ragged list, an
    ``__array__`` that raises); arrays of objects, complex numbers (``real`` says what must be real),
    strings or dates. Booleans and integers are arrays; the comparison names their dtype.
    """
    head = f"{function} returned {name} as"
    if value is None:
        return Unreadable(f"{head} None, not an array of numbers")
    if isinstance(value, (str, bytes, Mapping, set, frozenset)):
        return Unreadable(f"{head} {describe(value)}, not an array of numbers")
    try:
        a = np.array(value, copy=True)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001  (an __array__ of the user's, a ragged list)
        return Unreadable(f"{head} {describe(value)} that is not an array of numbers: {exception(e)}")
    if a.dtype.kind == "O":
        if isinstance(value, np.ndarray):
            return Unreadable(f"{head} an array of Python objects, not of numbers")
        if isinstance(value, (tuple, list)):
            return Unreadable(f"{head} {describe(value)} that is not an array of numbers "
                              f"(rows of different lengths, or values that are not numbers?)")
        return Unreadable(f"{head} {describe(value)}, not an array of numbers")
    if a.dtype.kind == "c":
        return Unreadable(f"{head} an array of {a.dtype}; {real} ({dtype} here)")
    if a.dtype.kind not in "biuf":  # strings, bytes, dates, records
        return Unreadable(f"{head} an array of {a.dtype}, not of numbers")
    return a


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def describe(value: Any) -> str:
    """What the user's code returned, in a few words: ``None``, ``a str``, ``an array of shape (5, 4)``."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    text = text.splitlines()[0] if text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exception(e: BaseException) -> str:
    """``ValueError: the first line of its message`` (at most 200 characters)."""
    try:
        text = str(e)
    except Exception:  # noqa: BLE001  (a __str__ of the user's)
        text = ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = line if len(line) <= 200 else line[:199] + "…"
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


_LIBRARIES = tuple(os.path.realpath(p) + os.sep for p in {
    sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")} if p)


def where(e: BaseException) -> str:
    """`` (at file:line in function)``: the innermost frame of the user's own code the exception came through."""
    tb, frame = e.__traceback__, None
    tb = tb.tb_next if tb is not None else None  # the first frame is call's
    while tb is not None:
        path = os.path.realpath(tb.tb_frame.f_code.co_filename)
        if not path.startswith(_LIBRARIES) or frame is None:
            frame = tb
        tb = tb.tb_next
    if frame is None:
        return ""
    path = frame.tb_frame.f_code.co_filename
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    except ValueError:
        pass
    return f" (at {path}:{frame.tb_lineno} in {frame.tb_frame.f_code.co_name})"
