"""Carried or own: a claim is carried only when the student's inputs, as written, give it.

Short numbers (``0.0``, ``0.5``) are right when the truth rounds to them, so they
are judged as ± 0.05; but a claim written with more digits beside them was made
from those numbers as written (or from the true values, when they are right), not
from anything within their rounding. A claim reachable only somewhere inside that
± box is wrong on its own, and a note says the inputs were written with few digits.

Every table below is on seed 002's network; its true values, from the notebook:
dZ1 ~ 0.021..0.027 (so 0.0 is right at 1 decimal), Z2 = A2 ~ 0.767..0.829 (0.8 is
right at 1 decimal), dA2 ~ 0.189..0.197 (0.2), L = 0.29903387, dX[0] = [0.01442345,
0.02506399].
"""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import load_example, parse_case, run, validate
from manual_backprop.description.catalog import example_text

SEED_002_NETWORK = example_text("seed-002").split("\n[claimed]\n")[0] + "\n"
ZEROS_4x3 = "[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]"
# the true dX to 8 decimals, with dX[0, 0] slipped by 0.01 (0.01442345 -> 0.02442345)
DX_SLIPPED = ("[[0.02442345, 0.02506399], [0.01459795, 0.02536846], [0.01474584, 0.0256277], "
              "[0.0148659, 0.02583958]]")


def seed_002_with(claims: str):
    return validate(parse_case(SEED_002_NETWORK + "[claimed]\n" + claims, "test"))


def truth():
    return run(load_example("seed-002"))


# --- the reproduction: a slip beside short, right inputs ------------------------------------------

def test_a_slip_in_dX_beside_a_short_right_dZ1_is_its_own_error_not_carried_from_dZ1():
    report = seed_002_with(f"dZ1 = {ZEROS_4x3}\ndX = {DX_SLIPPED}\n")
    dZ1, dX = report.claims["dZ1"], report.claims["dX"]
    assert dZ1.ok                                    # |0.027| < 0.05: right at 1 decimal
    assert not dX.ok and dX.check.wrong.sum() == 1 and dX.check.worst == (0, 0)
    assert dX.error == "own" and dX.carried_from == []
    assert report.own_errors == ["dX"] and report.carried_errors == []
    # from the student's own (right) dZ1 the rule gives the true dX, not the claim
    np.testing.assert_allclose(dX.from_your_inputs, truth()["dX"], rtol=1e-12)
    # and no classic mistake is read into the ± 0.05 of the zeros (it used to be "the opposite sign")
    assert dX.fits == [] and dX.diagnosis is None
    assert "dZ1 was written with 1 decimal; read as exact, it does not give these numbers." in dX.notes
    assert report.summary()[0] == "First wrong claim: dX, wrong on its own."


@pytest.mark.parametrize("claims, name, short", [
    # A2 = identity(Z2): A2[0] slipped by 0.01 beside Z2 = 0.8
    ("Z2 = [[0.8], [0.8], [0.8], [0.8]]\nA2 = [[0.7770594], [0.78790327], [0.80868499], [0.82937081]]\n",
     "A2", "Z2"),
    # L = half-MSE of A2: slipped by 0.01 beside A2 = 0.8
    ("A2 = [[0.8], [0.8], [0.8], [0.8]]\nL = 0.30903387\n", "L", "A2"),
    # the same with A2 not written down: L reads the short Z2 through it
    ("Z2 = [[0.8], [0.8], [0.8], [0.8]]\nL = 0.30903387\n", "L", "Z2"),
], ids=["A2 after Z2 = 0.8", "L after A2 = 0.8", "L after Z2 = 0.8, A2 unwritten"])
def test_a_slip_beside_short_right_inputs_is_own_with_a_note_on_their_digits(claims, name, short):
    report = seed_002_with(claims)
    claim = report.claims[name]
    assert report.claims[short].ok
    assert (claim.error, claim.carried_from, claim.fits) == ("own", [], [])
    assert claim.diagnosis is None or not claim.diagnosis.startswith("Carried")
    assert f"{short} was written with 1 decimal; read as exact, it does not give these numbers." in claim.notes
    np.testing.assert_allclose(claim.from_your_inputs, truth()[name], rtol=1e-12)


def test_the_note_names_every_short_input():
    # dW2 = A1.T @ dZ2, dW2[0] slipped by 0.01, beside A1 and dZ2 written with 1 decimal (both right)
    report = seed_002_with("A1 = [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.6, 0.6]]\n"
                           "dZ2 = [[0.2], [0.2], [0.2], [0.2]]\n"
                           "dW2 = [[0.41704483], [0.41140261], [0.41574958]]\n")
    dW2 = report.claims["dW2"]
    assert report.claims["A1"].ok and report.claims["dZ2"].ok
    assert dW2.error == "own"
    assert dW2.notes[-1] == "A1 and dZ2 were written with 1 decimal; read as exact, they do not give these numbers."


def test_no_note_on_short_inputs_when_even_their_rounding_does_not_reach_the_claim():
    # dX[0, 0] off by 1: far outside anything dZ1 = 0.0 +- 0.05 can give
    report = seed_002_with(f"dZ1 = {ZEROS_4x3}\ndX = {DX_SLIPPED.replace('0.02442345', '1.01442345')}\n")
    assert report.claims["dX"].error == "own"
    assert not any("read as exact" in n for n in report.claims["dX"].notes)


