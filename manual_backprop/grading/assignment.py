"""The assignment file: the network, what is handed in, the points, the rubric.

::

    title = "Homework 2: backprop by hand"
    network = "network.toml"          # a network file beside this one (its [claimed] is not used),
    # example = "seed-002"            # or a shipped example

    [hand_in]
    claims = "answers.toml"           # each submission's file with a [claimed] table
    code = "backprop.py:loss_and_grads"   # a whole network in the student's code (check_network's forms)
    layer = { file = "layers.py", forward = "affine_forward", backward = "affine_backward", layer = "linear" }

    [points]                          # per claimed tensor
    Z1 = 1
    dW1 = 2

    [points.code]                     # per tensor the code returns
    dW1 = 2

    [points.layer]                    # per tensor of the layer pair: out, dx, dW, db (dgamma, dbeta)
    dx = 1
    dW = 1

    [rubric]
    carried = "keep"                  # a step right from the student's own wrong inputs keeps its points
    show_answers = true               # the feedback shows the right value beside theirs
    timeout = 20                      # seconds per submission's code, all trials together
    memory = 1024                     # MiB per submission's code
    output = 64                       # MiB per file its code writes (printing included)

A submission is a folder (the student is the folder's name) holding those files, or a single
file (the student is its stem): ``NAME.toml`` for the claims, ``NAME.py`` for the code.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..description.case import Case
from ..description.catalog import example_names, load_example
from ..description.netfile import load_case, read_network_file
from ..errors import InputError
from .sandbox import Limits

KEYS = {"title", "network", "example", "hand_in", "points", "rubric"}
HAND_IN = {"claims", "code", "layer"}
LAYER_KEYS = {"file", "forward", "backward", "layer", "layout", "eps"}
RUBRIC = {"carried", "show_answers", "timeout", "memory", "output"}


@dataclass(frozen=True)
class Assignment:
    """A checked assignment file."""

    title: str
    case: Case                                       # the network the students derive, without claims
    source: str
    claims_file: str | None = None                   # "answers.toml"
    code_file: str | None = None                     # "backprop.py"
    code_name: str | None = None                     # "loss_and_grads"
    points: dict[str, float] = field(default_factory=dict)        # claimed tensor -> points
    code_points: dict[str, float] = field(default_factory=dict)   # tensor the code returns -> points
    layer: dict[str, Any] | None = None                            # the layer pair handed in, checked
    layer_points: dict[str, float] = field(default_factory=dict)  # out, dx, dW, db -> points
    carried: str = "keep"
    show_answers: bool = True
    limits: Limits = field(default_factory=Limits)

    @property
    def items(self) -> list[str]:
        """Every graded item, in the gradebook's order: ``Z1, dW1, ..., code:dW1, ...``."""
        return list(self.points) + [f"code:{n}" for n in self.code_points] + [f"layer:{n}" for n in self.layer_points]

    @property
    def max_score(self) -> float:
        return float(sum(self.points.values()) + sum(self.code_points.values()) + sum(self.layer_points.values()))


def load_assignment(path: str | Path) -> Assignment:
    """Read and check an assignment file; every mistake in it is an :class:`InputError`, one line."""
    path = Path(path)
    text = read_network_file(path)
    where = str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: malformed TOML: {exc}") from None
    unknown = sorted(set(doc) - KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(KEYS))}")
    title = doc.get("title", path.stem)
    if not isinstance(title, str):
        raise InputError(f"{where}: title must be a string")
    case = _network(doc, path)
    hand_in = _table(doc, "hand_in", where)
    _only(hand_in, HAND_IN, where, "[hand_in]")
    claims, code = hand_in.get("claims"), hand_in.get("code")
    layer = _layer(hand_in.get("layer"), where) if "layer" in hand_in else None
    if claims is None and code is None and layer is None:
        raise InputError(f"{where}: [hand_in] names nothing to hand in: give claims = \"answers.toml\" and/or "
                         f"code = \"backprop.py:NAME\"")
    if claims is not None and (not isinstance(claims, str) or not claims.endswith(".toml") or "/" in claims):
        raise InputError(f"{where}: [hand_in] claims must be a file name ending in .toml, got {claims!r}")
    code_file = code_name = None
    if code is not None:
        if not isinstance(code, str) or code.count(":") != 1:
            raise InputError(f"{where}: [hand_in] code must be \"FILE.py:NAME\", got {code!r}")
        code_file, code_name = code.split(":")
        if not code_file.endswith(".py") or "/" in code_file or not code_name.isidentifier():
            raise InputError(f"{where}: [hand_in] code must be \"FILE.py:NAME\" (a file name and a Python "
                             f"name), got {code!r}")
    points = _table(doc, "points", where)
    code_points = points.pop("code", {}) if isinstance(points.get("code"), dict) else {}
    layer_points = points.pop("layer", {}) if isinstance(points.get("layer"), dict) else {}
    known = case.network.names() + case.network.extra_names()
    per_claim = _points(points, known, where, "[points]")
    per_code = _points(code_points, known, where, "[points.code]")
    if per_claim and claims is None:
        raise InputError(f"{where}: [points] grades claimed tensors, but [hand_in] has no claims file")
    if per_code and code is None:
        raise InputError(f"{where}: [points.code] grades code, but [hand_in] has no code")
    per_layer = _layer_points(layer_points, layer, where)
    if not per_claim and not per_code and not per_layer:
        raise InputError(f"{where}: [points] gives no points: write, e.g., dW1 = 2")
    rubric = _table(doc, "rubric", where)
    _only(rubric, RUBRIC, where, "[rubric]")
    carried = rubric.get("carried", "keep")
    if carried not in ("keep", "lose"):
        raise InputError(f"{where}: [rubric] carried must be \"keep\" or \"lose\", got {carried!r}")
    show = rubric.get("show_answers", True)
    if not isinstance(show, bool):
        raise InputError(f"{where}: [rubric] show_answers must be true or false, got {show!r}")
    limits = Limits(timeout=_positive(rubric, "timeout", 20.0, where, 3600),
                    memory=int(_positive(rubric, "memory", 1024, where, 1 << 20)),
                    output=int(_positive(rubric, "output", 64, where, 1 << 14)))
    return Assignment(title, case, where, claims, code_file, code_name, per_claim, per_code, layer, per_layer,
                      carried, show, limits)


