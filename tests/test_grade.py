"""``grade``: the sample class's scores by its rubric, untrusted code costing only itself, the outputs.

Expected scores are the rubric's arithmetic: the sample assignment gives 16 points for the claims
(Z1, A1, Z2, A2, L, dA2, dZ2, dA1, db2, db1 one each; dW2, dZ1, dW1 two each) and 6 for the code
(dW1 2, db1 1, dW2 2, db2 1), 22 in all. Each submission's numbers were written by a derivation
done by the book, in NumPy, with its one mistake (see each answers.toml's first line).
"""

from __future__ import annotations

import csv
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

import manual_backprop
from manual_backprop.cli import main
from manual_backprop.grading import grade_class, load_assignment

CLASS = Path(manual_backprop.__file__).parent / "classes" / "sample-class"

#: student -> (score, the items that lose points)
EXPECTED = {
    "alice": (22, set()),                                           # everything right
    "bob": (20, {"dZ1"}),                                           # own error: dW1, db1 carried, kept
    "carol": (21, {"A1"}),                                          # a slip in A1: everything after it carried
    "dave": (16, {"code:dW1", "code:db1", "code:dW2", "code:db2"}),  # code crashes (segfault)
    "erin": (16, {"code:dW1", "code:db1", "code:dW2", "code:db2"}),  # code never returns
    "frank": (0, None),                                             # an empty answers.toml, no code
    "grace": (15, {"db1", "code:dW1", "code:db1", "code:dW2", "code:db2"}),  # db1 (3, 1); no code
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    out = tmp_path_factory.mktemp("graded")
    assert main(["grade", "--example", "sample-class", "--output", str(out), "--jobs", "2"]) == 0
    return out


def test_the_sample_class_grades_with_the_scores_its_rubric_defines(graded):
    with open(graded / "gradebook.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["student"] for r in rows] == sorted(EXPECTED)
    for row in rows:
        score, lost = EXPECTED[row["student"]]
        assert float(row["total"]) == score and float(row["max"]) == 22, row
        items = [k for k in row if k not in ("student", "total", "max")]
        if lost is not None:
            assert {k for k in items if float(row[k]) == 0} == lost, row["student"]


def test_a_carried_error_keeps_its_points_and_the_feedback_says_why(graded):
    bob = (graded / "feedback" / "bob.md").read_text(encoding="utf-8")
    assert "| `dW1` | 2 / 2 | carried from dZ1: right from your own inputs, points kept |" in bob
    assert "dZ1 takes the sigmoid derivative from Z1" in bob
    assert "right: [[0.021284812" in bob   # show_answers: the right value beside theirs


def test_a_rubric_that_counts_carried_errors_takes_their_points(tmp_path):
    shutil.copytree(CLASS, tmp_path / "class")
    path = tmp_path / "class" / "assignment.toml"
    path.write_text(path.read_text().replace('carried = "keep"', 'carried = "lose"'))
    _, results, _ = grade_class(path, tmp_path / "class" / "submissions" / "bob", one=True)
    # bob loses dZ1 (2), and now the carried dW1 (2) and db1 (1): 22 - 5
    assert results[0].score == 17


def test_crashes_and_hangs_cost_only_their_own_student(graded):
    dave = json.loads((graded / "results" / "dave" / "results.json").read_text())
    erin = json.loads((graded / "results" / "erin" / "results.json").read_text())
    assert "segmentation fault" in dave["output"] and "did not finish within 5 s" in erin["output"]
    assert dave["score"] == erin["score"] == 16  # their hand derivations are still graded


def test_results_json_is_gradescopes_format(graded):
    # https://gradescope-autograders.readthedocs.io/en/latest/specs/: a top-level "score" (or the sum of
    # the tests' scores), an optional "output", and "tests", each with "score", "max_score", "name", "output"
    for path in (graded / "results").glob("*/results.json"):
        doc = json.loads(path.read_text())
        assert set(doc) <= {"score", "output", "tests", "execution_time", "visibility", "stdout_visibility"}
        assert isinstance(doc["score"], float) and isinstance(doc["output"], str)
        for test in doc["tests"]:
            assert set(test) == {"name", "score", "max_score", "output"}
            assert isinstance(test["name"], str) and isinstance(test["output"], str)
            assert 0 <= test["score"] <= test["max_score"]
        assert doc["score"] == sum(t["score"] for t in doc["tests"])


def test_the_html_feedback_page_is_self_contained_and_escaped(graded):
    page = (graded / "feedback" / "grace.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<script" not in page and "http" not in page
    assert "db1 has shape (3, 1), expected (3,) or (1, 3)" in page


def test_grading_on_gradescope_writes_one_results_json(tmp_path):
    assert main(["grade", str(CLASS / "assignment.toml"), str(CLASS / "submissions" / "carol"), "--one",
                 "--output", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["score"] == 21.0 and "debugging: loss =" in doc["output"]  # what her code printed
    assert (tmp_path / "feedback.md").exists() and (tmp_path / "feedback.html").exists()


# --- untrusted code --------------------------------------------------------------------------

RIGHT = (CLASS / "submissions" / "alice" / "backprop.py").read_text()


def _code_only(tmp_path, bodies: dict[str, str], **rubric):
    """An assignment that grades only the code, and one single-file submission per body."""
    folder = tmp_path / "subs"
    folder.mkdir()
    for student, body in bodies.items():
        (folder / f"{student}.py").write_text(textwrap.dedent(body))
    shutil.copy(CLASS / "network.toml", tmp_path / "network.toml")
    limits = "\n".join(f"{k} = {v}" for k, v in {"timeout": 5, **rubric}.items())
    (tmp_path / "a.toml").write_text(f'network = "network.toml"\n[hand_in]\ncode = "backprop.py:loss_and_grads"\n'
                                     f'[points.code]\ndW1 = 1\ndb1 = 1\n[rubric]\n{limits}\n')
    _, results, _ = grade_class(tmp_path / "a.toml", folder, jobs=2)
    return {r.student: r for r in results}


EVIL = {
    "exits": RIGHT.replace("m = X.shape[0]", "import sys; sys.exit(3)"),
    "os_exit": RIGHT.replace("m = X.shape[0]", "import os; os._exit(0)"),
    "floods": RIGHT.replace("m = X.shape[0]", "print('x' * (3 << 20)); m = X.shape[0]"),
    "allocates": RIGHT.replace("m = X.shape[0]", "big = np.ones(10**11); m = X.shape[0]"),
    "raises": RIGHT.replace("m = X.shape[0]", "m = 1 / 0"),
    "imports_badly": "import no_such_module\n",
    "right": RIGHT,
}


def test_exits_floods_and_huge_allocations_cost_their_student_only(tmp_path):
    r = _code_only(tmp_path, EVIL, output=1)
    assert r["right"].score == 2
    for student in EVIL:
        if student != "right":
            assert r[student].score == 0, student
    assert "sys.exit(3)" in " ".join(r["exits"].notes)
    assert "wrote more than the output limit" in " ".join(r["floods"].notes)
    assert "MemoryError" in " ".join(r["allocates"].notes) or "memory" in " ".join(r["allocates"].notes)
    assert "ZeroDivisionError" in " ".join(r["raises"].notes)
    assert "no_such_module" in " ".join(r["imports_badly"].notes)
    assert "results" in " ".join(r["os_exit"].notes) or "nothing" in " ".join(r["os_exit"].notes)


def test_nothing_the_students_process_writes_is_unpickled(tmp_path):
    # the student's process replaces np.save with one that pickles: the grader reads with
    # allow_pickle=False, so the pickle is refused (unreadable), never loaded
    sneaky = RIGHT.replace("import numpy as np", textwrap.dedent("""\
        import numpy as np
        import pickle
        _save = np.save
        def _pickling(path, value, allow_pickle=False):
            _save(path, np.array([pickle.dumps(print)], dtype=object), allow_pickle=True)
        np.save = _pickling"""))
    r = _code_only(tmp_path, {"sneaky": sneaky})
    assert r["sneaky"].score == 0
    assert all("cannot be read back" in (i.diagnosis or "") or i.verdict == "code failed"
               for i in r["sneaky"].items), [(i.verdict, i.diagnosis) for i in r["sneaky"].items]


def test_the_students_working_folder_holds_inputs_never_answers(tmp_path):
    # the code prints every file it can see from its working folder; none is a true value
    looker = RIGHT.replace("m = X.shape[0]", "import os; print(sorted(os.path.relpath(os.path.join(d, f)) "
                                               "for d, _, fs in os.walk('.') for f in fs)); m = X.shape[0]")
    r = _code_only(tmp_path, {"looker": looker})
    seen = r["looker"].output
    assert "job.json" in seen and "in/0/W1.npy" in seen and "looker.py" in seen
    assert "dW1" not in seen and "true" not in seen.lower()
    assert r["looker"].score == 2


# --- the assignment file -----------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ('network = "network.toml"\n[points]\ndW1 = 1\n', "[hand_in] names nothing to hand in"),
    ('network = "network.toml"\n[hand_in]\nclaims = "a.toml"\n[points]\ndW9 = 1\n', "unknown tensor name 'dW9'"),
    ('network = "network.toml"\n[hand_in]\nclaims = "a.toml"\n[points]\ndW1 = -1\n', "dW1 must be a number of points"),
    ('network = "network.toml"\n[hand_in]\ncode = "b.py"\n[points.code]\ndW1 = 1\n', 'code must be "FILE.py:NAME"'),
    ('example = "seed-002"\nnetwork = "network.toml"\n', "one of them"),
    ('network = "network.toml"\n[hand_in]\nclaims = "a.toml"\n[points]\ndW1 = 1\n[rubric]\ncarried = "maybe"\n',
     'carried must be "keep" or "lose"'),
    ('network = "network.toml"\n[hand_in]\nclaims = "a.toml"\n[points]\ndW1 = 1\n[rubric]\ntimeout = 0\n',
     "timeout must be a number above 0"),
])
def test_a_bad_assignment_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    shutil.copy(CLASS / "network.toml", tmp_path / "network.toml")
    (tmp_path / "a.toml").write_text(text)
    (tmp_path / "subs").mkdir()
    assert main(["grade", str(tmp_path / "a.toml"), str(tmp_path / "subs"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_a_degenerate_answer_never_earns_carried_points(tmp_path):
    # zeros all the way down: Z1 = 0 is an own error, and every later zero "follows" from it by the right
    # rules; without the guard they would all keep their points
    shutil.copytree(CLASS, tmp_path / "class")
    zeros = tmp_path / "class" / "submissions" / "zoe"
    zeros.mkdir()
    case = load_assignment(tmp_path / "class" / "assignment.toml").case
    shapes = case.network.tensor_shapes(case.batch)
    names = ["Z1", "A1", "Z2", "A2", "dA2", "dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1"]
    lines = ["[claimed]"] + [f"{n} = {np.zeros(shapes[n]).tolist()}" for n in names]
    (zeros / "answers.toml").write_text("\n".join(lines).replace("0.0", "0.0") + "\n")
    _, results, _ = grade_class(tmp_path / "class" / "assignment.toml", zeros, one=True)
    assert results[0].score == 0, [(i.name, i.verdict) for i in results[0].items]


# --- a layer pair handed in -----------------------------------------------------------------------

AFFINE = '''
import numpy as np


def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, {dW}, dout.sum(axis=0)
'''


def _layer_class(tmp_path, bodies: dict[str, str]):
    shutil.copy(CLASS / "network.toml", tmp_path / "network.toml")
    (tmp_path / "a.toml").write_text(
        'network = "network.toml"\n[hand_in]\n'
        'layer = { file = "layers.py", forward = "affine_forward", backward = "affine_backward", layer = "linear" }\n'
        '[points.layer]\nout = 1\ndx = 1\ndW = 2\ndb = 1\n[rubric]\ntimeout = 10\n')
    subs = tmp_path / "subs"
    for student, body in bodies.items():
        (subs / student).mkdir(parents=True)
        (subs / student / "layers.py").write_text(body)
    _, results, _ = grade_class(tmp_path / "a.toml", subs, jobs=2)
    return {r.student: r for r in results}


def test_a_layer_pair_is_graded_tensor_by_tensor_against_the_frameworks(tmp_path):
    r = _layer_class(tmp_path, {
        "right": AFFINE.format(dW="x.T @ dout"),
        "transposed": AFFINE.format(dW="dout.T @ x"),          # dW (n_out, n_in): a shape check fails
        "exits": AFFINE.format(dW="x.T @ dout").replace("return x @ w + b", "import sys; sys.exit(1)"),
    })
    assert r["right"].score == 5
    by = {i.name: i for i in r["transposed"].items}
    assert r["transposed"].score == 3 and by["layer:dW"].points == 0
    assert "transposed" in by["layer:dW"].diagnosis
    assert r["exits"].score == 0 and all("sys.exit" in (i.diagnosis or "") for i in r["exits"].items)
