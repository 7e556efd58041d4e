"""``grade``: every submission of a class, graded by the assignment's rubric (:mod:`.score`).

The truth is the engine's float64 trace, confirmed once per run against the installed frameworks
(their import and JAX's compilation are paid once, in the grading process); a student's claims
are judged by :func:`~manual_backprop.validation.validate`, their code by
:func:`~manual_backprop.testing.network.judge_code` with the code run in a process of its own
(:mod:`.sandbox`). Submissions are graded in parallel (``jobs`` worker processes).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

from ..errors import InputError
from ..testing.network import judge_code
from ..validation import validate
from .assignment import Assignment, load_assignment
from .sandbox import SandboxedCode
from .score import Item, StudentResult, score_claims

#: The largest answers file read (a claims file of a small network is a few KiB).
MAX_ANSWERS = 1 << 20


def submissions(folder: str | Path) -> list[tuple[str, Path]]:
    """``(student, path)`` for every submission in ``folder``: each sub-folder, and each single
    ``.toml`` or ``.py`` file, in name order (hidden entries skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of submissions")
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.is_symlink():
            continue
        if entry.is_dir():
            out.append((entry.name, entry))
        elif entry.suffix in (".toml", ".py") and entry.is_file():
            out.append((entry.stem, entry))
    if not out:
        raise InputError(f"{folder}: holds no submission (a folder per student, or a .toml or .py file)")
    return out


def grade_one(assignment: Assignment, student: str, path: Path) -> StudentResult:
    """One submission: its claims and its code, each item scored."""
    result = StudentResult(student)
    if assignment.points:
        result.items += _claims(assignment, path, result)
    if assignment.code_points:
        result.items += _code(assignment, path, result)
    if assignment.layer_points:
        result.items += _layer(assignment, path, result)
    return result


def _file(path: Path, name: str | None, suffix: str) -> Path | None:
    """The submission's file ``name`` (a folder), or the submission itself (a single file of that kind)."""
    if path.is_dir():
        f = path / name
        return f if f.is_file() and not f.is_symlink() else None
    return path if path.suffix == suffix else None


def _claims(a: Assignment, path: Path, result: StudentResult) -> list[Item]:
    from ..description.netfile import claims_from_text

    f = _file(path, a.claims_file, ".toml")
    empty = score_claims(a.points, None, {}, a.carried, a.show_answers)
    if f is None:
        result.notes.append(f"no {a.claims_file} handed in")
        return empty
    source = f"{result.student}/{f.name}" if path.is_dir() else f.name
    try:
        if f.stat().st_size > MAX_ANSWERS:
            raise InputError(f"{source}: is larger than 1 MiB; an answers file is a [claimed] table")
        text = f.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        result.notes.append(f"{source}: cannot be read ({type(e).__name__})")
        return empty
    if not text.strip():
        result.notes.append(f"{source}: is empty")
        return empty
    try:
        claims, unreadable = claims_from_text(text, a.case, source)
    except InputError as e:
        result.notes.append(str(e))
        return empty
    report = None
    if claims:
        try:
            report = validate(dataclasses.replace(a.case, claimed=claims, source=source))
        except InputError as e:  # numbers no float64 holds, a dAL that cannot be judged: this student's only
            result.notes.append(str(e))
            return empty
    result.notes += [line for name, line in unreadable.items() if name not in a.points]
    return score_claims(a.points, report, unreadable, a.carried, a.show_answers)


def _code(a: Assignment, path: Path, result: StudentResult) -> list[Item]:
    items = [Item(f"code:{n}", most) for n, most in a.code_points.items()]
    f = _file(path, a.code_file, ".py")
    if f is None:
        result.notes.append(f"no {a.code_file} handed in")
        return items
    alone = None if path.is_dir() else _alone(f)  # a single file: only it goes to the student's process
    try:
        code = SandboxedCode(alone or path, f.name, a.code_name, a.case, a.limits)
        report = judge_code(code, a.case, result.student, float32=True, directions=0, confirm=False)
    finally:
        if alone is not None:
            shutil.rmtree(alone, ignore_errors=True)
    result.output = code.output
    random = next((t for t in report.trials if t.name == "random"), None)
    if random is None or random.validation is None:
        why = (random.error if random is not None and random.error else None) or code.failure or \
            "returned nothing to judge"
        result.notes.append(f"{a.code_name}: {why}")
        for item in items:
            item.verdict, item.diagnosis = "code failed", why
        return items
    scored = score_claims(a.code_points, random.validation, random.problems, a.carried, a.show_answers, "code:")
    for item in scored:
        name = item.name[len("code:"):]
        if item.points and name in random.validation.claims:
            bad = [t.name for t in report.trials if t.name != "random" and _wrong_in(t, name)]
            if bad:
                item.points, item.verdict = 0.0, f"right on the random trial, wrong on: {', '.join(bad)}"
                t = next(t for t in report.trials if t.name == bad[0])
                c = t.validation.claims.get(name) if t.validation else None
                item.diagnosis = (c.diagnosis if c is not None else None) or t.error or t.problems.get(name)
    return scored


def _layer(a: Assignment, path: Path, result: StudentResult) -> list[Item]:
    """The layer pair on ``check_layer``'s trials, run in the student's process, compared here."""
    import numpy as np

    from .. import references
    from ..description.convention import Convention
    from ..testing.layers import LAYERS, REFERENCES, judge_layer, make_trials
    from .sandbox import SandboxedLayer

    spec, layer = LAYERS[a.layer["layer"]], a.layer
    items = [Item(f"layer:{n}", most) for n, most in a.layer_points.items()]
    f = _file(path, layer["file"], ".py")
    if f is None:
        result.notes.append(f"no {layer['file']} handed in")
        return items
    trials = make_trials(spec, 5, 4, 4 if not spec.linear else 3, a.case.seed, np.dtype("float64"))
    trials = [dataclasses.replace(t, eps=layer["eps"]) for t in trials]
    names = [r for r in REFERENCES if references.is_installed(r)]
    alone = None if path.is_dir() else _alone(f)
    try:
        code = SandboxedLayer(alone or path, f.name, layer["forward"], layer["backward"], spec.name, layer["eps"],
                              layer["layout"], a.limits)
        run = code.runner(trials)
    finally:
        if alone is not None:
            shutil.rmtree(alone, ignore_errors=True)
    report = judge_layer(run, spec, trials, names, "float64", Convention(layer["layout"]), code.form)
    if code.output and not result.output:
        result.output = code.output
    if code.failure:
        result.notes.append(f"{layer['forward']}: {code.failure}")
    for item in items:
        name = item.name[len("layer:"):]
        mine = [c for c in report.checks if c.name == name]
        failed = [c for c in report.checks if c.failed and (c.name == name or c.name in ("forward", "backward"))]
        if not mine and not failed:
            item.verdict = "not returned"
            continue
        if not failed:
            item.points, item.verdict = item.max_points, "right"
            continue
        first = failed[0]
        item.verdict = "wrong" if first.status == "fail" else first.status
        hints = [h for h in report.hints if h.startswith(name + " ")]
        item.diagnosis = " ".join([first.message(ours="yours") if first.status == "fail" else
                                   (first.note or first.status), *hints])
    return items


def _wrong_in(trial, name: str) -> bool:
    if trial.error:
        return True
    if name in trial.problems:
        return True
    return trial.validation is not None and name in trial.validation.claims and not trial.validation.claims[name].ok


def _alone(f: Path) -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mbp-one-"))
    shutil.copy2(f, folder / f.name)
    return folder


# --- the class --------------------------------------------------------------------------------

_ASSIGNMENT: Assignment | None = None


def _init(path: str) -> None:
    global _ASSIGNMENT
    _ASSIGNMENT = load_assignment(path)


def _work(job: tuple[str, str]) -> dict:
    student, path = job
    return grade_one(_ASSIGNMENT, student, Path(path)).to_json()


def grade_class(assignment_path: str | Path, folder: str | Path, *, jobs: int = 1,
                progress: Callable[[int, int, str], None] | None = None,
                one: bool = False) -> tuple[Assignment, list[StudentResult], str]:
    """Grade every submission in ``folder`` (or ``folder`` itself, one submission, with ``one``):
    ``(assignment, results in name order, the truth's confirmation)``. ``progress(done, total, student)``
    is called as each finishes."""
    assignment = load_assignment(assignment_path)
    confirmed = confirm_truth(assignment)
    work = ([(_student_name(Path(folder)), Path(folder))] if one else submissions(folder))
    total = len(work)
    results: list[StudentResult] = []
    if jobs <= 1 or total == 1:
        for i, (student, path) in enumerate(work, start=1):
            results.append(grade_one(assignment, student, path))
            if progress:
                progress(i, total, student)
    else:
        import multiprocessing

        # forkserver: the workers never fork this process, whose frameworks (JAX) run threads
        context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                              else "spawn")
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init, initargs=(str(assignment_path),),
                                 mp_context=context) as pool:
            for i, (out, (student, _)) in enumerate(zip(pool.map(_work, [(s, str(p)) for s, p in work]), work),
                                                    start=1):
                results.append(StudentResult.from_json(out))
                if progress:
                    progress(i, total, student)
    return assignment, results, confirmed