# --- still carried: what the short numbers as written give --------------------------------------------

@pytest.mark.parametrize("dX", ["[[0.3, 0.525], [0.3, 0.525], [0.3, 0.525], [0.3, 0.525]]",
                                "[[0.30000000, 0.52500000], [0.3, 0.525], [0.3, 0.525], [0.3, 0.525]]"],
                         ids=["written short", "written to 8 decimals"])
def test_a_claim_the_short_wrong_inputs_give_as_written_is_carried(dX):
    # dZ1 = 0.5 everywhere is wrong; dX = dZ1 @ W1.T = 0.5 * row sums of W1 = [0.3, 0.525]
    report = seed_002_with("dZ1 = [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]\n"
                           f"dX = {dX}\n")
    dX_ = report.claims["dX"]
    assert report.own_errors == ["dZ1"]
    assert (dX_.error, dX_.carried_from) == ("carried", ["dZ1"])
    assert dX_.diagnosis == ("Carried from dZ1: the rule dX = dZ1 @ W1.T is right, "
                             "and your dZ1 gives these numbers.")


def test_a_slip_beside_a_short_wrong_input_is_own_too():
    # Z2 = 0.5 is wrong; A2 = identity(Z2) must then be 0.5: 0.52 is a slip of its own
    report = seed_002_with("Z2 = [[0.5], [0.5], [0.5], [0.5]]\nA2 = [[0.52], [0.5], [0.5], [0.5]]\n")
    A2 = report.claims["A2"]
    assert report.own_errors == ["Z2", "A2"]
    assert A2.carried_from == [] and A2.fits == []
    assert "from your Z2 it would be [[0.5], [0.5], [0.5], [0.5]]" in A2.notes[0]
    assert A2.notes[-1] == "Z2 was written with 1 decimal; read as exact, it does not give these numbers."
    # written as Z2 gives it, A2 is carried
    carried = seed_002_with("Z2 = [[0.5], [0.5], [0.5], [0.5]]\nA2 = [[0.50], [0.5], [0.5], [0.5]]\n")
    assert (carried.claims["A2"].error, carried.claims["A2"].carried_from) == ("carried", ["Z2"])


def test_a_claim_made_from_short_right_inputs_as_written_carries_their_rounding():
    # dW2 = A1.T @ dZ2 made from the written dZ2 (right at 2 decimals), to 8 decimals: wrong at 8
    # decimals, but by dZ2's rounding, not a slip
    A1 = truth()["A1"]
    dW2 = np.round(A1.T @ np.array([[0.19], [0.19], [0.19], [0.20]]), 8)
    report = seed_002_with(f"dZ2 = [[0.19], [0.19], [0.19], [0.20]]\ndW2 = {dW2.tolist()!r}\n")
    dW2_ = report.claims["dW2"]
    assert report.claims["dZ2"].ok and not dW2_.ok
    assert (dW2_.error, dW2_.carried_from) == ("carried", ["dZ2"])
    assert dW2_.notes == ["dW2 is as right as the precision of dZ2 allows, but not at its own."]


def test_inputs_written_to_the_claims_own_precision_keep_their_rounding():
    # a notebook's print: dZ1 = dA1 (the sigmoid derivative left out) and what follows from the
    # unrounded dZ1, every tensor printed to 8 decimals (trailing zeros dropped, as Python prints)
    case = load_example("seed-002")
    dZ1 = np.asarray(truth()["dA1"])
    made = {"dZ1": dZ1, "dW1": case.X.T @ dZ1, "db1": dZ1.sum(0), "dX": dZ1 @ case.params["W1"].T}
    printed = {k: np.round(v, 8) for k, v in made.items()}
    # db1 from the printed dZ1 misses the printed db1 by more than half a unit in the 8th decimal
    assert np.abs(printed["db1"] - printed["dZ1"].sum(0)).max() > 5e-9
    report = seed_002_with("".join(f"{k} = {v.tolist()!r}\n" for k, v in printed.items()))
    assert report.own_errors == ["dZ1"]
    assert [f.mistake.id for f in report.claims["dZ1"].fits] == ["activation_derivative_missing"]
    assert {n: c.carried_from for n, c in report.claims.items() if c.error == "carried"} == {
        "dW1": ["dZ1"], "db1": ["dZ1"], "dX": ["dZ1"]}


# --- the shipped derivations keep their verdicts ---------------------------------------------------------

def test_seed_003_derivation_is_unchanged_by_reading_short_numbers_as_written():
    report = validate(load_example("seed-003-derivation"))
    assert report.own_errors == ["dZ1"]
    assert [f.mistake.id for f in report.claims["dZ1"].fits] == ["relu_mask_missing"]
    assert {n: c.carried_from for n, c in report.claims.items() if c.error == "carried"} == {
        "dW1": ["dZ1"], "db1": ["dZ1"], "dX": ["dZ1"], "W1_next": ["dW1"], "b1_next": ["db1"]}
    assert not any("read as exact" in n for c in report.claims.values() for n in c.notes)
