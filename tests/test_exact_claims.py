"""Exact claims: ``[claimed] exact = true`` and ``dZ1 = { value = [...], exact = true }``.

Every expected value below is worked out by hand on one tiny network (no code under
test computes one):

    sizes = [1, 1], identity, half_mse, reduction "mean", W1 = [[1.0]], b1 = [0.0]
    X = [[1.0], [0.0], [0.0]]   (N = 3),   Y = [[0.0], [0.0], [0.0]]

    Z1 = A1 = X @ W1 + b1 = [[1], [0], [0]]        (exact in float64)
    L   = (1/N) * sum_i 1/2 (A1_i - Y_i)^2 = (1/3) * 1/2 = 1/6 = 0.1666...
    dZ1 = dA1 = (A1 - Y) / N = [[1/3], [0], [0]]
    dW1 = X.T @ dZ1 = 1/3 = 0.3333...,  db1 = 1^T dZ1 = [1/3],  dX = dZ1 @ W1.T = [[1/3], [0], [0]]

So ``0.333`` is 1/3 written with 3 decimals (right as written: |0.333 - 1/3| = 3.3e-4 is within
half a unit of its last decimal, 5e-4) but wrong when exact (3.3e-4 is far beyond rounding, the
tolerance policy's K*E + floor, ~1e-16 here); ``0.3333333333333333`` (the float64 nearest 1/3) and
the whole numbers of Z1 are right both ways.
"""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import Network, make_case, parse_case, validate
from manual_backprop.cli import main
from manual_backprop.description.case import Claim

NET = """
[network]
sizes = [1, 1]
activations = ["identity"]
loss = "half_mse"

[parameters]
W1 = [[1.0]]
b1 = [0.0]

[data]
X = [[1.0], [0.0], [0.0]]
Y = [[0.0], [0.0], [0.0]]

[claimed]
"""

THIRD = "0.3333333333333333"   # the float64 nearest 1/3: right both ways


def judge(claimed: str):
    return validate(parse_case(NET + claimed, "net.toml"))


def verdicts(claimed: str) -> dict[str, bool]:
    return {name: c.ok for name, c in judge(claimed).claims.items()}


# --- as written, the default -----------------------------------------------------------------

def test_without_exact_a_claim_is_judged_at_its_written_precision():
    # |0.333 - 1/3| = 3.3e-4 <= 5e-4: right as written
    assert verdicts("dW1 = [[0.333]]\nZ1 = [[1.0], [0.0], [0.0]]") == {"Z1": True, "dW1": True}


def test_exact_false_is_the_default():
    assert verdicts("exact = false\ndW1 = [[0.333]]") == {"dW1": True}


# --- table-wide ------------------------------------------------------------------------------

def test_exact_true_makes_every_claim_of_the_table_exact():
    report = judge(f"exact = true\nZ1 = [[1.0], [0.0], [0.0]]\ndW1 = [[0.333]]\ndb1 = [{THIRD}]")
    assert {n: c.ok for n, c in report.claims.items()} == {"Z1": True, "dW1": False, "db1": True}
    assert report.first_wrong == "dW1"
    for name in ("Z1", "dW1", "db1"):
        assert np.all(report.claims[name].check.resolution == 0)
        assert np.all(report.claims[name].check.written == 0)
    # the worst element's allowance is the tolerance alone, far below the 3.3e-4 the claim is off by
    assert report.to_json()["tensors"]["dW1"]["checks"]["claimed"]["worst"]["allowed"] < 1e-12


def test_exact_is_not_a_tensor_name_and_is_not_claimed():
    assert "exact" not in Network((1, 1), ("identity",), "half_mse").names()
    assert "exact" not in Network((1, 1), ("identity",), "half_mse").extra_names()
    case = parse_case(NET + "exact = true\ndW1 = [[0.333]]", "net.toml")
    assert list(case.claimed) == ["dW1"]