def _student_name(path: Path) -> str:
    return path.name if path.is_dir() else path.stem


def confirm_truth(assignment: Assignment) -> str:
    """The engine's truth for the assignment's network against every installed framework, once per run."""
    from .. import references
    from ..checking.checker import check

    frameworks = [r for r in ("torch", "jax") if references.is_installed(r)] or ["fd"]
    report = check(assignment.case, against=frameworks)
    if not report.ok:
        raise InputError(f"{assignment.source}: the engine and {', '.join(frameworks)} disagree on this network "
                         f"(at {report.first_divergence}); it cannot be graded (a bug in manual_backprop: please "
                         f"report it)")
    return f"the truth (the engine's float64 trace) agrees with {', '.join(frameworks)} on every tensor"


def safe_name(student: str) -> str:
    """A student's name made safe as a file name: ``[A-Za-z0-9._-]``, nothing hidden, never empty."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", student).lstrip(".")
    return name or "_"


def names_clash(results: Iterable[StudentResult]) -> str | None:
    seen: dict[str, str] = {}
    for r in results:
        key = safe_name(r.student).lower()
        if key in seen and seen[key] != r.student:
            return f"{seen[key]!r} and {r.student!r} would share the feedback file {safe_name(r.student)}"
        seen[key] = r.student
    return None


__all__ = ["confirm_truth", "grade_class", "grade_one", "safe_name", "submissions"]