def _network(doc: dict[str, Any], path: Path) -> Case:
    where = str(path)
    if ("network" in doc) == ("example" in doc):
        raise InputError(f"{where}: give the network as network = \"FILE.toml\" (beside the assignment) or "
                         f"example = \"NAME\", one of them")
    if "example" in doc:
        name = doc["example"]
        if not isinstance(name, str) or name not in example_names():
            raise InputError(f"{where}: example {name!r} is not a shipped example; known: {', '.join(example_names())}")
        case = load_example(name)
    else:
        name = doc["network"]
        if not isinstance(name, str):
            raise InputError(f"{where}: network must be a file name, got {name!r}")
        case = load_case(path.parent / name)
    import dataclasses

    return dataclasses.replace(case, claimed={})


def _layer(value: Any, where: str) -> dict[str, Any]:
    """``layer = { file = "layers.py", forward = "...", backward = "...", layer = "linear" }``, checked."""
    from .. import references
    from ..testing.layers import LAYERS, REFERENCES

    if not isinstance(value, dict):
        raise InputError(f"{where}: [hand_in] layer must be a table: {{ file = \"layers.py\", forward = \"...\", "
                         f"backward = \"...\", layer = \"linear\" }}")
    _only(value, LAYER_KEYS, where, "[hand_in] layer")
    for key in ("file", "forward", "layer"):
        if key not in value:
            raise InputError(f"{where}: [hand_in] layer is missing {key!r}")
    file, layer = value["file"], value["layer"]
    if not isinstance(file, str) or not file.endswith(".py") or "/" in file:
        raise InputError(f"{where}: [hand_in] layer file must be a file name ending in .py, got {file!r}")
    for key in ("forward", "backward"):
        if key in value and (not isinstance(value[key], str) or not value[key].isidentifier()):
            raise InputError(f"{where}: [hand_in] layer {key} must be a Python name, got {value[key]!r}")
    if layer not in LAYERS:
        raise InputError(f"{where}: [hand_in] layer {layer!r} is not a layer check_layer knows; known: "
                         f"{', '.join(LAYERS)}")
    layout = value.get("layout", "row")
    if layout not in ("row", "column"):
        raise InputError(f"{where}: [hand_in] layer layout must be \"row\" or \"column\", got {layout!r}")
    eps = value.get("eps", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < math.inf:
        raise InputError(f"{where}: [hand_in] layer eps must be a number >= 0, got {eps!r}")
    if not any(references.is_installed(r) for r in REFERENCES):
        raise InputError(f"{where}: a layer is graded against torch or JAX; install one "
                         f"(pip install 'manual-backprop[references]')")
    return {"file": file, "forward": value["forward"], "backward": value.get("backward"), "layer": layer,
            "layout": layout, "eps": float(eps)}


def _layer_points(table: dict[str, Any], layer: dict[str, Any] | None, where: str) -> dict[str, float]:
    if not table:
        return {}
    if layer is None:
        raise InputError(f"{where}: [points.layer] grades a layer, but [hand_in] has no layer")
    from ..testing.layers import LAYERS

    spec = LAYERS[layer["layer"]]
    known = ["out", "dx", *(f"d{p}" for p in spec.params)]
    return _points(table, known, where, "[points.layer]")


def _points(table: dict[str, Any], known: list[str], where: str, section: str) -> dict[str, float]:
    out = {}
    for name, value in table.items():
        if name not in known:
            raise InputError(f"{where}: {section} has unknown tensor name {name!r}; this network's names are "
                             f"{', '.join(known)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(f"{where}: {section} {name} must be a number of points >= 0, got {value!r}")
        out[name] = float(value)
    return out


def _positive(table: dict[str, Any], key: str, default: float, where: str, most: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= most:
        raise InputError(f"{where}: [rubric] {key} must be a number above 0 and at most {most:g}, got {value!r}")
    return float(value)


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise InputError(f"{where}: {key} must be a table ([{key}])")
    return dict(value)


def _only(table: dict[str, Any], allowed: set[str], where: str, section: str) -> None:
    for key in table:
        if key not in allowed:
            raise InputError(f"{where}: unknown key {key!r} in {section}; allowed: {', '.join(sorted(allowed))}")
