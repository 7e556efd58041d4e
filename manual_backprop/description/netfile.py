"""The network file (TOML): read, check, and turn into a :class:`~manual_backprop.case.Case`.

Every number in the file is read together with the text it was written as,
so that a hand-derived claim such as ``0.40704483`` can later be compared at
the precision it was written with (half a unit in its last decimal place).
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import InputError
from .case import Case, Claim, make_case
from .network import Network

TOP_KEYS = {"title", "seed", "batch", "network", "parameters", "data", "claimed", "sgd", "notes"}
NETWORK_KEYS = {"sizes", "activations", "loss", "reduction", "dtype"}
SGD_KEYS = {"learning_rate"}


class WrittenFloat(float):
    """A float that remembers how many decimals it was written with."""

    resolution: float

    def __new__(cls, text: str) -> "WrittenFloat":
        obj = super().__new__(cls, text)
        obj.resolution = _resolution(text)
        return obj


def _resolution(text: str) -> float:
    """Half a unit in the last written place: ``"0.4070"`` -> 5e-5, ``"4.1e-3"`` -> 5e-5."""
    try:
        d = Decimal(text.replace("_", ""))
    except InvalidOperation:
        return 0.0
    if not d.is_finite():
        return 0.0
    return 0.5 * 10.0 ** d.as_tuple().exponent


def load_case(path: str | Path, overrides: dict[str, Any] | None = None) -> Case:
    """Read a network file. Raises :class:`InputError` for anything unreadable or inconsistent.

    ``overrides`` replaces keys of the [network] table (``{"dtype": "float32"}``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a network file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_case(text, str(path), overrides)


def parse_case(text: str, source: str = "<text>", overrides: dict[str, Any] | None = None) -> Case:
    """Parse the TOML text of a network file into a checked :class:`Case`."""
    try:
        doc = tomllib.loads(text, parse_float=WrittenFloat)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: malformed TOML: {exc}") from None
    if overrides:
        if isinstance(doc.get("network"), dict):
            doc["network"].update(overrides)
    return case_from_dict(doc, source)


def case_from_dict(doc: dict[str, Any], source: str = "<dict>") -> Case:
    """Build a :class:`Case` from a parsed network file (or an equivalent dict)."""
    _only(doc, TOP_KEYS, source, "the top level")
    title = doc.get("title", "")
    if not isinstance(title, str):
        raise InputError(f"{source}: title must be a string")
    net_table = _table(doc, "network", source, required=True)
    _only(net_table, NETWORK_KEYS, source, "[network]")
    for key in ("sizes", "activations", "loss"):
        if key not in net_table:
            raise InputError(f"{source}: [network] is missing {key!r}")
    sizes, acts = net_table["sizes"], net_table["activations"]
    if not isinstance(sizes, list) or not all(type(n) is int for n in sizes):
        raise InputError(f"{source}: [network] sizes must be a list of integers, got {sizes!r}")
    if not isinstance(acts, list) or not all(isinstance(a, str) for a in acts):
        raise InputError(f"{source}: [network] activations must be a list of names, got {acts!r}")
    for key in ("loss", "reduction", "dtype"):
        if key in net_table and not isinstance(net_table[key], str):
            raise InputError(f"{source}: [network] {key} must be a string, got {net_table[key]!r}")
    try:
        network = Network(
            tuple(sizes), tuple(acts), net_table["loss"],
            net_table.get("reduction", "mean"), net_table.get("dtype", "float64"),
        )
    except InputError as exc:  # "network [2, 3]: what" -> "FILE: [network] what"
        raise InputError(f"{source}: [network] {str(exc).removeprefix(f'network {sizes}: ')}") from None
    seed = doc.get("seed", 0)
    batch = doc.get("batch", 4)
    for key, value in (("seed", seed), ("batch", batch)):
        if type(value) is not int:
            raise InputError(f"{source}: {key} must be an integer, got {value!r}")
    params = _table(doc, "parameters", source)
    data = _table(doc, "data", source)
    _only(data, {"X", "Y"}, source, "[data]")
    lr = None
    if "sgd" in doc:
        sgd = _table(doc, "sgd", source)
        _only(sgd, SGD_KEYS, source, "[sgd]")
        if "learning_rate" not in sgd:
            raise InputError(f"{source}: [sgd] is missing 'learning_rate'")
        lr = sgd["learning_rate"]
        if type(lr) not in (int, WrittenFloat, float) or not np.isfinite(lr) or lr <= 0:
            raise InputError(f"{source}: [sgd] learning_rate must be a positive number, got {lr!r}")
        lr = float(lr)
    case = make_case(
        network, {k: _plain(v) for k, v in params.items()},
        _plain(data.get("X")), _plain(data.get("Y")),
        seed=seed, batch=batch, title=title, learning_rate=lr, source=source, from_file=True,
    )
    claims = _claims(_table(doc, "claimed", source), case, source)
    return Case(case.network, case.params, case.X, case.Y, case.title, case.seed, claims,
                case.learning_rate, source)


def _claims(table: dict[str, Any], case: Case, source: str) -> dict[str, Claim]:
    net = case.network
    known = net.names() + net.extra_names()
    shapes = net.tensor_shapes(case.batch)
    if case.Y.ndim == 1:
        shapes["Y"] = case.Y.shape
    claims = {}
    for name, raw in table.items():
        if name not in known:
            raise InputError(
                f"{source}: [claimed] has unknown tensor name {name!r}; this network's names are "
                f"{', '.join(known)}"
            )
        value = _claim_array(raw, source, name)
        # A 2-D claim in the transposed layout (dW written as dZ.T @ A, or one sample per column) is
        # kept as written: `validate` names the transposed product instead of refusing the file.
        transposed = value.ndim == 2 and value.shape == shapes[name][::-1]
        if value.shape != shapes[name] and not transposed:
            raise InputError(f"{source}: [claimed] {name} has shape {value.shape}, expected {shapes[name]}")
        res = np.vectorize(_value_resolution, otypes=[np.float64])(np.asarray(raw, dtype=object)) if value.ndim else np.float64(_value_resolution(raw))
        claims[name] = Claim(value, np.asarray(res, dtype=np.float64))
    return claims


def _value_resolution(v: Any) -> float:
    if isinstance(v, WrittenFloat):
        return v.resolution
    return 0.5  # an integer is written with no decimals


def _claim_array(raw: Any, source: str, name: str) -> np.ndarray:
    try:
        a = np.asarray(_plain(raw), dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(f"{source}: [claimed] {name} is not a number or a rectangular array of numbers") from None
    if isinstance(raw, bool) or (isinstance(raw, list) and any(isinstance(x, bool) for x in np.ravel(np.asarray(raw, dtype=object)))):
        raise InputError(f"{source}: [claimed] {name} holds booleans where numbers are needed")
    bad = ~np.isfinite(a)
    if bad.any():
        idx = [int(i) for i in np.argwhere(bad)[0]] if a.ndim else []
        kind = "NaN" if np.isnan(a[bad]).any() else "Inf"
        raise InputError(f"{source}: [claimed] {name} has {kind}{f' at index {idx}' if idx else ''}")
    return a


def _plain(v: Any) -> Any:
    """WrittenFloat -> float, recursively, so that arrays get an ordinary float dtype."""
    if isinstance(v, WrittenFloat):
        return float(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _table(doc: dict[str, Any], key: str, source: str, required: bool = False) -> dict[str, Any]:
    if key not in doc:
        if required:
            raise InputError(f"{source}: missing the [{key}] table")
        return {}
    value = doc[key]
    if not isinstance(value, dict):
        raise InputError(f"{source}: {key} must be a table ([{key}]), got {type(value).__name__}")
    return value


def _only(table: dict[str, Any], allowed: set[str], source: str, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise InputError(f"{source}: unknown key {key!r} in {where}; allowed: {', '.join(sorted(allowed))}")
