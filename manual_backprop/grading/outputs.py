"""What a grading run writes: the gradebook, a feedback page per student, Gradescope's results.json.

::

    DIR/gradebook.csv                  one row per student: student, each item's points, total, max
    DIR/feedback/STUDENT.md            each step's verdict, the diagnosis, the right value beside theirs
    DIR/feedback/STUDENT.html          the same page, self-contained
    DIR/results/STUDENT/results.json   Gradescope's format: {"score", "output", "tests": [{"name",
                                       "score", "max_score", "output"}]}

With one submission (``grade --one``, as Gradescope's ``run_autograder`` calls it) the files are
``DIR/results.json``, ``DIR/feedback.md`` and ``DIR/feedback.html``. Every file is written
atomically.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from ..files import write_atomically
from .assignment import Assignment
from .grade import safe_name
from .score import Item, StudentResult


def _points(x: float) -> str:
    return f"{x:g}"


def gradebook(assignment: Assignment, results: list[StudentResult]) -> str:
    """The CSV: a header (student, every item, total, max), then one row per student."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["student", *assignment.items, "total", "max"])
    for r in results:
        by = {i.name: i.points for i in r.items}
        w.writerow([r.student, *(_points(by.get(n, 0.0)) for n in assignment.items), _points(r.score),
                    _points(r.max_score)])
    return out.getvalue()


def _value(v) -> str:
    if v is None:
        return ""
    a = np.asarray(v, dtype=np.float64)
    return np.array2string(a, separator=", ", max_line_width=100, threshold=40,
                           formatter={"float_kind": lambda x: f"{x:.8g}"})


def _item_output(item: Item, show: bool) -> str:
    """The text Gradescope shows under one test (and the feedback's row): the verdict, then why."""
    lines = [f"{item.verdict} ({_points(item.points)} of {_points(item.max_points)})"]
    if item.diagnosis:
        lines.append(item.diagnosis)
    if item.theirs is not None and not item.full:
        lines.append(f"yours: {_value(item.theirs)}")
        if show and item.right is not None:
            lines.append(f"right: {_value(item.right)}")
    return "\n".join(lines)


def results_json(assignment: Assignment, result: StudentResult) -> dict:
    """Gradescope's autograder results: ``score``, ``output``, and one test per graded item."""
    tests = [{"name": i.name, "score": i.points, "max_score": i.max_points,
              "output": _item_output(i, assignment.show_answers)} for i in result.items]
    summary = [f"{assignment.title}: {_points(result.score)} of {_points(result.max_score)} points."]
    summary += result.notes
    if result.output:
        summary.append("Your code printed:\n" + result.output)
    return {"score": result.score, "output": "\n".join(summary), "tests": tests}


def feedback_markdown(assignment: Assignment, result: StudentResult) -> str:
    lines = [f"# {assignment.title}: {result.student}", "",
             f"**{_points(result.score)} of {_points(result.max_score)} points.**", ""]
    lines += [f"- {n}" for n in result.notes]
    if result.notes:
        lines.append("")
    lines += ["| item | points | verdict |", "|---|---|---|"]
    for i in result.items:
        lines.append(f"| `{i.name}` | {_points(i.points)} / {_points(i.max_points)} | {_cell(i.verdict)} |")
    lines.append("")
    for i in result.items:
        if i.full:
            continue
        lines += [f"## `{i.name}`: {i.verdict}", ""]
        if i.diagnosis:
            lines += [i.diagnosis, ""]
        if i.theirs is not None:
            lines += ["```text", f"yours: {_value(i.theirs)}"]
            if assignment.show_answers and i.right is not None:
                lines.append(f"right: {_value(i.right)}")
            lines += ["```", ""]
    if result.output:
        lines += ["## What your code printed", "", "```text", result.output, "```", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def feedback_html(assignment: Assignment, result: StudentResult) -> str:
    e = html.escape
    rows = []
    for i in result.items:
        kind = "right" if i.full else "wrong"
        rows.append(f"<tr class='{kind}'><td><code>{e(i.name)}</code></td><td>{_points(i.points)} / "
                    f"{_points(i.max_points)}</td><td>{e(i.verdict)}</td></tr>")
    details = []
    for i in result.items:
        if i.full:
            continue
        body = f"<h2><code>{e(i.name)}</code>: {e(i.verdict)}</h2>"
        if i.diagnosis:
            body += f"<p>{e(i.diagnosis)}</p>"
        if i.theirs is not None:
            pre = f"yours: {_value(i.theirs)}"
            if assignment.show_answers and i.right is not None:
                pre += f"\nright: {_value(i.right)}"
            body += f"<pre>{e(pre)}</pre>"
        details.append(body)
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    printed = f"<h2>What your code printed</h2><pre>{e(result.output)}</pre>" if result.output else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(assignment.title)}: {e(result.student)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .25rem .75rem; border-bottom: 1px solid #ddd; }}
tr.right td:last-child {{ color: #1a7f37; }} tr.wrong td:last-child {{ color: #cf222e; }}
pre {{ background: #f6f8fa; padding: .5rem; overflow-x: auto; }}
</style></head><body>
<h1>{e(assignment.title)}: {e(result.student)}</h1>
<p><strong>{_points(result.score)} of {_points(result.max_score)} points.</strong></p>
{f"<ul>{notes}</ul>" if notes else ""}
<table><tr><th>item</th><th>points</th><th>verdict</th></tr>{"".join(rows)}</table>
{"".join(details)}{printed}
</body></html>
"""


def write_all(assignment: Assignment, results: list[StudentResult], folder: str | Path, one: bool = False) -> list[Path]:
    """Every output file, atomically; the paths written."""
    folder = Path(folder)
    written = []

    def put(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
        written.append(path)

    if one:
        r = results[0]
        put(folder / "results.json", json.dumps(results_json(assignment, r), indent=2) + "\n")
        put(folder / "feedback.md", feedback_markdown(assignment, r))
        put(folder / "feedback.html", feedback_html(assignment, r))
        return written
    put(folder / "gradebook.csv", gradebook(assignment, results))
    for r in results:
        name = safe_name(r.student)
        put(folder / "feedback" / f"{name}.md", feedback_markdown(assignment, r))
        put(folder / "feedback" / f"{name}.html", feedback_html(assignment, r))
        put(folder / "results" / name / "results.json", json.dumps(results_json(assignment, r), indent=2) + "\n")
    return written
