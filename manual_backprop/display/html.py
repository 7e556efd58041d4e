"""Reports in a notebook and on a page: the table with the terminal's columns, verdicts coloured.

- :func:`report_html`: the notebook's ``_repr_html_``: a headline (ok, or the first wrong tensor
  and its diagnosis), then the table (the columns the command line prints, one row per tensor,
  each verdict cell coloured by its kind, :data:`~.drawing.COLOURS`), then the footer;
- :func:`report_text`: the plain-text ``__repr__`` for IPython without HTML: the same headline,
  table and footer in fixed-width columns;
- :func:`page`: one self-contained HTML page (``to_html()``, ``--html FILE``): the title, the
  headline, the picture of the network (:mod:`.drawing`, inline SVG), a legend, the table and
  the true values of the tensors not claimed; inline CSS, no script, nothing fetched.
"""

from __future__ import annotations

import html
from typing import Any

from .cells import KINDS
from .drawing import COLOURS, drawing_backend, network_svg
from .view import View, make_view

CSS = """
.mb-report { font-family: Helvetica, Arial, sans-serif; font-size: 13px; color: #212121; }
.mb-report table.mb-table { border-collapse: collapse; margin: 6px 0; }
.mb-report .mb-table th { text-align: left; border-bottom: 1px solid #9e9e9e; padding: 3px 8px; }
.mb-report .mb-table td { vertical-align: top; padding: 3px 8px; font-family: Menlo, Consolas, monospace;
  font-size: 12px; white-space: nowrap; border-bottom: 1px solid #eeeeee; }
.mb-report .mb-bad { color: #b71c1c; font-weight: bold; }
.mb-report .mb-head { margin: 4px 0; }
.mb-report .mb-ok { color: #1b5e20; font-weight: bold; }
.mb-report .mb-fail { color: #b71c1c; font-weight: bold; }
.mb-report .mb-sub, .mb-report .mb-foot { color: #616161; margin: 2px 0; }
.mb-report tr.mb-first td { outline: 2px solid black; }
.mb-report .mb-drawing svg { max-width: 100%; height: auto; }
.mb-report .mb-legend span { display: inline-block; padding: 1px 6px; margin: 2px; border-radius: 3px; }
""" + "".join(f".mb-report td.mb-v-{k} {{ background: {fill}; color: {ink}; border-left: 3px solid {line}; }}\n"
              for k, (fill, line, ink) in COLOURS.items())


