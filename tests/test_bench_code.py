"""`manual-backprop bench --code FILE.py:NAME`: the user's own forward + backward on the benchmarks' bench.

The user's code is checked against the engine before anything is timed; a
wrong result or an exception is exit 1 and one line, and nothing is written.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from manual_backprop.bench import report as benchreport
from manual_backprop.cli import main

ROOT = Path(__file__).resolve().parents[1]
NET = str(ROOT / "examples" / "two_layer.toml")
RIGHT = str(ROOT / "examples" / "two_layer_net.py") + ":TwoLayerNet"
WRONG = str(ROOT / "examples" / "two_layer_net_mistake.py") + ":TwoLayerNet"

# The course's two-layer network as fn(params, X, Y) -> (loss, grads), the textbook rules written out.
FUNCTION = '''
import numpy as np

def two_layer(params, X, y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    Z1 = X @ W1 + b1
    A1 = np.maximum(Z1, 0)
    S = A1 @ W2 + b2
    S = S - S.max(axis=1, keepdims=True)
    P = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    loss = -np.log(P[np.arange(N), y]).mean()
    dS = P.copy()
    dS[np.arange(N), y] -= 1
    dS /= N
    dZ1 = (dS @ W2.T) * (Z1 > 0)
    return loss, {"W1": X.T @ dZ1, "b1": dZ1.sum(0), "W2": A1.T @ dS, "b2": dS.sum(0)}

def raises(params, X, y):
    return 1 / 0

def wrong_shape(params, X, y):
    loss, grads = two_layer(params, X, y)
    grads["W1"] = grads["W1"][:2]
    return loss, grads
'''


def run(capsys, *argv):
    code = main(["bench", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(textwrap.dedent(FUNCTION))
    return path


def test_the_course_class_is_benched_and_reported(tmp_path, capsys):
    out = tmp_path / "report"
    code, text, err = run(capsys, NET, "--code", RIGHT, "--batches", "1,8", "--rounds", "2", "--output", out)
    assert code == 0, err
    assert "batch 8: checked against the engine" in err  # progress on standard error
    md = (out / "report.md").read_text()
    assert md == text.split("\nwrote ")[0]
    assert "# TwoLayerNet on the bench" in md and "## 4-5-3, float64" in md
    assert "| batch | your code | fast engine |" in md and "yours/fast" in md and "yours/floor" in md
    assert "## Targets" not in md and "fast/torch" not in md  # the project's targets are not the user's
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # bench.json is the benchmarks' own form: `manual-backprop report` reads it
    report = benchreport.build(benchreport.load(out / "bench.json"))
    for batch in (1, 8):
        rounds = report.rounds[("4-5-3", "float64", batch)]
        assert {"user", "numpy_fast", "floor_numpy"} <= set(rounds)
        assert all(len(times) == 2 for times in rounds.values())
    assert main(["report", str(out / "bench.json"), "--output", str(tmp_path / "again")]) == 0


def test_a_function_returning_loss_and_grads_with_json(tmp_path, capsys, user_file):
    code, text, err = run(capsys, NET, "--code", f"{user_file}:two_layer", "--batches", "4", "--rounds", "1",
                          "--output", tmp_path / "out", "--json")
    assert code == 0, err
    doc = json.loads(text)
    assert doc["ok"] is True and doc["checks"]["4"]["ok"] is True
    row = doc["networks"][0]
    assert row["batch"] == 4 and row["rounds"] == 1 and "user" in row["median_s"]
    assert set(row["ratios"]) >= {"yours/fast", "yours/floor"}
    assert doc["results"].endswith("bench.json") and doc["plot"].endswith("report.png")


def test_a_wrong_gradient_is_exit_1_one_line_and_nothing_timed(tmp_path, capsys):
    out = tmp_path / "never"
    code, text, err = run(capsys, NET, "--code", WRONG, "--batches", "8", "--output", out)
    assert code == 1
    assert text.count("\n") == 1 and "dW1" in text and "disagrees with engine" in text and "not timed" in text
    assert not out.exists()  # no report, not even an empty folder


@pytest.mark.parametrize(("name", "fragment"), [
    ("raises", "raised ZeroDivisionError"),
    ("wrong_shape", "dW1"),
])
def test_code_that_raises_or_returns_the_wrong_shape_is_exit_1(tmp_path, capsys, user_file, name, fragment):
    code, text, err = run(capsys, NET, "--code", f"{user_file}:{name}", "--batches", "2", "--output",
                          tmp_path / "out")
    assert code == 1 and fragment in text and text.count("\n") == 1 and "Traceback" not in text + err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("options", "fragment"), [
    (["--batches", "8,x"], "--batches must be positive integers"),
    (["--batches", "0"], "--batches must be positive integers"),
    (["--rounds", "0"], "--rounds must be between 1 and 1000"),
    (["--code", "nowhere.py:f"], "no such file"),
    (["--example", "seed-004-batchnorm"], "the fast engine has no norms"),
])
def test_bad_input_is_exit_2_and_one_line(tmp_path, capsys, user_file, options, fragment):
    argv = ["--code", f"{user_file}:two_layer", "--output", tmp_path / "out", *options]
    if "--example" not in options:
        argv.insert(0, NET)
    code, text, err = run(capsys, *argv)
    assert code == 2 and text == "" and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "out").exists()
