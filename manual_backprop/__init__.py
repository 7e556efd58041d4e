"""manual_backprop: hand-derived NumPy backpropagation, checked tensor by tensor.

The public names live here; each comes from the folder that owns it:
``description`` (the network, its parameters and data, the TOML file),
``engine`` (forward and the hand-derived backward), ``checking`` (``check``),
``validation`` (``validate``) and ``testing`` (``check_layer``, ``check_loss``, ``check_network``).

They are imported on first use, so that ``import manual_backprop`` (and the
command line's first instant, where Ctrl-C must already be handled) costs
next to nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import InputError

#: Each public name, and the folder it comes from.
_FROM = {
    "check": "checking",
    "Case": "description", "Claim": "description", "Network": "description", "load_case": "description",
    "load_example": "description", "make_case": "description", "parse_case": "description",
    "backward": "engine", "forward": "engine", "run": "engine",
    "LayerReport": "testing", "check_layer": "testing", "check_loss": "testing", "check_network": "testing",
    "LossReport": "testing", "NetworkReport": "testing",
    "Validation": "validation", "validate": "validation",
    "compare_tensor": "display",
}

__all__ = [
    "Case", "Claim", "InputError", "LayerReport", "LossReport", "Network", "NetworkReport", "Validation", "backward",
    "check", "check_layer", "check_loss", "check_network", "compare_tensor", "forward", "load_case", "load_example", "make_case",
    "parse_case", "run", "validate",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _FROM:
        value = getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))



if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors
    from .checking import check
    from .description import Case, Claim, Network, load_case, load_example, make_case, parse_case
    from .display import compare_tensor
    from .engine import backward, forward, run
    from .testing import LayerReport, LossReport, NetworkReport, check_layer, check_loss, check_network
    from .validation import Validation, validate
