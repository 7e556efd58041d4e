"""The network file (TOML): read, check, and turn into a :class:`~manual_backprop.case.Case`.

Every number in the file is read together with the text it was written as,
so that a hand-derived claim such as ``0.40704483`` can later be compared at
the precision it was written with (half a unit in its last decimal place).
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import re
import stat
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import InputError
from ..kernels import DEFAULT_VARIANCE_SHIFT
from .case import MAX_DIMENSION, Case, Claim, available_memory, check_claim_shape, make_case
from .convention import Convention
from .network import Network
from .optimizer import make_optimizer

TOP_KEYS = {"title", "seed", "batch", "network", "parameters", "data", "claimed", "sgd", "notes", "regularization",
            "optimizer", "state"}
REGULARIZATION_KEYS = {"l2", "convention", "biases"}
NETWORK_KEYS = {"sizes", "activations", "loss", "reduction", "dtype", "layout", "deltas", "norms", "eps"}
SGD_KEYS = {"learning_rate"}

#: The largest network file read (a 1000-1000-1000 network written out in full is about 40 MiB).
#: Reading costs up to 13 times the file's size: 62 MiB of short numbers ("0.1, ", 13 million
#: floats) peaked at 0.8 GiB and took two minutes; 64 MiB of 17-digit ones (3 million) at 0.5 GiB.
MAX_FILE_BYTES = 64 * 2**20
_MAX_FILE = "64 MiB"
_READ_COST = 13


class WrittenFloat(float):
    """A float that remembers how many decimals it was written with.

    ``exponent`` is the exponent of the written text's last decimal place (``"0.4070"`` -> -4),
    or None for ``inf`` and ``nan``. One slot, no ``__dict__``: a file holds millions of these.
    """

    __slots__ = ("exponent",)
    exponent: int | None

    def __new__(cls, text: str) -> "WrittenFloat":
        obj = super().__new__(cls, text)
        obj.exponent = _exponent(text)
        return obj

    @property
    def resolution(self) -> float:
        """Half a unit in the last written place: ``"0.4070"`` -> 5e-5, ``"4.1e-3"`` -> 5e-5."""
        e = self.exponent
        if e is None:
            return 0.0
        return math.inf if e > 308 else 0.5 * 10.0 ** e  # "1e308" -> 5e307; past 308 the value is Inf


def _exponent(text: str) -> int | None:
    """The exponent of the last written decimal place of a TOML float (``"1_000.25e3"`` -> 1)."""
    if text[-1].isdigit() and "e" not in text and "E" not in text and "_" not in text:
        return text.find(".") + 1 - len(text)  # "0.4070": the common case, fast (a file holds millions)
    t = text.replace("_", "").lower().lstrip("+-")
    if t in ("inf", "nan"):
        return None
    mantissa, _, exp = t.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return (int(exp) if exp else 0) - decimals


def _written_wrong(text: str, value: float) -> str | None:
    """Why a float literal did not survive parsing (too large: inf; too small: 0), else None."""
    if math.isinf(value) and text.replace("_", "").lower().lstrip("+-") != "inf":
        return "beyond the largest float64 (1.798e+308)"
    if value == 0.0 and any(c in "123456789" for c in text.lower().partition("e")[0]):
        return "below the smallest float64 (4.941e-324); it would be read as 0"
    return None


def read_network_file(path: str | Path) -> str:
    """The text of a network file: a regular file of at most 64 MiB, UTF-8 (a byte-order mark is allowed).

    A device (``/dev/zero``), a pipe or anything else that is not a regular file is refused before
    a byte is read: it may never end.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a directory, not a network file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: is not a regular file (a device, pipe or socket?); give a network file")
    too_big = f"{path}: is larger than {_MAX_FILE}, the most a network file may be"
    if info.st_size > MAX_FILE_BYTES:
        raise InputError(f"{too_big} ({info.st_size / 2**20:.0f} MiB)")
    available = available_memory()
    if available is not None and _READ_COST * info.st_size > available:
        raise InputError(f"{path}: reading it takes about {_READ_COST * info.st_size / 2**30:.2g} GiB of memory, "
                         f"more than the {available / 2**30:.3g} GiB this process may use")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:  # pragma: no cover - replaced between stat and open
        raise InputError(f"{path}: is a directory, not a network file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_FILE_BYTES:  # it grew after stat
        raise InputError(too_big)
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start + bom})") from None