def test_a_table_with_only_exact_has_no_claims_to_validate(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.toml").write_text(NET + "exact = true\n")
    assert main(["validate", "net.toml"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "net.toml: no [claimed] values to validate" in err[0]


def test_whole_numbers_in_an_exact_table_stay_exact():
    # db1 = [0] against the true 1/3: as written, a table of whole numbers only reads 0 as 0 +- 0.5
    # (right); exact, |0 - 1/3| is far beyond rounding (wrong). Borrowing must not loosen it.
    assert verdicts("db1 = [0]") == {"db1": True}
    report = judge("exact = true\ndb1 = [0]\ndW1 = [[0.333]]")
    assert not report.claims["db1"].ok and report.claims["db1"].check.resolution[0] == 0


def test_an_exact_claim_lends_no_resolution_to_whole_numbers_elsewhere():
    # L = 0 against the true 1/6: beside dW1 written with 4 decimals it reads 0.0000 +- 5e-5 (wrong);
    # beside an exact dW1 there are no written decimals, so it keeps +- 0.5 (right), not +- 0 (wrong).
    written = judge("L = 0\ndW1 = [[0.3333]]")
    assert not written.claims["L"].ok and written.claims["L"].check.resolution == 5e-5
    exact = judge(f"L = 0\ndW1 = {{ value = [[{THIRD}]], exact = true }}")
    assert exact.claims["L"].ok and exact.claims["L"].check.resolution == 0.5
    assert exact.claims["dW1"].ok


# --- per tensor, and the override ------------------------------------------------------------

def test_an_inline_table_makes_one_tensor_exact():
    assert verdicts("dW1 = { value = [[0.333]], exact = true }\ndb1 = [0.333]") == {"dW1": False, "db1": True}


def test_an_inline_table_with_exact_false_is_as_written():
    assert verdicts("dW1 = { value = [[0.333]], exact = false }") == {"dW1": True}


def test_an_inline_table_without_exact_takes_the_tables():
    assert verdicts("exact = true\ndW1 = { value = [[0.333]] }") == {"dW1": False}
    assert verdicts("dW1 = { value = [[0.333]] }") == {"dW1": True}


def test_a_per_tensor_exact_overrides_the_table_wide_one():
    # table exact, dW1 as written: dW1 right (3.3e-4 <= 5e-4), db1 exact: wrong
    assert verdicts("exact = true\ndW1 = { value = [[0.333]], exact = false }\ndb1 = [0.333]") == {
        "dW1": True, "db1": False}


def test_a_subtable_works_as_the_inline_table():
    assert verdicts("[claimed.dW1]\nvalue = [[0.333]]\nexact = true\n") == {"dW1": False}


def test_the_command_line_judges_exact_claims(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.toml").write_text(NET + "dW1 = [[0.333]]\n")
    assert main(["validate", "net.toml"]) == 0
    (tmp_path / "net.toml").write_text(NET + "exact = true\ndW1 = [[0.333]]\n")
    capsys.readouterr()
    assert main(["validate", "net.toml"]) == 1
    out = capsys.readouterr().out
    assert "0.333✗" in out and "0.3333333333333333" in out   # exact numbers are shown in full, not padded


# --- from Python: always exact -----------------------------------------------------------------

def test_arrays_passed_from_python_are_exact():
    net = Network((1, 1), ("identity",), "half_mse")
    params = {"W1": np.array([[1.0]]), "b1": np.array([0.0])}
    X, Y = np.array([[1.0], [0.0], [0.0]]), np.zeros((3, 1))
    case = make_case(net, params, X, Y, claimed={"dW1": np.array([[0.333]]), "db1": np.array([1 / 3])})
    np.testing.assert_array_equal(case.claimed["dW1"].resolution, [[0.0]])
    report = validate(case)
    assert {n: c.ok for n, c in report.claims.items()} == {"dW1": False, "db1": True}
    # a Claim given with a resolution is kept: 0.333 +- 5e-4 is right
    case = make_case(net, params, X, Y, claimed={"dW1": Claim(np.array([[0.333]]), np.array([[5e-4]]))})
    assert validate(case).ok


# --- bad input: exit 2, one line ---------------------------------------------------------------

@pytest.mark.parametrize("claimed, expected", [
    ('exact = "yes"\ndW1 = [[0.333]]', "net.toml: [claimed] exact must be true or false, got 'yes'"),
    ("exact = 1\ndW1 = [[0.333]]", "net.toml: [claimed] exact must be true or false, got 1"),
    ("dW1 = { value = [[0.333]], exat = true }",
     "net.toml: [claimed] dW1: unknown key 'exat' in its table; allowed: exact, value"),
    ("dW1 = { exact = true }", "net.toml: [claimed] dW1: its table has no 'value'"),
    ('dW1 = { value = [[0.333]], exact = "no" }', "net.toml: [claimed] dW1: exact must be true or false, got 'no'"),
    ("dW1 = { value = { x = 1.0 } }", "net.toml: [claimed] dW1 is a table where a number is needed"),
    ("dW1 = { value = [[0.333, 1.0]], exact = true }", "net.toml: [claimed] dW1 has shape (1, 2), expected (1, 1)"),
])
@pytest.mark.parametrize("command", ["validate", "check"])
def test_a_bad_exact_is_exit_2_with_one_line(claimed, expected, command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.toml").write_text(NET + claimed + "\n")
    assert main([command, "net.toml", "--against", "fd"] if command == "check" else [command, "net.toml"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith("manual-backprop: " + expected), lines[0]
