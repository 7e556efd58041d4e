"""``validate``: the shipped derivations' verdicts, claims judged at their written precision, the command line.

Expected values come from the seeds (seed 002's printed notebook, seed 003's
text and comments, seed 000's table) or from arithmetic shown beside them.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from manual_backprop import InputError, load_example, parse_case, run, validate
from manual_backprop.cli import main
from manual_backprop.description.case import Claim
from manual_backprop.description.catalog import example_names, example_text
from manual_backprop.validation.claims import judged_resolutions

SEED_002_NETWORK = example_text("seed-002").split("\n[claimed]\n")[0] + "\n"


def seed_002_with(claims: str):
    """Seed 002's network and data with the given [claimed] table."""
    return parse_case(SEED_002_NETWORK + "[claimed]\n" + claims, "test")


# --- the shipped derivations --------------------------------------------------------------------

def test_every_seed_with_numbers_ships_a_derivation_listed_by_examples():
    names = example_names()
    assert {"seed-000-derivation", "seed-002", "seed-003-derivation"} <= set(names)
    assert all(load_example(n).claimed for n in ("seed-000-derivation", "seed-002", "seed-003-derivation"))


def test_seed_002_notebook_values_are_all_right():
    report = validate(load_example("seed-002"))
    assert report.ok and report.first_wrong is None
    assert len(report.claims) == 12


def test_seed_003_derivation_names_dZ1_as_the_first_wrong_step_and_the_only_one_wrong_on_its_own():
    report = validate(load_example("seed-003-derivation"))
    assert report.first_wrong == "dZ1"
    assert report.own_errors == ["dZ1"]


def test_seed_003_derivation_diagnoses_the_relu_mask_left_out_of_dZ1():
    dZ1 = validate(load_example("seed-003-derivation")).claims["dZ1"]
    assert [f.mistake.id for f in dZ1.fits] == ["relu_mask_missing"]
    assert dZ1.diagnosis == "dZ1 is dA1 with the ReLU mask left out; it should be dA1 * (Z1 > 0)."
    # the seed's commenter: "dL/dz1 = [1, 0, 2, 0] instead because of ReLU"
    np.testing.assert_allclose(dZ1.check.true, [[1, 0, 2, 0]], atol=1e-9)
    np.testing.assert_array_equal(dZ1.check.wrong, [[False, True, False, True]])


def test_seed_003_derivation_keeps_the_seeds_own_right_steps_right():
    claims = validate(load_example("seed-003-derivation")).claims
    # "dL/dz3 = Y_pred - Y_target = [0.5, -0.5, 0]", dZ2 = [1, 0], dA1 = [1, -2, 2, -1]
    for name in ("A3", "dZ3", "dA2", "dZ2", "dA1"):
        assert claims[name].ok, name


def test_seed_003_errors_below_dZ1_are_carried_from_it_into_the_descent_step():
    claims = validate(load_example("seed-003-derivation")).claims
    assert {n: c.carried_from for n, c in claims.items() if c.error == "carried"} == {
        "dW1": ["dZ1"], "db1": ["dZ1"], "dX": ["dZ1"], "W1_next": ["dW1"], "b1_next": ["db1"]}
    # dX = dZ1 @ W1.T: from the claimed dZ1 = [1, -2, 2, -1], [4.5, -3, -3.5]; from the true [1, 0, 2, 0], [2.5, -1, -0.5]
    np.testing.assert_allclose(claims["dX"].from_your_inputs, [[4.5, -3.0, -3.5]])
    np.testing.assert_allclose(claims["dX"].check.true, [[2.5, -1.0, -0.5]], atol=1e-9)


def test_seed_000_table_outputs_do_not_follow_from_its_weights_and_inputs():
    z2 = validate(load_example("seed-000-derivation")).claims["Z2"]
    assert z2.error == "own" and z2.diagnosis is None
    # x = 0, b = 0: z1 = 0, h = sigmoid(0) = 0.5, z2 = 0.5 * (0.30 + 0.20, -0.10 + 0.20) = [0.25, 0.05]
    np.testing.assert_allclose(z2.check.true, [[0.25, 0.05], [0.25, 0.05]], rtol=1e-15)
    assert z2.notes[0].startswith("Z2 does not follow from the stated weights and inputs")
    assert "[[0.25, 0.05], [0.25, 0.05]]" in z2.notes[0]
    assert "Samples 0 and 1 have the same X" in z2.notes[1]


