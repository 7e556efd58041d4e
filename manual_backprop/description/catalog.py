"""The worked examples shipped inside the package (``manual_backprop/examples/*.toml``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import InputError
from .case import Case

DEFAULT_EXAMPLE = "seed-002"


def _folder():
    return resources.files("manual_backprop") / "examples"


def example_names() -> list[str]:
    """Every shipped example, by name (the file name without ``.toml``)."""
    return sorted(p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".toml"))


def example_path(name: str) -> Path:
    """The file of a shipped example; an unknown name is an :class:`InputError` listing the known ones."""
    if name not in example_names():
        raise InputError(f"unknown example {name!r}; known: {', '.join(example_names())}")
    return Path(str(_folder() / f"{name}.toml"))


def example_text(name: str) -> str:
    return example_path(name).read_text(encoding="utf-8-sig")


def load_example(name: str, overrides: dict | None = None) -> Case:
    """The :class:`Case` of a shipped example."""
    from .netfile import parse_case

    return parse_case(example_text(name), f"example {name}", overrides)