def _table(columns: list[str], rows: list, first: str | None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for texts, cells_html, kind in rows:
        tds = [f"<td>{c}</td>" for c in cells_html]
        verdict = columns.index("verdict") if "verdict" in columns else len(tds) - 1
        tds[verdict] = f'<td class="mb-v-{kind}" data-kind="{kind}">{cells_html[verdict]}</td>'
        name = html.escape(texts[0])
        mark = ' class="mb-first"' if first is not None and texts[0] == first else ""
        body.append(f'<tr id="{name}"{mark} data-tensor="{name}">' + "".join(tds) + "</tr>")
    return f'<table class="mb-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _headline(view: View) -> str:
    cls = "mb-ok" if view.ok else "mb-fail"
    lines = view.headline or ["ok" if view.ok else "not ok"]
    out = [f'<p class="mb-head {cls}">{html.escape(lines[0])}</p>']
    out += [f'<p class="mb-head">{html.escape(x)}</p>' for x in lines[1:]]
    return "".join(out)


def fragment(view: View, *, title: bool = True, drawing: str = "") -> str:
    """The headline, then ``drawing`` (on the page), the table and the footer (the notebook's output)."""
    parts = [f"<style>{CSS}</style>", '<div class="mb-report">']
    if title and view.title:
        parts.append(f"<p><b>{html.escape(view.title)}</b></p>")
    parts += [f'<p class="mb-sub">{html.escape(x)}</p>' for x in view.subtitle]
    parts.append(_headline(view))
    parts.append(drawing)
    parts.append(_table(view.columns, view.rows, view.first))
    parts += [f'<p class="mb-foot">{html.escape(x)}</p>' for x in view.footer]
    for heading, columns, rows in view.more:
        parts.append(f"<p><b>{html.escape(heading)}</b></p>" + _table(columns, rows, view.first))
    parts.append("</div>")
    return "".join(parts)


def report_html(report: Any, **view_options: Any) -> str:
    """``_repr_html_`` of any report: :func:`fragment` of its view."""
    return fragment(make_view(report, **view_options))


def text(view: View) -> str:
    """The plain-text form: headline, fixed-width table, footer."""
    out = [view.title] if view.title else []
    out += view.subtitle
    out += view.headline
    out += _text_table(view.columns, view.rows)
    out += view.footer
    for heading, columns, rows in view.more:
        out += [heading, *_text_table(columns, rows)]
    return "\n".join(out)


def _text_table(columns: list[str], rows: list) -> list[str]:
    split = [[c.split("\n") for c in texts] for texts, _, _ in rows]
    widths = [max([len(columns[i])] + [len(line) for r in split for line in r[i]]) for i in range(len(columns))]
    out = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    for r in split:
        for k in range(max(len(c) for c in r)):
            out.append("  ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(r, widths)).rstrip())
    return out


def report_text(report: Any, **view_options: Any) -> str:
    """``__repr__`` of any report: :func:`text` of its view."""
    return text(make_view(report, **view_options))


def pretty(report: Any, printer: Any, cycle: bool, **view_options: Any) -> None:
    """``_repr_pretty_`` for IPython: the plain-text form."""
    printer.text(f"<{type(report).__name__}>" if cycle else report_text(report, **view_options))


def legend() -> str:
    return '<p class="mb-legend">' + "".join(
        f'<span style="background:{COLOURS[k][0]};border:1px solid {COLOURS[k][1]};color:{COLOURS[k][2]}">'
        f"{html.escape(words)}</span>" for k, words in KINDS.items()) + \
        '<span style="border:3px solid black">the first divergence</span></p>'


def page(report: Any, *, backend: str | None = None, **view_options: Any) -> str:
    """One self-contained HTML page: headline, the picture of the network, legend, table."""
    view = make_view(report, **view_options)
    drawing = ""
    if view.network is not None:
        used = backend or drawing_backend()
        drawing = (f'<div class="mb-drawing" data-backend="{used}">{network_svg(view, used)}</div>'
                   f'<p class="mb-foot">drawn by {"Graphviz (dot)" if used == "graphviz" else "manual_backprop"}; '
                   "hover a tensor for its verdict and true value</p>")
    title = html.escape(view.title or "manual-backprop report")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>body {{ margin: 16px; background: white; }}</style></head>"
            f'<body><h2 style="font-family: Helvetica, Arial, sans-serif">{title}</h2>'
            + fragment(view, title=False, drawing=drawing + legend()) + "</body></html>\n")


def training_page(title: str, log: str, pictures: list[tuple[str, bytes]]) -> str:
    """``train --html``: one self-contained page with the training log and its pictures (PNG bytes,
    embedded as data URIs, nothing fetched), in the order given."""
    import base64

    title = html.escape(title or "manual-backprop train")
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" style="max-width: 100%" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'
        f'<figcaption class="mb-foot">{html.escape(name)}</figcaption></figure>' for name, data in pictures)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{CSS} body {{ margin: 16px; background: white; }}</style></head>"
            f'<body><h2 style="font-family: Helvetica, Arial, sans-serif">{title}</h2>'
            f'<div class="mb-report"><pre>{html.escape(log)}</pre>{images}</div></body></html>\n')


def write_html(report: Any, path: Any, **options: Any) -> Any:
    """Write :func:`page` of ``report`` to ``path``, atomically."""
    from ..files import write_atomically

    return write_atomically(path, page(report, **options))