def load_case(path: str | Path, overrides: dict[str, Any] | None = None) -> Case:
    """Read a network file. Raises :class:`InputError` for anything unreadable or inconsistent.

    ``overrides`` replaces keys of the [network] table (``{"dtype": "float32"}``).
    """
    text = read_network_file(path)
    return parse_case(text, str(path), overrides)


def parse_case(text: str, source: str = "<text>", overrides: dict[str, Any] | None = None) -> Case:
    """Parse the TOML text of a network file into a checked :class:`Case`."""
    doc = _parse_toml(text, source)
    if overrides:
        overrides = dict(overrides)
        l2 = {k: overrides.pop(k) for k in ("l2", "convention") if k in overrides}
        if isinstance(doc.get("network"), dict):
            doc["network"].update(overrides)
        if l2:  # --l2, --l2-convention: the [regularization] table's keys
            if "regularization" in doc and not isinstance(doc["regularization"], dict):
                raise InputError(f"{source}: [regularization] must be a table")
            doc.setdefault("regularization", {}).update(l2)
    return case_from_dict(doc, source)


def claims_from_text(text: str, case: Case, source: str = "<text>") -> tuple[dict[str, Claim], dict[str, str]]:
    """The ``[claimed]`` table of a TOML text (a student's answers: that table, and perhaps ``title`` and
    ``notes``), each claim read at its written precision and checked against ``case``'s network, as a
    network file's own ``[claimed]`` is; claim by claim, so that one bad claim costs only itself:
    ``(claims, {name: the one-line error of a claim that could not be read})``. A text that is not
    TOML, or has no ``[claimed]``, is an :class:`InputError`."""
    doc = _parse_toml(text, source)
    _only(doc, {"claimed", "title", "notes"}, source, "the top level")
    if "claimed" not in doc:
        raise InputError(f"{source}: has no [claimed] table; write the values under [claimed]")
    table = _table(doc, "claimed", source)
    shared = {"exact": table["exact"]} if "exact" in table else {}
    claims: dict[str, Claim] = {}
    errors: dict[str, str] = {}
    for name, raw in table.items():
        if name == "exact":
            continue
        try:
            claims.update(_claims({**shared, name: raw}, case, source))
        except InputError as exc:
            errors[str(name)] = str(exc)
    return claims, errors


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    """The TOML text parsed, every float a :class:`WrittenFloat`; malformed text or a number no float64
    holds is an :class:`InputError` saying where."""
    lost: list[tuple[WrittenFloat, str, str]] = []  # literals too large or too small for a float64

    def parse_float(literal: str) -> WrittenFloat:
        value = WrittenFloat(literal)
        if not math.isfinite(value) or value == 0.0:
            why = _written_wrong(literal, value)
            if why and not lost:
                lost.append((value, literal.replace("_", ""), why))
        return value

    try:
        doc = tomllib.loads(text.removeprefix("\ufeff"), parse_float=parse_float)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: malformed TOML: {exc}") from None
    except ValueError as exc:  # Python refuses integers of more than 4300 digits
        if "integer string conversion" not in str(exc):
            raise
        limit = sys.get_int_max_str_digits()
        long = re.search(f"[0-9_]{{{limit + 1},}}", text)
        line = f"line {text.count(chr(10), 0, long.start()) + 1}: " if long else ""
        raise InputError(f"{source}: {line}an integer has more than {limit} digits; "
                         f"no number in a network file needs that many") from None
    if lost:
        value, literal, why = lost[0]
        raise InputError(f"{source}: {_number_at(_location(doc, value), literal)}, {why}")
    return doc


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
        raise InputError(f"{source}: [network] sizes must be a list of integers, got {_show(sizes)}")
    for i, n in enumerate(sizes):
        if n > MAX_DIMENSION:
            raise InputError(f"{source}: [network] sizes[{i}] is {_show_int(n)}, beyond the largest array "
                             f"dimension (2**63 - 1)")
    if not isinstance(acts, list) or not all(isinstance(a, str) for a in acts):
        raise InputError(f"{source}: [network] activations must be a list of names, got {acts!r}")
    for key in ("loss", "reduction", "dtype", "layout", "deltas"):
        if key in net_table and not isinstance(net_table[key], str):
            raise InputError(f"{source}: [network] {key} must be a string, got {_show(net_table[key])}")
    view = {k: net_table[k] for k in ("layout", "deltas") if k in net_table}
    try:
        Convention(**view)
    except InputError as exc:
        raise InputError(f"{source}: [network] {exc}") from None
    reg = _regularization(doc, source)
    norms = net_table.get("norms", [])
    if not isinstance(norms, list) or not all(isinstance(n, str) for n in norms):
        raise InputError(f"{source}: [network] norms must be a list of names (one per Linear layer: none, "
                         f"batchnorm, layernorm), got {_show(norms)}")
    eps = net_table.get("eps", DEFAULT_VARIANCE_SHIFT)
    _fits_a_float(eps, f"{source}: [network]", "eps")
    if type(eps) not in (int, WrittenFloat, float):
        raise InputError(f"{source}: [network] eps must be a number >= 0, got {_show(eps)}")
    try:
        network = Network(
            tuple(sizes), tuple(acts), net_table["loss"],
            net_table.get("reduction", "mean"), net_table.get("dtype", "float64"), **reg,
            norms=tuple(norms), eps=float(eps),
        )
    except InputError as exc:  # "network [2, 3]: what" -> "FILE: [network] what"
        what = str(exc).removeprefix(f"network {sizes}: ")
        table = "[regularization]" if what.startswith("l2") or "l2 convention" in what else "[network]"
        raise InputError(f"{source}: {table} {what}") from None
    seed = doc.get("seed", 0)
    batch = doc.get("batch", 4)
    for key, value in (("seed", seed), ("batch", batch)):
        if type(value) is not int:
            raise InputError(f"{source}: {key} must be an integer, got {_show(value)}")
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
        _fits_a_float(lr, f"{source}: [sgd]", "learning_rate")
        if type(lr) not in (int, WrittenFloat, float) or not math.isfinite(lr) or lr <= 0:
            raise InputError(f"{source}: [sgd] learning_rate must be a positive number, got {_show(lr)}")
        lr = float(lr)
    optimizer = None
    if "optimizer" in doc:
        if lr is not None:
            raise InputError(f"{source}: give [sgd] or [optimizer], not both ([sgd] is the plain step's shorthand)")
        table = _table(doc, "optimizer", source)
        for key, value in table.items():
            if key not in ("t", "steps"):  # counts stay integers; every other number is read as a float
                _fits_a_float(value, f"{source}: [optimizer]", key)
        optimizer = make_optimizer(table,
                                   {k: _plain(v) for k, v in _table(doc, "state", source).items()},
                                   network, f"{source}: ")
    elif "state" in doc:
        raise InputError(f"{source}: [state] needs an [optimizer] whose state it is")
    case = make_case(
        network, {k: _plain(v) for k, v in params.items()},
        _plain(data.get("X")), _plain(data.get("Y")),
        seed=seed, batch=batch, title=title, learning_rate=lr, source=source, from_file=True, optimizer=optimizer,
        **view,
    )
    claims = _claims(_table(doc, "claimed", source), case, source)
    return dataclasses.replace(case, claimed=claims, source=source, drawn=())


