"""``manual-backprop grade``: a class's derivations and code, graded by the assignment's rubric.

::

    manual-backprop grade ASSIGNMENT.toml SUBMISSIONS/ --output DIR [--jobs N]
    manual-backprop grade ASSIGNMENT.toml SUBMISSION/ --one --output DIR     # Gradescope: one submission
    manual-backprop grade --example sample-class --output DIR

Exit 0 when every submission was graded (whatever the scores), 2 for a bad assignment, folder or
option. The scores are the gradebook's; a student's failing code is that student's, never the run's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path

from ..errors import InputError
from ..files import check_writable_folder
from .common import print_json

CLASSES = "classes"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "grade", help="grade a class: every submission's claims and code, with partial credit",
        description="Grade every submission (a folder per student, or a single .toml or .py file) by the "
                    "assignment's rubric: an own error loses its step's points, a step right from the "
                    "student's own inputs keeps them, and code runs in a process of its own with limits. "
                    "Writes a gradebook CSV, a feedback page per student and Gradescope's results.json.")
    p.add_argument("assignment", nargs="?", metavar="ASSIGNMENT.toml", help="the assignment file")
    p.add_argument("submissions", nargs="?", metavar="SUBMISSIONS", help="the folder of submissions")
    p.add_argument("--example", metavar="NAME", help=f"a shipped sample class ({', '.join(class_names())})")
    p.add_argument("--output", metavar="DIR", required=True, help="where the gradebook and feedback go")
    p.add_argument("--jobs", type=int, metavar="N", default=None,
                   help="submissions graded at once (default: the number of CPUs)")
    p.add_argument("--one", action="store_true",
                   help="SUBMISSIONS is one student's submission (Gradescope's run_autograder): "
                        "DIR/results.json, DIR/feedback.md, DIR/feedback.html")
    p.add_argument("--json", action="store_true", help="one JSON object on standard output")
    p.set_defaults(run=run)


def class_names() -> list[str]:
    folder = resources.files("manual_backprop") / CLASSES
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / "assignment.toml").is_file())
    except (FileNotFoundError, NotADirectoryError):  # pragma: no cover - a broken install
        return []


def run(args: argparse.Namespace) -> int:
    from ..grading.grade import grade_class, names_clash
    from ..grading.outputs import write_all

    if args.example is not None:
        if args.assignment or args.submissions:
            raise InputError("give ASSIGNMENT.toml SUBMISSIONS, or --example NAME, not both")
        if args.example not in class_names():
            raise InputError(f"unknown sample class {args.example!r}; known: {', '.join(class_names())}")
        folder = Path(str(resources.files("manual_backprop") / CLASSES / args.example))
        assignment, submissions = folder / "assignment.toml", folder / "submissions"
    else:
        if not args.assignment or not args.submissions:
            raise InputError("grade needs ASSIGNMENT.toml and a SUBMISSIONS folder (or --example NAME)")
        assignment, submissions = Path(args.assignment), Path(args.submissions)
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if isinstance(jobs, bool) or jobs < 1 or jobs > 256:
        raise InputError(f"--jobs must be an integer from 1 to 256, got {args.jobs}")
    if args.one and not submissions.exists():
        raise InputError(f"{submissions}: no such submission")
    out = check_writable_folder(args.output)
    start = time.perf_counter()
    bar = _progress()
    try:
        graded, results, confirmed = grade_class(assignment, submissions, jobs=jobs, one=args.one,
                                                 progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    clash = names_clash(results)
    if clash:
        raise InputError(f"{submissions}: {clash}; rename one")
    files = write_all(graded, results, out, one=args.one)
    seconds = time.perf_counter() - start
    if args.json:
        print_json({"ok": True, "assignment": graded.title, "truth": confirmed, "max_score": graded.max_score,
                    "students": [r.to_json() for r in results], "files": [str(f) for f in files],
                    "seconds": round(seconds, 3)})
        return 0
    _render(graded, results, confirmed, out, seconds, args.one)
    return 0


def _render(assignment, results, confirmed, out: Path, seconds: float, one: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140, highlight=False)
    console.print(f"[bold]{escape(assignment.title)}[/bold]")
    console.print(f"{len(results)} submission(s) graded in {seconds:.1f} s; {confirmed}")
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("student")
    table.add_column("score", justify="right")
    table.add_column("lost")
    for r in results:
        by_verdict: dict[str, list[str]] = {}
        for i in r.items:
            if not i.full:
                by_verdict.setdefault(i.verdict.split(":")[0], []).append(i.name)
        lost = "; ".join(f"{', '.join(names) if len(names) <= 3 else f'{len(names)} items'} ({verdict})"
                         for verdict, names in by_verdict.items())
        why = "; ".join(r.notes)
        table.add_row(escape(r.student), f"{r.score:g} / {r.max_score:g}",
                      escape(" · ".join(x for x in (lost, why) if x) or "-"))
    console.print(table)
    where = (f"{out}/results.json, {out}/feedback.md, {out}/feedback.html" if one else
             f"{out}/gradebook.csv, {out}/feedback/, {out}/results/")
    console.print(f"written: {where}")


class _Bar:
    """A progress bar on standard error, on an interactive terminal only."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), transient=True)
        self.task = None
        self.progress.start()

    def update(self, done: int, total: int, student: str) -> None:
        if self.task is None:
            self.task = self.progress.add_task(student, total=total)
        self.progress.update(self.task, completed=done, description=student)

    def close(self) -> None:
        self.progress.stop()


def _progress() -> _Bar | None:
    return _Bar() if sys.stderr.isatty() else None
