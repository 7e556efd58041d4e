"""Reports as people see them: notebook tables, a page with a picture of the network, one-line comparisons.

- :mod:`.cells`: how numbers and verdicts are written (the terminal's rule too, one place);
- :mod:`.html`: the notebook table of every report (``_repr_html_``), its plain-text form for
  IPython (``__repr__``), and the self-contained page (``to_html``, ``--html FILE``);
- :mod:`.drawing`: the picture of the network with every tensor on it, coloured by verdict
  (Graphviz's ``dot`` through the ``graphviz`` package when both are present, else an SVG
  written here; ``--svg FILE``);
- :mod:`.compare`: ``compare_tensor("dW1", my_dW1, case)``, one tensor against the engine's truth.

The report objects are read by their attributes: nothing here imports ``checking``,
``validation`` or ``testing`` (their reports import this package, lazily). Imported on first
use: ``import manual_backprop.display`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_FROM = {
    "compare_tensor": "compare", "Comparison": "compare",
    "report_html": "html", "report_text": "html", "page": "html", "pretty": "html",
    "network_svg": "drawing", "drawing_backend": "drawing",
    "write_html": "html", "write_svg": "drawing",
}

__all__ = ["Comparison", "compare_tensor", "drawing_backend", "network_svg", "page", "pretty", "report_html",
           "report_text", "write_html", "write_svg"]


def __getattr__(name: str) -> Any:
    if name in _FROM:
        value = getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