def test_seed_000_h_written_as_0_is_wrong_because_sigmoid_of_0_is_one_half():
    report = validate(load_example("seed-000-derivation"))
    assert report.claims["Z1"].ok
    assert report.first_wrong == "A1"
    np.testing.assert_array_equal(report.claims["A1"].check.true, [[0.5, 0.5], [0.5, 0.5]])


def test_seed_000_dE_dz2_column_is_carried_from_the_tables_z2():
    # half-MSE summed: dE/dz2 = z2 - y, and 0.28496 - 1 = -0.71504, 0.13220 - 0 = 0.13220
    dZ2 = validate(load_example("seed-000-derivation")).claims["dZ2"]
    assert dZ2.error == "carried" and dZ2.carried_from == ["Z2"]
    assert dZ2.carried_through == ["A2", "dA2"]


def test_seed_000_zero_dW1_per_sample_is_right_because_x_is_zero():
    assert validate(load_example("seed-000-derivation")).claims["dW1_per_sample"].ok


# --- judging at the written precision ---------------------------------------------------------------

@pytest.mark.parametrize("written, right", [
    ("0.40704483", True),     # the notebook's print of 0.40704483298830035
    ("0.40704484", False),    # 7.0e-9 away: more than half a unit in the 8th decimal
    ("0.4070448", True),      # 3.3e-8 away: within half a unit in the 7th decimal
    ("0.4070449", False),     # 6.7e-8 away
    ("0.40704483298830035", True),
])
def test_a_claim_is_right_when_the_truth_rounds_to_it(written, right):
    report = validate(seed_002_with(f"dW2 = [[{written}], [0.41140261], [0.41574958]]"))
    assert report.claims["dW2"].ok is right


def test_a_float32_derivation_is_judged_against_the_float64_truth_within_float32_rounding():
    case = load_example("seed-002", {"dtype": "float32"})
    ours = run(case)                                  # every value computed in float32
    claims = {n: Claim(np.asarray(ours[n], np.float64), np.zeros(np.shape(ours[n]))) for n in ("dW1", "dZ1", "L")}
    report = validate(dataclasses.replace(case, claimed=claims))
    assert report.ok
    assert 0 < report.claims["dW1"].check.max_abs_err < 1e-8   # float32 rounding, far above float64's


def test_whole_numbers_are_read_at_the_precision_of_the_decimals_beside_them():
    claims = {"a": Claim(np.array([0.5, 0.0]), np.array([0.05, 0.5])),   # [0.5, 0]: the 0 as 0.0
              "b": Claim(np.array([0.0, 1.0]), np.array([0.5, 0.5])),    # whole numbers only: the table's 0.05
              "c": Claim(np.array(0.125), np.array(5e-4))}
    res = judged_resolutions(claims)
    np.testing.assert_array_equal(res["a"], [0.05, 0.05])
    np.testing.assert_array_equal(res["b"], [5e-4 * 100, 5e-4 * 100])
    np.testing.assert_array_equal(judged_resolutions({"d": claims["b"]})["d"], [0.5, 0.5])


def test_a_claim_made_from_rounded_inputs_carries_their_rounding_and_is_not_called_its_own_error():
    # dZ1 written to 3 decimals (right at 3 decimals), dW1 = X.T @ (that dZ1) written to 8
    case = load_example("seed-002")
    dZ1 = np.round(run(case)["dZ1"], 3)
    dW1 = np.round(case.X.T @ dZ1, 8)
    report = validate(dataclasses.replace(case, claimed={
        "dZ1": Claim(dZ1, np.full(dZ1.shape, 5e-4)), "dW1": Claim(dW1, np.full(dW1.shape, 5e-9))}))
    assert report.claims["dZ1"].ok and not report.claims["dW1"].ok
    assert (report.claims["dW1"].error, report.claims["dW1"].carried_from) == ("carried", ["dZ1"])
    assert report.claims["dW1"].notes == ["dW1 is as right as the precision of dZ1 allows, but not at its own."]


