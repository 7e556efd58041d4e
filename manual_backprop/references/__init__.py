"""The references: the same network, computed by something other than the hand-derived backward.

Each reference is a module with ``run(case, device=None)`` and ``version()``:

- ``torch``: the maths written with torch ops, gradients by autograd;
- ``jax``: the maths written with jax.numpy, gradients by ``jax.value_and_grad``;
- ``fd``: float64 central differences of the engine's own forward (no framework).

``torch`` and ``jax`` return a trace under the engine's names
(:meth:`Network.names`), so every tensor is compared by name. Each is one
module, whose single forward and loss also give ``per_sample_gradients(case)``,
``gradients(case)``, ``accumulated_gradients(case, size)``,
``next_parameters(case, lr)``, ``loss(network, params, X, Y)`` (the batch loss,
to differentiate) and ``layer_gradients`` (one layer alone). They are
optional: :func:`is_installed` asks only whether the package could be
imported (importing torch or jax costs seconds, and is done once, by
:func:`load`, for a reference that is actually used).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from ..errors import InputError
from ..interrupts import held

NAMES = ("torch", "jax", "fd")

_MODULES = {"torch": f"{__name__}.torch_ref", "jax": f"{__name__}.jax_ref", "fd": f"{__name__}.finite_diff"}
_PACKAGES = {"torch": ("torch",), "jax": ("jax", "jaxlib"), "fd": ()}

INSTALL_HINTS = {
    "torch": "pip install 'manual-backprop[torch]' (CPU build: add -c constraints.txt)",
    "jax": "pip install 'manual-backprop[jax]'",
}


class MissingReference(InputError):
    """A reference was asked for whose framework is not installed."""


def _known(name: str) -> str:
    if name not in _MODULES:
        raise InputError(f"unknown reference {name!r}; known: {', '.join(NAMES)}")
    return name


def is_installed(name: str) -> bool:
    """Whether the framework behind reference ``name`` can be imported (without importing it)."""
    return all(importlib.util.find_spec(p) is not None for p in _PACKAGES[_known(name)])


def load(name: str) -> ModuleType:
    """The reference module ``name``, imported on first use; :class:`MissingReference` if absent."""
    if not is_installed(name):
        raise MissingReference(f"reference {name!r} is not installed: {INSTALL_HINTS[name]}")
    try:
        return _import_uninterrupted(_MODULES[name])
    except ImportError as exc:  # installed but broken: a missing shared library, a version clash
        if name not in INSTALL_HINTS:
            raise
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MissingReference(
            f"reference {name!r} failed to import ({first_line}); reinstall: {INSTALL_HINTS[name]}"
        ) from exc


def _import_uninterrupted(module: str) -> ModuleType:
    """Import ``module`` with Ctrl-C held back until it is done (:mod:`manual_backprop.interrupts`).

    A Ctrl-C that arrives while jaxlib is being imported raises KeyboardInterrupt inside its C++
    (nanobind) code, which turns it into ``std::terminate``: the process aborts with no word.
    """
    with held():
        return importlib.import_module(module)


def table_entry(reference: str, table: dict, kind: str, name: str):
    """``table[name]`` of a framework reference's table, or an :class:`InputError` naming the missing line.

    ``kind`` is ``"activation"`` (the table ``ACTIVATIONS``) or ``"loss"`` (``LOSS_SUMS``).
    """
    try:
        return table[name]
    except KeyError:
        where = "ACTIVATIONS" if kind == "activation" else "LOSS_SUMS"
        raise InputError(f"the {reference} reference has no line for {kind} {name!r}; "
                         f"add one to {reference}_ref.{where}") from None
