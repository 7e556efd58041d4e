"""Grading speed: a class of 200 hand derivations (TOML claims) grades in under a minute here.

The class is the sample class's four kinds of derivation (right, an own error, a carried slip, a bias
of the wrong shape) handed in 50 times each; the truth is confirmed once against the installed
frameworks (their import and JAX's compilation paid once), then every submission is validated in
``jobs = 2`` worker processes. Target (2 cores): the whole run, the confirmation included, under 60 s.
With ``--benchmark-disable`` (CI) it runs once, as a test of the target.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import manual_backprop
from manual_backprop.grading import grade_class

CLASS = Path(manual_backprop.__file__).parent / "classes" / "sample-class"
TARGET_S = 60.0
STUDENTS = 200


def _class_of_200(tmp: Path) -> Path:
    shutil.copy(CLASS / "network.toml", tmp / "network.toml")
    text = (CLASS / "assignment.toml").read_text()
    text = text.replace('code = "backprop.py:loss_and_grads"', "")
    text = text[:text.index("[points.code]")] + text[text.index("[rubric]"):]
    (tmp / "assignment.toml").write_text(text)
    subs = tmp / "submissions"
    kinds = ["alice", "bob", "carol", "grace"]
    for i in range(STUDENTS):
        folder = subs / f"student{i:03d}"
        folder.mkdir(parents=True)
        shutil.copy(CLASS / "submissions" / kinds[i % 4] / "answers.toml", folder / "answers.toml")
    return tmp


def test_a_class_of_200_derivations_grades_in_under_a_minute(benchmark, tmp_path):
    root = _class_of_200(tmp_path)
    seconds = []

    def run():
        t0 = time.perf_counter()
        _, results, _ = grade_class(root / "assignment.toml", root / "submissions", jobs=2)
        seconds.append(time.perf_counter() - t0)
        return results

    results = benchmark.pedantic(run, rounds=1, iterations=1)
    assert len(results) == STUDENTS
    by_kind = {r.student: r.score for r in results}
    assert by_kind["student000"] == 16 and by_kind["student001"] == 14 and by_kind["student002"] == 15
    assert by_kind["student003"] == 15
    benchmark.extra_info["seconds"] = seconds[-1]
    assert seconds[-1] < TARGET_S, f"{STUDENTS} derivations took {seconds[-1]:.1f} s (target {TARGET_S:g} s)"
