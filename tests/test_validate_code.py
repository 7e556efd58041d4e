"""``manual-backprop validate NETWORK.toml --code FILE.py:NAME``: the user's own code, judged by one command.

The shipped ``examples/`` hold a right course-style ``TwoLayerNet`` and one with the ReLU mask
left out; the other code files are written here. Exit codes: 0 right, 1 wrong (the code
raising included), 2 a bad ``--code`` (one line on standard error, nothing on standard output).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from manual_backprop.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NETWORK = str(EXAMPLES / "two_layer.toml")


def run(capsys, *argv):
    code = main(["validate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, text, name="my_net.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_shipped_right_two_layer_net_passes_with_exit_0(capsys):
    code, out, err = run(capsys, NETWORK, "--code", f"{EXAMPLES / 'two_layer_net.py'}:TwoLayerNet")
    assert code == 0, out + err
    assert "TwoLayerNet(input_size=4, hidden_size=5, output_size=3)" in out
    assert "an object with params and loss(X, y) returning (loss, grads)" in out
    assert "All 4 trials right: random, batch 1, kink, float32." in out


def test_the_shipped_mistake_is_named_and_localised_with_exit_1(capsys):
    code, out, err = run(capsys, NETWORK, "--code", f"{EXAMPLES / 'two_layer_net_mistake.py'}:TwoLayerNet")
    assert code == 1
    assert "First wrong: dW1 in the random trial, wrong on its own." in out
    assert "dZ1 is dA1 with the ReLU mask left out; it should be dA1 * (Z1 > 0)." in out
    assert "Traceback" not in out + err


def test_json_is_one_object_without_nan(capsys):
    code, out, _ = run(capsys, NETWORK, "--code", f"{EXAMPLES / 'two_layer_net_mistake.py'}:TwoLayerNet", "--json")
    assert code == 1

    def refuse(constant):
        raise AssertionError(f"JSON has {constant}")

    doc = json.loads(out, parse_constant=refuse)
    assert doc["ok"] is False and doc["first_wrong"] == "dW1" and doc["mistake"] == "relu_mask_missing"
    assert doc["wrong_part"] == "backward"
    assert [t["name"] for t in doc["trials"]] == ["random", "batch 1", "kink", "float32"]
    assert doc["trials"][0]["claims"]["dW1"]["error"] == "own"
    assert doc["code"].endswith("two_layer_net_mistake.py:TwoLayerNet")


def test_a_function_in_a_file_with_a_helper_beside_it_is_imported_from_the_files_folder(tmp_path, capsys):
    write(tmp_path, """
        import numpy as np

        def relu(z):
            return np.maximum(0, z)
    """, "helpers_for_my_net.py")
    path = write(tmp_path, """
        import numpy as np
        from helpers_for_my_net import relu

        def forward_backward(params, X, Y):
            N = X.shape[0]
            Z1 = X @ params["W1"] + params["b1"]
            A1 = relu(Z1)
            Z2 = A1 @ params["W2"] + params["b2"]
            P = np.exp(Z2 - Z2.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            L = -np.log(P[np.arange(N), Y]).mean()
            dZ2 = P.copy()
            dZ2[np.arange(N), Y] -= 1
            dZ2 /= N
            dZ1 = (dZ2 @ params["W2"].T) * (Z1 > 0)
            return {"L": L, "Z1": Z1, "A1": A1, "dZ2": dZ2, "dW2": A1.T @ dZ2, "db2": dZ2.sum(axis=0),
                    "dZ1": dZ1, "dW1": X.T @ dZ1, "db1": dZ1.sum(axis=0)}
    """)
    code, out, err = run(capsys, NETWORK, "--code", f"{path}:forward_backward")
    assert code == 0, out + err
    assert "fn(params, X, Y) returning named tensors" in out


def test_the_files_parameters_and_data_make_the_first_trial(tmp_path, capsys):
    net = tmp_path / "net.toml"
    net.write_text(Path(NETWORK).read_text() + "\n[data]\nX = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.25, 2.0]]\n"
                                               "Y = [2, 0]\n")
    code, out, _ = run(capsys, net, "--code", f"{EXAMPLES / 'two_layer_net.py'}:TwoLayerNet", "--json")
    assert code == 0
    assert json.loads(out)["trials"][0]["batch"] == 2


def test_an_instance_and_a_class_with_no_arguments_are_accepted(tmp_path, capsys):
    path = write(tmp_path, f"""
        import sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        from two_layer_net import TwoLayerNet

        net = TwoLayerNet(4, 5, 3)

        class Fixed(TwoLayerNet):
            def __init__(self):
                super().__init__(4, 5, 3)
    """)
    for name in ("net", "Fixed"):
        code, out, err = run(capsys, NETWORK, "--code", f"{path}:{name}")
        assert code == 0, out + err


def test_code_that_raises_is_one_line_and_exit_1(tmp_path, capsys):
    path = write(tmp_path, """
        def fn(params, X, Y):
            return {"L": 1.0 / 0}
    """)
    code, out, err = run(capsys, NETWORK, "--code", f"{path}:fn")
    assert code == 1
    assert "fn raised ZeroDivisionError: float division by zero (at " in out
    assert "Traceback" not in out + err


def test_prints_of_the_users_code_stay_off_the_json(tmp_path, capsys):
    path = write(tmp_path, f"""
        import sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        from two_layer_net import TwoLayerNet as Base
        print("importing my net")

        class TwoLayerNet(Base):
            def loss(self, X, y=None):
                print("loss called")
                return super().loss(X, y)
    """)
    code, out, err = run(capsys, NETWORK, "--code", f"{path}:TwoLayerNet", "--json")
    assert code == 0
    assert json.loads(out)["ok"] is True
    assert "importing my net" in err and "loss called" in err


@pytest.mark.parametrize("value, words", [
    ("examples/two_layer_net.py", "--code must be FILE.py:NAME"),
    ("{tmp}/missing.py:fn", "--code: no such file"),
    ("{tmp}/my_net.py:nothing_here", "my_net.py has no 'nothing_here'; it defines fn"),
    ("{tmp}/broken.py:fn", "importing broken.py raised NameError: name 'undefined_name' is not defined"),
    ("{tmp}/syntax.py:fn", "importing syntax.py raised SyntaxError"),
    ("{tmp}/my_net.py:WIDTH", "WIDTH is not a recognised form"),
    ("{tmp}/my_net.py:one_arg", "is not a recognised form: a function must take (params, X, Y)"),
    ("{tmp}/my_net.py:1x", "'1x' is not a Python name"),
    ("{tmp}/notes.txt:fn", "is not a Python file"),
])
def test_a_bad_code_value_is_one_line_exit_2_and_nothing_on_stdout(tmp_path, capsys, value, words):
    write(tmp_path, """
        WIDTH = 5

        def fn(params, X, Y):
            return {}

        def one_arg(X):
            return X
    """)
    write(tmp_path, "x = undefined_name\n", "broken.py")
    write(tmp_path, "def fn(:\n", "syntax.py")
    write(tmp_path, "not python\n", "notes.txt")
    code, out, err = run(capsys, NETWORK, "--code", value.format(tmp=tmp_path))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and words in err, err
    assert "Traceback" not in err