def test_a_transposed_weight_gradient_in_a_file_is_loaded_and_diagnosed_not_refused():
    # seed 002's dW1 (2, 3), written as dZ1.T @ X: (3, 2)
    report = validate(seed_002_with(
        "dW1 = [[0.01746411, 0.02179881], [0.0193592, 0.02416767], [0.02123573, 0.02651476]]"))
    dW1 = report.claims["dW1"]
    assert dW1.check.status == "transposed"
    assert [f.mistake.id for f in dW1.fits] == ["transposed_weight_gradient"]
    assert dW1.diagnosis == "dW1 is dZ1.T @ X, the transposed product; it should be X.T @ dZ1."


def test_a_claim_of_any_other_wrong_shape_is_still_an_input_error():
    with pytest.raises(InputError, match=r"\[claimed\] dW1 has shape \(3,\), expected \(2, 3\)"):
        seed_002_with("dW1 = [0.1, 0.2, 0.3]")


# --- the command line ---------------------------------------------------------------------------------

def test_validate_exits_0_when_every_claim_is_right(capsys):
    assert main(["validate", "--example", "seed-002"]) == 0
    assert "All 12 claims are right" in capsys.readouterr().out


def test_validate_prints_claimed_and_true_side_by_side_with_the_wrong_elements_marked(capsys):
    assert main(["validate", "--example", "seed-003-derivation"]) == 1
    out = capsys.readouterr().out
    dZ1 = next(line for line in out.splitlines() if line.startswith("dZ1 "))
    assert "[1, -2✗, 2, -1✗]" in dZ1 and "[1, 0, 2, 0]" in dZ1 and "WRONG: own error (2 of 4)" in dZ1
    assert "First wrong claim: dZ1, wrong on its own." in out
    assert "dZ1: dZ1 is dA1 with the ReLU mask left out; it should be dA1 * (Z1 > 0)." in out


def test_validate_of_seed_000_says_what_the_outputs_should_be(capsys):
    assert main(["validate", "--example", "seed-000-derivation"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert ("Z2 does not follow from the stated weights and inputs: with them, Z2 = A1 @ W2 + b2 = "
            "[[0.25, 0.05], [0.25, 0.05]]") in out


def test_validate_json_has_checks_claimed_with_ok_errors_and_diagnosis(capsys):
    assert main(["validate", "--example", "seed-003-derivation", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["first_divergence"] == "dZ1"
    assert doc["own_errors"] == ["dZ1"]
    claimed = doc["tensors"]["dZ1"]["checks"]["claimed"]
    assert claimed["ok"] is False and claimed["max_abs_err"] == pytest.approx(2.0)
    assert claimed["diagnosis"].startswith("dZ1 is dA1 with the ReLU mask left out")
    assert claimed["wrong_elements"] == [[0, 1], [0, 3]]
    assert doc["tensors"]["dW1"]["checks"]["claimed"]["error"] == "carried"
    right = doc["tensors"]["dZ2"]["checks"]["claimed"]
    assert (right["ok"], right["error"], right["diagnosis"]) == (True, None, None)
    assert "dA3" not in doc["tensors"]  # softmax with cross-entropy is fused: there is no dA3


def test_validate_reads_a_file(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(SEED_002_NETWORK + "[claimed]\ndb2 = [0.77325462]\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize("argv, message", [
    (["validate", "--example", "seed-004"], "no [claimed] values to validate"),
    (["validate"], "validate needs a FILE with a [claimed] table, or --example NAME"),
    (["validate", "x.toml", "--example", "seed-002"], "give one of FILE or --example, not both"),
    (["validate", "--example", "no-such"], "unknown example 'no-such'"),
], ids=["no claims", "nothing to validate", "both a file and an example", "unknown example"])
def test_validate_input_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_claimed_descent_step_without_a_learning_rate_is_an_input_error(tmp_path, capsys):
    path = tmp_path / "step.toml"
    path.write_text(SEED_002_NETWORK + "[claimed]\nb2_next = [0.1]\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    assert "b2_next needs [sgd] learning_rate" in capsys.readouterr().err


def test_a_nan_claim_from_python_is_wrong_never_right():
    # A Claim object is passed as it is (a file refuses NaN before this); NaN is never within any tolerance.
    case = load_example("seed-002")
    claimed = dict(case.claimed)
    dW2 = claimed["dW2"].value.copy()
    dW2[0, 0] = np.nan
    claimed["dW2"] = Claim(dW2, claimed["dW2"].resolution)
    report = validate(dataclasses.replace(case, claimed=claimed))
    assert not report.claims["dW2"].ok and report.claims["dW2"].check.worst == (0, 0)
