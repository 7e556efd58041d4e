"""The picture of the network, every tensor of the pass on it, coloured by its verdict.

What is drawn, left to right, one column per layer (the input, each Linear+activation, the loss):

- a **small network** (every layer at most :data:`SMALL_WIDTH` units, :data:`SMALL_UNITS` in all)
  as its units, one circle each, joined by the edges of each Linear, every edge labelled with
  its weight ``Wl[i, j]`` (the case's own parameters);
- a **big one** as one block per layer with its width and activation, the Linear between two
  blocks labelled with the shape of its weights;
- under each column, the tensors that live there, one chip each: the column of layer l holds
  the forward ``Wl, bl, Zl, Al`` and the backward ``dAl, dZl, dWl, dbl`` (and ``Wl_next``,
  ``bl_next`` after a descent step); the input column ``X`` and ``dX``; the loss column ``Y``
  and ``L``. A big network's chips carry their shapes. Each chip is filled with its verdict's
  colour (:data:`COLOURS`: right green, own error red, carried orange, kink yellow, a
  disagreement red, not judged grey, given data white), and the first divergence gets a thick
  black outline and a "first" tag. Hovering a chip shows its verdict and its true value
  (an SVG ``<title>``).

How it is drawn: with Graphviz's ``dot`` through the ``graphviz`` PyPI package when the package
imports and ``dot`` is on the PATH (``shutil.which("dot")``); otherwise by :func:`own_svg`, an
SVG written here with the same content. :func:`drawing_backend` says which. Both are plain SVG,
inlined in the page: nothing is fetched to view it.
"""

from __future__ import annotations

import html
import shutil
from typing import Any

import numpy as np

from . import cells
from .view import Tensor, View

#: A network is drawn unit by unit when no layer is wider than this and ...
SMALL_WIDTH = 8
#: ... it has at most this many units in all; else one block per layer.
SMALL_UNITS = 32

#: Per verdict kind: fill, outline, text colour.
COLOURS = {
    "right": ("#c8e6c9", "#2e7d32", "#1b5e20"),
    "kink": ("#fff59d", "#f9a825", "#5d4037"),
    "carried": ("#ffe0b2", "#ef6c00", "#7a3a00"),
    "own": ("#ef9a9a", "#c62828", "#7f0000"),
    "wrong": ("#ef9a9a", "#c62828", "#7f0000"),
    "not_judged": ("#e0e0e0", "#757575", "#424242"),
    "data": ("#ffffff", "#9e9e9e", "#212121"),
}


def drawing_backend() -> str:
    """``"graphviz"`` when the ``graphviz`` package imports and ``dot`` is on the PATH, else ``"own"``."""
    if shutil.which("dot") is None:
        return "own"
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return "own"
    return "graphviz"


def columns(view: View) -> list[tuple[str, list[Tensor], list[Tensor]]]:
    """Each column's title and its forward and backward tensors (those the view knows)."""
    net, t = view.network, view.tensors

    def pick(*names: str) -> list[Tensor]:
        return [t[n] for n in names if n in t]

    out = [(f"input ({net.sizes[0]})", pick("X"), pick("dX"))]
    for l in range(1, len(net.sizes)):
        out.append((f"layer {l}: {net.sizes[l]} {net.activations[l - 1]}", pick(f"W{l}", f"b{l}", f"Z{l}", f"A{l}"),
                    pick(f"dA{l}", f"dZ{l}", f"dW{l}", f"db{l}", f"W{l}_next", f"b{l}_next")))
    out.append((f"loss: {net.loss}", pick("Y", "L"), []))
    return out


def is_small(network: Any) -> bool:
    return max(network.sizes) <= SMALL_WIDTH and sum(network.sizes) <= SMALL_UNITS


def tooltip(t: Tensor) -> str:
    """A chip's hover text: its verdict and its true value (the claim too, when one was written)."""
    lines = [f"{t.name} {t.shape}: {t.verdict}"]
    if t.true is not None:
        lines.append("true: " + " ".join(cells.plain_lines(t.true, 4)))
    if t.claimed is not None and t.kind not in ("right",):
        lines.append("claimed: " + " ".join(cells.plain_lines(t.claimed, 4)))
    return "\n".join(lines)


def network_svg(view: View, backend: str | None = None) -> str:
    """The picture of ``view``'s network as an ``<svg>`` element (no XML prolog), by ``backend``
    (``"graphviz"`` or ``"own"``; default :func:`drawing_backend`)."""
    if view.network is None:
        raise ValueError("this report has no network to draw")
    backend = backend or drawing_backend()
    if backend == "graphviz":
        return graphviz_svg(view)
    return own_svg(view)