def _fits_a_float(value: Any, where: str, key: str) -> None:
    """An InputError for a TOML integer too large for a float64 where the value is read as a float
    (``float()`` of it would raise OverflowError): ``[sgd] learning_rate is 1e+400, beyond ...``."""
    if type(value) is int and not _fits_float(value):
        raise InputError(f"{where} {key} is {_show_int(value)}, beyond the largest float64 (1.798e+308)")


def _regularization(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``[regularization]`` table as Network's keywords: ``l2 = λ``, ``convention``, ``biases``."""
    if "regularization" not in doc:
        return {}
    table = _table(doc, "regularization", source)
    _only(table, REGULARIZATION_KEYS, source, "[regularization]")
    if "l2" not in table:
        raise InputError(f"{source}: [regularization] is missing 'l2' (λ, e.g. l2 = 0.1)")
    l2 = table["l2"]
    _fits_a_float(l2, f"{source}: [regularization]", "l2")
    if type(l2) not in (int, WrittenFloat, float):
        raise InputError(f"{source}: [regularization] l2 must be a number >= 0, got {_show(l2)}")
    convention = table.get("convention", "half")
    if not isinstance(convention, str):
        raise InputError(f"{source}: [regularization] convention must be \"half\" or \"full\", got {_show(convention)}")
    biases = table.get("biases", False)
    if not isinstance(biases, bool):
        raise InputError(f"{source}: [regularization] biases must be true or false, got {_show(biases)}")
    return {"l2": float(l2), "l2_convention": convention, "l2_biases": biases}


def _claims(table: dict[str, Any], case: Case, source: str) -> dict[str, Claim]:
    net = case.network
    known = net.names() + net.extra_names()
    shapes = net.tensor_shapes(case.batch)
    if case.Y.ndim == 1:
        shapes["Y"] = case.Y.shape
    # ``exact = true`` (a key of the table, never a tensor name: no network has a tensor called
    # "exact") makes every claim exact: resolution 0, judged with the tolerance policy alone.
    # ``dZ1 = { value = [...], exact = true }`` does it for one tensor, and overrides the table.
    table_exact = _exact_flag(table.get("exact", False), f"{source}: [claimed] exact")
    claims = {}
    for name, raw in table.items():
        if name == "exact":
            continue
        if name not in known:
            raise InputError(
                f"{source}: [claimed] has unknown tensor name {name!r}; this network's names are "
                f"{', '.join(known)}"
            )
        exact = table_exact
        if isinstance(raw, dict):  # { value = [...], exact = true }
            raw, exact = _claim_table(raw, source, name, table_exact)
        value = _claim_array(raw, source, name)
        # A 2-D claim in the other layout (dW written as dZ.T @ A, or one sample per column in a row
        # file) is kept as written: `validate` names the transposed product instead of refusing the file.
        check_claim_shape(case.convention, name, value.shape, shapes[name], f"{source}: [claimed] ")
        if exact:
            res = np.zeros(value.shape)
        else:
            res = np.vectorize(_value_resolution, otypes=[np.float64])(np.asarray(raw, dtype=object)) if value.ndim else np.float64(_value_resolution(raw))
        claims[name] = Claim(value, np.asarray(res, dtype=np.float64))
    return claims


CLAIM_TABLE_KEYS = {"value", "exact"}


def _exact_flag(value: Any, where: str) -> bool:
    """An ``exact`` key: true or false, nothing else (``"yes"``, ``1`` are errors, not guesses)."""
    if not isinstance(value, bool):
        raise InputError(f"{where} must be true or false, got {_show(value)}")
    return value


def _claim_table(table: dict[str, Any], source: str, name: str, default: bool) -> tuple[Any, bool]:
    """``dZ1 = { value = [...], exact = true }``: the claim's value, and whether it is exact
    (``exact = false`` means as written; without the key, the table's ``exact`` holds)."""
    where = f"{source}: [claimed] {name}"
    for key in table:
        if key not in CLAIM_TABLE_KEYS:
            raise InputError(f"{where}: unknown key {key!r} in its table; allowed: {', '.join(sorted(CLAIM_TABLE_KEYS))}")
    if "value" not in table:
        raise InputError(f"{where}: its table has no 'value'; write {name} = {{ value = [...], exact = true }}")
    return table["value"], _exact_flag(table.get("exact", default), f"{where}: exact")


def _elements(raw: Any, index: tuple[int, ...] = ()):
    """Every non-list element of a (possibly ragged) nested list, with its index: ``([0, 1], 0.5)``."""
    if isinstance(raw, list):
        for i, x in enumerate(raw):
            yield from _elements(x, (*index, i))
    else:
        yield list(index), raw


def _value_resolution(v: Any) -> float:
    if isinstance(v, WrittenFloat):
        return v.resolution
    return 0.5  # an integer is written with no decimals


def _claim_array(raw: Any, source: str, name: str) -> np.ndarray:
    where = f"{source}: [claimed] {name}"
    for index, x in _elements(raw):
        at = f" at index {index}" if index else ""
        if isinstance(x, bool):
            raise InputError(f"{where} holds booleans where numbers are needed")
        if isinstance(x, str):
            raise InputError(f"{where}{at} is a string where a number is needed (write it without quotes)")
        if type(x) is int and not _fits_float(x):
            raise InputError(f"{where}{at} is {_show_int(x)}, beyond the largest float64 (1.798e+308)")
        if not isinstance(x, (int, float)):
            kind = {"dict": "table", "datetime": "date-time"}.get(type(x).__name__, type(x).__name__)
            raise InputError(f"{where}{at} is a {kind} where a number is needed")
    try:
        a = np.asarray(_plain(raw), dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(f"{where} is not a number or a rectangular array of numbers") from None
    bad = ~np.isfinite(a)
    if bad.any():
        idx = [int(i) for i in np.argwhere(bad)[0]] if a.ndim else []
        kind = "NaN" if np.isnan(a[bad]).any() else "Inf"
        raise InputError(f"{source}: [claimed] {name} has {kind}{f' at index {idx}' if idx else ''}")
    return a


def _location(doc: Any, target: object) -> tuple[list[Any], list[int]]:
    """Where the very object ``target`` sits in a parsed file: (keys, index), e.g. (["data", "X"], [0, 1])."""
    stack: list[tuple[Any, list[Any], list[int]]] = [(doc, [], [])]
    while stack:
        node, keys, index = stack.pop()
        if node is target:
            return keys, index
        if isinstance(node, dict):
            stack.extend((v, keys + [k], index) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, keys, index + [i]) for i, v in enumerate(node))
    return [], []  # pragma: no cover - the target came from this document


def _number_at(place: tuple[list[Any], list[int]], shown: str) -> str:
    """``[data] X has 1e309 at index [0, 1]``, ``[sgd] learning_rate is 1e309``, ``seed is 1e309``."""
    keys, index = place
    name = " ".join(map(str, keys[-1:]))
    if len(keys) > 1:
        name = "[" + ".".join(map(str, keys[:-1])) + "] " + name
    if index:
        return f"{name} has {shown} at index {index}"
    return f"{name} is {shown}"


def _show(value: Any) -> str:
    """``repr`` of a value from the file, with long integers shortened (a repr of 5000 digits fails)."""
    if type(value) is int:
        return _show_int(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, WrittenFloat):
        return repr(float(value))
    return repr(value)


def _fits_float(n: int) -> bool:
    """Whether an integer converts to a float64 (up to about 1.798e308)."""
    try:
        float(n)
    except OverflowError:
        return False
    return True


def _show_int(n: int) -> str:
    """An integer as written, or ``1.000e+400`` for a long one."""
    return str(n) if abs(n) < 10**15 else f"{Decimal(n):.3e}"


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
