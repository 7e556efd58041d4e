"""dA_L through a fused loss: the derivative a derivation from dL/dŷ writes, checked and validated.

For bce and softmax cross-entropy the trace holds ``dAL``, the loss differentiated as a
function of A_L (bce ``c·(−Y/A + (1−Y)/(1−A))``, CE ``−c·Y/A``), while backprop goes on
from the fused ``dZL = c·(AL − Y)``. torch and JAX differentiate the loss written from A_L,
finite differences difference it; a student may claim it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import manual_backprop
from manual_backprop import check, load_example, make_case, validate
from manual_backprop.cli import main
from manual_backprop.engine.trace import run
from manual_backprop.kernels import ACTIVATIONS

from .helpers import case_of, torch_ref
from .student import claims_of, derive

FUSED = [  # sizes, activations, loss, reduction, batch, seed
    ((3, 5, 2), ("tanh", "sigmoid"), "bce", "mean", 6, 1),
    ((4, 3, 1), ("relu", "sigmoid"), "bce", "sum", 5, 2),
    ((3, 6, 4), ("relu", "softmax"), "softmax_cross_entropy", "mean", 7, 3),
    ((2, 3), ("softmax",), "softmax_cross_entropy", "sum", 4, 4),
]


def fused_case(i, dtype="float64"):
    sizes, acts, loss, reduction, batch, seed = FUSED[i]
    return case_of(sizes, acts, loss, reduction=reduction, dtype=dtype, batch=batch, seed=seed)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("i", range(len(FUSED)))
def test_check_judges_dAL_of_a_fused_loss_against_torch_jax_and_fd(i, dtype):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    case = fused_case(i, dtype)
    name = f"dA{case.network.depth}"
    report = check(case)
    assert report.ok, report.failing
    assert name in report.order and not report.left_out
    checks = report.checks[name]
    assert checks["torch"].ok and checks["torch"].judged
    assert checks["jax"].ok and checks["jax"].judged
    assert checks["fd"].ok, checks["fd"].note  # judged, or not judged with its reason
    assert checks["fd"].judged or checks["fd"].note


@pytest.mark.parametrize("i", range(len(FUSED)))
def test_the_activation_backward_of_dAL_is_the_fused_dZL(i):
    case = fused_case(i)
    L = case.network.depth
    trace = run(case)
    act = ACTIVATIONS[case.network.activations[-1]]
    dZ = act.backward(trace[f"dA{L}"], trace[f"Z{L}"], trace[f"A{L}"])
    np.testing.assert_allclose(dZ, trace[f"dZ{L}"], rtol=1e-12, atol=1e-15)


def test_dAL_is_the_textbook_formula_on_torch_s_own_output():
    torch = pytest.importorskip("torch")
    case = fused_case(0)
    A = torch_ref().run(case)["A2"]
    # bce, mean over N·K = 6·2 entries: dA = −(1/12)(Y/A − (1−Y)/(1−A))
    np.testing.assert_allclose(run(case)["dA2"], -(case.Y / A - (1 - case.Y) / (1 - A)) / 12, rtol=1e-13)
    del torch


def saturated_case():
    # Z1 = X @ W1 = [3, 5, 40]: the third output is 1.0 exactly in float64 (1 − σ(40) = 4e-18 < u/2),
    # with Y = 0 there, so dL/dA1 = (1 − Y)/(1 − A1) is infinite
    from manual_backprop import Network

    net = Network((2, 1), ("sigmoid",), "bce")
    params = {"W1": np.array([[10.0], [10.0]]), "b1": np.array([0.0])}
    X = np.array([[0.1, 0.2], [0.3, 0.2], [2.0, 2.0]])
    Y = np.array([[1.0], [0.0], [0.0]])
    return make_case(net, params, X, Y)


def test_a_saturated_output_leaves_dAL_out_of_check_with_a_notice():
    report = check(saturated_case(), against=["fd"])
    why = "A1 is exactly 1.0 in float64 at index [2, 0] (Z1 = 40.0), where dL/dA1 is infinite"
    assert report.left_out == {"dA1": why}
    assert "dA1" not in report.order and "dA1" not in report.not_judged and "dA1" not in report.checks
    assert any(why in n and "left out" in n for n in report.notices)
    assert report.to_json()["left_out"] == {"dA1": why}
    assert report.ok  # the fused dZ1 and everything after it are judged


def test_validate_refuses_a_claimed_dAL_where_the_output_is_saturated(tmp_path, capsys):
    path = tmp_path / "net.toml"
    path.write_text(
        '[network]\nsizes = [2, 1]\nactivations = ["sigmoid"]\nloss = "bce"\n'
        "[parameters]\nW1 = [[10.0], [10.0]]\nb1 = [0.0]\n"
        "[data]\nX = [[0.1, 0.2], [0.3, 0.2], [2.0, 2.0]]\nY = [[1.0], [0.0], [0.0]]\n"
        "[claimed]\ndA1 = [[-0.3], [0.3], [1.0]]\n")
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().endswith(
        "net.toml: [claimed] dA1 cannot be judged: A1 is exactly 1.0 in float64 at index [2, 0] (Z1 = 40.0), "
        "where dL/dA1 is infinite; claim dZ1 instead")
    assert len(err.strip().splitlines()) == 1


def seed_004():
    return load_example("seed-004")


def test_seed_004_derived_from_dL_dyhat_is_right():
    pytest.importorskip("torch")
    case = seed_004()
    # seed 004 prints formulas, no numbers: ŷ comes from torch, dL/dŷ from the seed's own first line,
    # dL/dŷ = −(1/N)(y/ŷ − (1−y)/(1−ŷ)), N = 8
    yhat = torch_ref().run(case)["A3"]
    dA3 = -(case.Y / yhat - (1 - case.Y) / (1 - yhat)) / 8
    t = derive(case, from_dA=True)
    np.testing.assert_allclose(t["dA3"], dA3, rtol=1e-12)
    report = validate(dataclasses.replace(case, claimed=claims_of(t)))
    assert report.ok, report.first_wrong
    assert "dA3" in report.claims and report.claims["dA3"].check.ok


def validated(case, wrong):
    return validate(dataclasses.replace(case, claimed=claims_of(derive(case, wrong, from_dA=True))))


@pytest.mark.parametrize("mistake, wrong", [
    # seed 004, c = 1/8 (N = 8, K = 1)
    ("flipped_sign", lambda t, c: (c.Y / t["A3"] - (1 - c.Y) / (1 - t["A3"])) / 8),
    ("missing_1_over_N", lambda t, c: -(c.Y / t["A3"] - (1 - c.Y) / (1 - t["A3"]))),
    ("bce_second_term_missing", lambda t, c: -(c.Y / t["A3"]) / 8),
])
def test_each_slip_of_dL_dyhat_is_caught_named_alone_and_dZ3_carries_it(mistake, wrong):
    report = validated(seed_004(), {"dA3": wrong})
    assert report.first_wrong == "dA3" and report.own_errors == ["dA3"]
    ids = [f.mistake.id for f in report.claims["dA3"].fits]
    # N times dL/dA3 are also the numbers of the per-sample delta convention (deltas = "per_sample"),
    # which that mistake names alongside: the same numbers, two readings
    assert ids == [mistake] or (mistake == "missing_1_over_N" and set(ids) == {mistake, "deltas_other_placement"})
    assert report.claims["dZ3"].error == "carried"


def test_the_cross_entropy_dAL_slips_are_named_too():
    case = case_of((3, 4, 3), ("tanh", "softmax"), "softmax_cross_entropy", batch=5, seed=1)
    Y = np.eye(3)[case.T] if case.T.ndim == 1 else case.T
    report = validated(case, {"dA2": lambda t, c: Y / t["A2"] / 5})  # the sign flipped, c = 1/5
    assert report.own_errors == ["dA2"] and [f.mistake.id for f in report.claims["dA2"].fits] == ["flipped_sign"]
    assert report.claims["dZ2"].error == "carried"


def test_the_formula_reads_as_a_person_writes_it():
    from manual_backprop.validation.steps import derivation_steps

    case = seed_004()
    claimed = dataclasses.replace(case, claimed=claims_of(derive(case, from_dA=True), ["dA3"]))
    steps = derivation_steps(claimed)
    assert steps["dA3"].formula == "dA3 = −(Y/A3 − (1−Y)/(1−A3)) / (N·K)"
    assert steps["dZ3"].kind == "activation_backward" and steps["dZ3"].inputs == ("dA3", "Z3", "A3")
    assert derivation_steps(case)["dZ3"].kind == "loss_gradient"  # dA3 not claimed: the fused step


def test_the_seed_004_example_file_exists():
    assert (Path(manual_backprop.__file__).parent / "examples" / "seed-004.toml").exists()


def test_the_unfused_kernels_give_the_arithmetic_values():
    # bce at Z = 0 (A = 1/2): dL/dA of -[T log A + (1-T) log(1-A)] is -T/A + (1-T)/(1-A) = -2T + 2(1-T),
    # so T = 1 -> -2, T = 0 -> 2, T = 1/4 -> -1/2 + 3/2 = 1; at Z = ln 3 (A = 3/4), T = 1 -> -4/3, T = 0 -> 4.
    from manual_backprop.kernels import LOSSES

    bce = LOSSES["bce"]
    Z = np.array([[0.0, 0.0, 0.0], [np.log(3), np.log(3), 0.0]])
    A = 1 / (1 + np.exp(-Z))
    T = np.array([[1.0, 0.0, 0.25], [1.0, 0.0, 1.0]])
    np.testing.assert_allclose(bce.unfused_grad(Z, A, T), [[-2, 2, 1], [-4 / 3, 4, -2]], rtol=1e-14)
    # mean over N·K = 6 entries: c = 1/6
    np.testing.assert_allclose(bce.unfused_gradient(Z, A, T, "mean"), np.array([[-2, 2, 1], [-4 / 3, 4, -2]]) / 6,
                               rtol=1e-14)
    # saturated logits: at Z = 800, e^Z is Inf, yet T = 1 leaves only -T/A = -(1 + e^-800) = -1; at Z = -800 with
    # T = 0 only (1-T)/(1-A) = 1 + e^-800 = 1 is left: a term of weight 0 is 0, never 0 * Inf = NaN
    Z = np.array([[800.0, -800.0]])
    with np.errstate(over="ignore"):
        A = 1 / (1 + np.exp(-Z))
    np.testing.assert_array_equal(bce.unfused_grad(Z, A, np.array([[1.0, 0.0]])), [[-1.0, 1.0]])
    # softmax CE: Z = [0, ln 3] -> A = [1/4, 3/4]; dL/dA = -T/A: label 1 -> [0, -4/3], label 0 -> [-4, 0],
    # the probability row [1/2, 1/2] -> [-2, -2/3]; three rows, two classes
    ce = LOSSES["softmax_cross_entropy"]
    Z = np.array([[0.0, np.log(3)]] * 3) + np.array([[0.0], [5.0], [-2.0]])  # a shift per row changes no A
    A = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ce.unfused_grad(Z, A, np.array([1, 0, 1])), [[0, -4 / 3], [-4, 0], [0, -4 / 3]],
                               rtol=1e-14)
    T = np.array([[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(ce.unfused_grad(Z, A, T), [[-2, -2 / 3], [0, -4 / 3], [-4, 0]], rtol=1e-14)
