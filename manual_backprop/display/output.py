"""``--html FILE`` and ``--svg FILE``: the options, the check of their paths, and the writing.

A path is checked before any work (:func:`check_output_path`): a folder, or a file in a folder
that does not exist or cannot be written, is an :class:`~manual_backprop.errors.InputError`
(``cannot write to PATH: REASON``, exit 2). The files are written atomically
(:func:`manual_backprop.files.write_atomically`): a reader never sees half a page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError


def add_output_options(p: Any) -> None:
    """``--html FILE`` (the page: the network, every tensor coloured by verdict, the table) and
    ``--svg FILE`` (the drawing alone)."""
    p.add_argument("--html", metavar="FILE",
                   help="also write one self-contained HTML page: the network with every tensor on it, "
                        "coloured by verdict, and the table")
    p.add_argument("--svg", metavar="FILE", help="also write the drawing of the network alone (SVG)")


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if a file can be written there, else an :class:`InputError` in one line."""
    path = Path(path)
    if str(path) == "":
        raise InputError("cannot write to '': an empty path")
    if path.is_dir():
        raise InputError(f"cannot write to {path}: it is a folder")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write to {path}: no such folder {folder}" if not folder.exists()
                         else f"cannot write to {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to {path}: permission denied")
    return path


def check_output_options(args: Any) -> None:
    """Check ``--html`` and ``--svg`` before any work is done."""
    for option in ("html", "svg"):
        value = getattr(args, option, None)
        if value is not None:
            check_output_path(value)


def write_outputs(report: Any, args: Any) -> None:
    """Write the ``--html`` page and the ``--svg`` drawing of ``report`` (to_html / the drawing)."""
    if getattr(args, "html", None) is not None:
        report.to_html(args.html)
    if getattr(args, "svg", None) is not None:
        from ..files import write_atomically
        from .drawing import network_svg
        from .view import make_view

        options = report._display_options() if hasattr(report, "_display_options") else {}
        svg = network_svg(make_view(report, **options))
        write_atomically(args.svg, '<?xml version="1.0" encoding="UTF-8"?>\n' + svg + "\n")
