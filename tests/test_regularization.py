"""L2 regularisation through the whole tool: the engine, both references, finite differences, the
tolerance, validate, the file and the command line.

The course's two-layer test network (5-50-7, ReLU, softmax cross-entropy, mean; weights, biases and
inputs from ``np.linspace``, labels [0, 5, 1]) publishes its loss: 3.4702243556 without
regularisation, 26.5948426952 with ``reg = 1.0`` (½λΣW²); its port publishes 49.719461034881775
(λΣW²). Everything else is judged against torch autograd and JAX on the penalty written as maths.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from manual_backprop import Network, check, make_case, parse_case, run, validate
from manual_backprop.cli import main
from manual_backprop.engine import fast
from manual_backprop.engine.accumulate import full_batch_gradient
from manual_backprop.kernels import regularization

N, D, H, C = 3, 5, 50, 7
COURSE_PARAMS = {
    "W1": np.linspace(-0.7, 0.3, num=D * H).reshape(D, H), "b1": np.linspace(-0.1, 0.9, num=H),
    "W2": np.linspace(-0.3, 0.4, num=H * C).reshape(H, C), "b2": np.linspace(-0.9, 0.1, num=C),
}
COURSE_X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
COURSE_Y = np.array([0, 5, 1])


def course(l2: float, convention: str = "half"):
    net = Network((D, H, C), ("relu", "softmax"), "softmax_cross_entropy", l2=l2, l2_convention=convention)
    return make_case(net, COURSE_PARAMS, COURSE_X, COURSE_Y)


@pytest.mark.parametrize("convention, published", [("half", 26.5948426952), ("full", 49.719461034881775)])
def test_the_course_network_gives_its_published_regularised_loss(convention, published):
    trace = run(course(1.0, convention))
    assert abs(float(trace["L_data"]) - 3.4702243556) <= 5e-11
    assert abs(float(trace["L"]) - published) <= 1e-10
    assert float(trace["L"]) == float(trace["L_data"]) + float(trace["L_reg"])


def test_the_course_network_with_l2_agrees_with_torch_jax_and_finite_differences():
    report = check(course(1.0), against=["torch", "jax", "fd"])
    assert report.ok, report.message()
    assert {"L_data", "L_reg", "L"} <= set(report.checks)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("convention, biases", [("half", False), ("full", False), ("half", True), ("full", True)])
@pytest.mark.parametrize("seed", range(2))
def test_random_regularised_networks_agree_with_both_frameworks(dtype, convention, biases, seed):
    rng = np.random.default_rng(seed)
    sizes = tuple(int(n) for n in rng.integers(2, 7, size=3))
    net = Network(sizes, ("tanh", "sigmoid"), "bce", dtype=dtype, l2=float(rng.uniform(0.01, 2.0)),
                  l2_convention=convention, l2_biases=biases)
    report = check(make_case(net, seed=seed, batch=5), against=["torch", "jax"], per_sample=True, learning_rate=0.1)
    assert report.ok, report.message()
    for name in ("dW1", "db1", "W1_next", "L_reg"):
        assert all(c.status == "ok" for c in report.checks[name].values()), name


@pytest.mark.parametrize("biases", [False, True])
def test_the_penalty_reaches_every_gradient_it_covers_as_torch_says(biases):
    net = Network((3, 4, 2), ("tanh", "identity"), "mse", l2=0.7, l2_convention="full", l2_biases=biases)
    report = check(make_case(net, batch=4), against=["torch"])
    assert report.ok, report.message()
    assert all(report.checks[n]["torch"].status == "ok" for n in ("L_reg", "L", "dW1", "db1", "dW2", "db2"))


def test_the_penalty_gradient_with_the_wrong_factor_is_caught(monkeypatch):
    # Planted: the "full" gradient written as λW (the half convention's) instead of 2λW.
    right = regularization.l2_gradient
    monkeypatch.setattr("manual_backprop.engine.trace.l2_gradient",
                        lambda W, lam, convention="half": right(W, lam, "half"))
    net = Network((3, 4, 2), ("relu", "identity"), "mse", l2=0.5, l2_convention="full")
    report = check(make_case(net, batch=4), against=["torch", "jax", "fd"])
    assert not report.ok and report.first_divergence == "dW2"
    assert all(report.checks[n][r].status == "fail" for n in ("dW2", "dW1") for r in ("torch", "jax"))
    assert report.checks["db2"]["torch"].status == "ok"  # biases are not covered: unaffected


@pytest.mark.parametrize("biases", [False, True])
def test_the_fast_engine_adds_the_same_penalty(biases):
    # the engine's trace is checked against torch and JAX above; the fast engine must give the same numbers
    case = course(1.0, "full")
    case = dataclasses.replace(case, network=dataclasses.replace(case.network, l2_biases=biases))
    trace = run(case)
    assert float(trace["L"]) != float(trace["L_data"])
    L, grads = fast.value_and_grad(case.network, case.params, case.X, case.T)
    assert abs(float(L) - float(trace["L"])) <= 1e-13 * abs(float(trace["L"]))
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(grads[name], trace[f"d{name}"], rtol=1e-12, atol=1e-14)


def test_accumulated_micro_batches_add_the_penalty_once():
    net = Network((3, 4, 2), ("tanh", "identity"), "half_mse", l2=0.3)
    case = make_case(net, batch=6)
    full = run(case)
    acc = full_batch_gradient(case, 2)
    for name in ("dW1", "db1", "dW2", "db2"):
        np.testing.assert_allclose(acc[name], full[name], rtol=1e-12, atol=1e-15)


def test_validate_judges_the_regularised_loss_and_names_the_l2_step(tmp_path):
    case = course(1.0)
    truth = run(case)
    claims = {"L": np.asarray(26.5948426952), "dW2": truth["dW2"]}
    # the course's 10 decimals as a written claim, through a file, is right at that precision
    text = f"""