def _weight(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


# --- Graphviz --------------------------------------------------------------------------------------

def _chip_table(view: View, title: str, fwd: list[Tensor], bwd: list[Tensor], small: bool) -> str:
    def cell(t: Tensor) -> str:
        fill, line, ink = COLOURS[t.kind]
        first = t.name == view.first
        label = html.escape(t.name + ("" if small else f" {t.shape}") + ("  ◀ first" if first else ""))
        border = ' BORDER="3" COLOR="black"' if first else f' COLOR="{line}"'
        return (f'<TR><TD BGCOLOR="{fill}"{border} TOOLTIP="{html.escape(tooltip(t))}" HREF="#{t.name}">'
                f'<FONT COLOR="{ink}">{label}</FONT></TD></TR>')

    rows = [f'<TR><TD BORDER="0"><B>{html.escape(title)}</B></TD></TR>']
    rows += [cell(t) for t in fwd]
    if bwd:
        rows.append('<TR><TD BORDER="0"><I>backward</I></TD></TR>')
        rows += [cell(t) for t in bwd]
    return '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="3" CELLPADDING="3">' + "".join(rows) + "</TABLE>>"


def graphviz_source(view: View) -> str:
    """The DOT text of the picture (drawn by :func:`graphviz_svg`)."""
    import graphviz

    net, small = view.network, is_small(view.network)
    g = graphviz.Digraph("network", graph_attr={"rankdir": "LR", "nodesep": "0.25", "ranksep": "1.6",
                                                "fontname": "Helvetica", "bgcolor": "white"},
                         node_attr={"fontname": "Helvetica", "fontsize": "11"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#90a4ae",
                                    "arrowsize": "0.5"})
    cols = columns(view)
    for c, (title, fwd, bwd) in enumerate(cols):
        with g.subgraph(name=f"rank{c}") as s:
            s.attr(rank="same")
            if c == len(cols) - 1:
                s.node("loss", "L", shape="box", style="rounded")
                last = "loss"
            elif small:
                for i in range(net.sizes[c]):
                    s.node(f"u{c}_{i}", str(i), shape="circle", width="0.35", fixedsize="true")
                for i in range(net.sizes[c] - 1):
                    s.edge(f"u{c}_{i}", f"u{c}_{i + 1}", style="invis")
                last = f"u{c}_{net.sizes[c] - 1}"
            else:
                act = "input" if c == 0 else net.activations[c - 1]
                s.node(f"u{c}_0", f"{net.sizes[c]} units\n{act}", shape="box", style="rounded")
                last = f"u{c}_0"
            s.node(f"chips{c}", _chip_table(view, title, fwd, bwd, small), shape="plain")
            s.edge(last, f"chips{c}", style="invis")
    W = view.params or {}
    for l in range(1, len(net.sizes)):
        if small:
            w = np.asarray(W.get(f"W{l}")) if f"W{l}" in W else None
            for i in range(net.sizes[l - 1]):
                for j in range(net.sizes[l]):
                    g.edge(f"u{l - 1}_{i}", f"u{l}_{j}", label=_weight(float(w[i, j])) if w is not None else "")
        else:
            g.edge(f"u{l - 1}_0", f"u{l}_0", label=f"W{l} ({net.sizes[l - 1]}, {net.sizes[l]})")
    last = len(net.sizes) - 1
    for j in range(net.sizes[last] if small else 1):
        g.edge(f"u{last}_{j}", "loss")
    return g.source


def graphviz_svg(view: View) -> str:
    import graphviz

    svg = graphviz.Source(graphviz_source(view)).pipe(format="svg").decode("utf-8")
    return svg[svg.index("<svg"):]


# --- the project's own SVG -------------------------------------------------------------------------

CHIP_W, CHIP_H, GAP = 150, 20, 4
COL_W = 230


def own_svg(view: View) -> str:
    """The picture, drawn here (no Graphviz): the same columns, units, weights and chips."""
    net, small = view.network, is_small(view.network)
    cols = columns(view)
    width = 60 + COL_W * len(cols)
    unit_gap = 52
    units_h = (max(net.sizes) * unit_gap if small else 70) + 20
    top = 30
    parts: list[str] = []

    def x_of(c: int) -> float:
        return 40 + COL_W * c + CHIP_W / 2

    def y_of(c: int, i: int) -> float:
        n = net.sizes[c] if c < len(net.sizes) else 1
        return top + units_h / 2 + (i - (n - 1) / 2) * unit_gap

    # edges first, under the units
    W = view.params or {}
    for l in range(1, len(net.sizes)):
        if small:
            w = np.asarray(W[f"W{l}"]) if f"W{l}" in W else None
            n_in = net.sizes[l - 1]
            for i in range(n_in):
                for j in range(net.sizes[l]):
                    x1, y1, x2, y2 = x_of(l - 1), y_of(l - 1, i), x_of(l), y_of(l, j)
                    parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                                 f'stroke="#b0bec5" stroke-width="1"/>')
                    if w is not None:
                        t = 0.22 + 0.56 * (i + 0.5) / n_in  # labels of one source at one distance
                        lx, ly = x1 + t * (x2 - x1), y1 + t * (y2 - y1)
                        parts.append(f'<text x="{lx:.1f}" y="{ly - 2:.1f}" font-size="9" fill="#455a64" '
                                     f'text-anchor="middle" class="mb-w">{html.escape(_weight(float(w[i, j])))}'
                                     f'<title>W{l}[{i}, {j}]</title></text>')
        else:
            x1, x2, y = x_of(l - 1) + 60, x_of(l) - 60, y_of(l, 0)
            parts.append(f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="#90a4ae" '
                         f'stroke-width="2"/><text x="{(x1 + x2) / 2:.1f}" y="{y - 6:.1f}" font-size="10" '
                         f'text-anchor="middle" fill="#455a64">W{l} ({net.sizes[l - 1]}, {net.sizes[l]})</text>')
    lc = len(net.sizes) - 1
    for j in range(net.sizes[lc] if small else 1):
        parts.append(f'<line x1="{x_of(lc):.1f}" y1="{y_of(lc, j):.1f}" x2="{x_of(lc + 1) - 40:.1f}" '
                     f'y2="{y_of(lc + 1, 0):.1f}" stroke="#b0bec5"/>')
    # units (or blocks), and the loss
    for c in range(len(net.sizes)):
        if small:
            for i in range(net.sizes[c]):
                parts.append(f'<circle cx="{x_of(c):.1f}" cy="{y_of(c, i):.1f}" r="14" fill="#eceff1" '
                             f'stroke="#546e7a"/><text x="{x_of(c):.1f}" y="{y_of(c, i) + 4:.1f}" font-size="11" '
                             f'text-anchor="middle">{i}</text>')
        else:
            act = "input" if c == 0 else net.activations[c - 1]
            parts.append(f'<rect x="{x_of(c) - 60:.1f}" y="{y_of(c, 0) - 25:.1f}" width="120" height="50" rx="8" '
                         f'fill="#eceff1" stroke="#546e7a"/><text x="{x_of(c):.1f}" y="{y_of(c, 0) - 3:.1f}" '
                         f'font-size="11" text-anchor="middle">{net.sizes[c]} units</text><text x="{x_of(c):.1f}" '
                         f'y="{y_of(c, 0) + 13:.1f}" font-size="11" text-anchor="middle">{html.escape(act)}</text>')
    xl, yl = x_of(lc + 1), y_of(lc + 1, 0)
    parts.append(f'<rect x="{xl - 40:.1f}" y="{yl - 18:.1f}" width="80" height="36" rx="8" fill="#eceff1" '
                 f'stroke="#546e7a"/><text x="{xl:.1f}" y="{yl + 4:.1f}" font-size="12" '
                 f'text-anchor="middle">L</text>')
    # the chips
    chips_top = top + units_h + 10
    bottom = chips_top
    for c, (title, fwd, bwd) in enumerate(cols):
        x, y = x_of(c) - CHIP_W / 2, chips_top
        parts.append(f'<text x="{x:.1f}" y="{y + 12:.1f}" font-size="11" font-weight="bold">'
                     f'{html.escape(title)}</text>')
        y += CHIP_H
        for group, label in ((fwd, ""), (bwd, "backward")):
            if not group:
                continue
            if label:
                parts.append(f'<text x="{x:.1f}" y="{y + 13:.1f}" font-size="10" font-style="italic" '
                             f'fill="#616161">{label}</text>')
                y += CHIP_H - 4
            for t in group:
                parts.append(_chip(view, t, x, y, small))
                y += CHIP_H + GAP
        bottom = max(bottom, y)
    height = bottom + 10
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" '
            f'role="img" aria-label="the network and its tensors">'
            f'<rect width="100%" height="100%" fill="white"/>' + "".join(parts) + "</svg>")


def _chip(view: View, t: Tensor, x: float, y: float, small: bool) -> str:
    fill, line, ink = COLOURS[t.kind]
    first = t.name == view.first
    stroke = 'stroke="black" stroke-width="3"' if first else f'stroke="{line}" stroke-width="1"'
    label = t.name + ("" if small else f" {t.shape}") + ("  ◀ first" if first else "")
    weight = ' font-weight="bold"' if first else ""
    return (f'<g class="mb-chip mb-{t.kind}" data-tensor="{html.escape(t.name)}" data-kind="{t.kind}">'
            f'<title>{html.escape(tooltip(t))}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{CHIP_W}" height="{CHIP_H}" rx="4" fill="{fill}" {stroke}/>'
            f'<text x="{x + 6:.1f}" y="{y + 14:.1f}" font-size="11" fill="{ink}"'
            f'{weight}>{html.escape(label)}</text></g>')


def write_svg(report: Any, path: Any, **view_options: Any) -> Any:
    """Write the picture of ``report``'s network to ``path``, atomically (an SVG file)."""
    from ..files import write_atomically
    from .view import make_view

    svg = network_svg(make_view(report, **view_options))
    return write_atomically(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + svg + "\n")