[network]
sizes = [{D}, {H}, {C}]
activations = ["relu", "softmax"]
loss = "softmax_cross_entropy"
[regularization]
l2 = 1.0
[parameters]
W1 = {COURSE_PARAMS["W1"].tolist()}
b1 = {COURSE_PARAMS["b1"].tolist()}
W2 = {COURSE_PARAMS["W2"].tolist()}
b2 = {COURSE_PARAMS["b2"].tolist()}
[data]
X = {COURSE_X.tolist()}
Y = {COURSE_Y.tolist()}
[claimed]
L = 26.5948426952
"""
    assert validate(parse_case(text, "course.toml")).ok
    # the port's full-convention loss claimed under "half" is wrong
    wrong = validate(parse_case(text.replace("26.5948426952", "49.719461034881775"), "course.toml"))
    assert not wrong.ok and wrong.first_wrong == "L"
    # ... and the catalogue says why: the penalty (not written down) taken with the other convention
    assert [f.mistake.id for f in wrong.claims["L"].fits] == ["l2_other_convention"]
    assert "uses λΣ‖W‖², gradient 2λW; this network's convention is half" in wrong.claims["L"].diagnosis
    # dW2 without its λW2 is dW2's own error, and the rule shown says what was left out
    claims["dW2"] = truth["dW2"] - COURSE_PARAMS["W2"]
    report = validate(dataclasses.replace(case, claimed=make_case(case.network, COURSE_PARAMS, COURSE_X, COURSE_Y,
                                                                  claimed=claims).claimed))
    assert not report.claims["dW2"].ok
    assert report.steps["dW2"].formula == "dW2 = A1.T @ dZ2 + 1·W2"


def test_check_takes_l2_inline_and_refuses_a_bad_one(capsys):
    code = main(["check", "--sizes", "3,4,2", "--activations", "relu,softmax", "--loss", "softmax_cross_entropy",
                 "--l2", "0.3", "--l2-convention", "full", "--against", "torch", "--json"])
    assert code == 0
    assert '"L_reg"' in capsys.readouterr().out
    assert main(["check", "--l2", "-1"]) == 2
    assert capsys.readouterr().err.startswith("manual-backprop: --l2 must be a finite number >= 0")


def test_an_overflowing_penalty_is_an_input_error_not_a_failure(capsys):
    text = """
[network]
sizes = [2, 1]
activations = ["identity"]
loss = "half_mse"
[regularization]
l2 = 1.0
[parameters]
W1 = [[1e200], [0.0]]
b1 = [0.0]
[data]
X = [[0.0, 0.0]]
Y = [[0.0]]
"""
    case = parse_case(text, "big.toml")  # X = 0: every value is finite but L_reg = ½ (1e200)² = 5e399
    with pytest.raises(Exception, match=r"the values overflow float64: L_reg is Inf \(the L2 penalty"):
        check(case, against=["torch"])


def test_the_shipped_course_file_agrees_with_the_frameworks_and_its_claim_is_named():
    from pathlib import Path

    from manual_backprop import load_case

    case = load_case(Path(__file__).resolve().parent.parent / "examples" / "course_l2.toml")
    assert check(case, against=["torch", "jax"]).ok
    report = validate(case)
    assert report.first_wrong == "L" and [f.mistake.id for f in report.claims["L"].fits] == ["l2_other_convention"]
