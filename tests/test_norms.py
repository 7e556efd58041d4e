"""Batch norm and layer norm, derived by hand: the engine against torch, JAX and finite differences, the
shipped derivation, the catalogue's norm mistakes, the layer check in the course's signature, and the refusals.

The student's derivations (``tests/student.py``) write the norm's backward in the long form (dvar, then
dmu, then dx), independently of the package's compact rule; the wrong ones are written here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from manual_backprop import InputError, Network, check, check_layer, load_example, make_case, run, validate
from manual_backprop.cli import main
from manual_backprop.description.convention import is_delta, kind
from manual_backprop.description.netfile import parse_case
from manual_backprop.engine import fast

from .student import claims_of, derive

pytest.importorskip("torch")
#: JAX is imported by the tests that name it, not at collection: the mutation tool runs the others alone.
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")

NETWORKS = {
    "batchnorm": dict(sizes=(3, 5, 4, 2), activations=("relu", "tanh", "identity"), loss="half_mse",
                      norms=("batchnorm", "none", "none")),
    "layernorm": dict(sizes=(4, 5, 3), activations=("sigmoid", "softmax"), loss="softmax_cross_entropy",
                      norms=("layernorm", "none")),
    "both": dict(sizes=(2, 4, 4, 1), activations=("tanh", "relu", "sigmoid"), loss="bce",
                 norms=("layernorm", "batchnorm", "none")),
}


def case_of(which, dtype="float64", seed=0, batch=6, **view):
    return make_case(Network(**NETWORKS[which], dtype=dtype), seed=seed, batch=batch, **view)


@needs_jax
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("which", list(NETWORKS))
def test_every_tensor_agrees_with_torch_jax_and_finite_differences(which, dtype, seed):
    case = case_of(which, dtype, seed)
    report = check(case, against=["torch", "jax", "fd"])
    assert report.ok, report.first_divergence
    for name in ("N1", "S1", "dS1", "dgamma1", "dbeta1", "dN1", "dZ1"):
        assert name in case.network.names()
        assert report.checks[name]["torch"].ok and report.checks[name]["jax"].ok


@needs_jax
def test_a_wrong_compact_rule_is_caught_at_dZ_by_every_reference(monkeypatch):
    from manual_backprop.kernels import normalization

    def constant_statistics(dN, N, inv_std, axis):  # the classic mistake, planted in the engine
        return dN * (inv_std if axis == 1 else inv_std[None, :])

    monkeypatch.setattr(normalization, "norm_dZ", constant_statistics)
    report = check(case_of("batchnorm"), against=["torch", "jax", "fd"])
    assert not report.ok and report.first_divergence == "dZ1"


@pytest.mark.parametrize("which", list(NETWORKS))
def test_the_engine_matches_the_students_long_form_derivation(which):
    case = case_of(which, seed=3)
    ours, theirs = run(case), derive(case)
    for name, value in theirs.items():
        if name in ours and name not in ("X", "Y"):
            np.testing.assert_allclose(ours[name], value, rtol=1e-12, atol=1e-14, err_msg=name)


def test_the_new_names_are_classified_for_the_layouts():
    assert [kind(n) for n in ("N1", "S1", "dN1", "dS1")] == ["batch"] * 4
    assert [kind(n) for n in ("gamma1", "beta1", "dgamma1", "dbeta1")] == ["bias"] * 4
    assert is_delta("dN1") and is_delta("dS1") and not is_delta("dgamma1") and not is_delta("N1")


@needs_jax
def test_the_column_layout_and_per_sample_deltas_check_the_same_network():
    report = check(case_of("batchnorm", layout="column", deltas="per_sample"), against=["torch", "jax"])
    assert report.ok, report.first_divergence


def test_a_file_without_norms_describes_the_same_network_as_before():
    case = load_example("seed-002")
    assert case.network.norms == ("none", "none") and not case.network.has_norm
    assert case.network == Network((2, 3, 1), ("sigmoid", "identity"), "half_mse")
    assert "eps" not in case.network.describe()


NET_FILE = """
[network]
sizes = [2, 3, 1]
activations = ["relu", "identity"]
loss = "half_mse"
{norms}
"""


@pytest.mark.parametrize("line, message", [
    ('norms = ["batchnorm"]', "2 Linear layer(s) need 2 norm(s)"),
    ('norms = ["groupnorm", "none"]', "unknown norm 'groupnorm' for layer 1"),
    ('norms = ["none", "batchnorm"]', "a norm on the output layer"),
    ('norms = "batchnorm"', "norms must be a list of names"),
    ('norms = ["batchnorm", "none"]\neps = -1.0', "eps must be a finite number >= 0"),
])
def test_a_wrong_norms_key_is_one_clear_line(line, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_case(NET_FILE.format(norms=line), "net.toml")


def test_gamma_and_beta_default_to_one_and_zero_when_the_weights_are_given():
    text = NET_FILE.format(norms='norms = ["layernorm", "none"]') + """
[parameters]
W1 = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]
b1 = [0.0, 0.1, 0.2]
W2 = [[0.1], [0.2], [0.3]]
b2 = [0.0]
"""
    case = parse_case(text, "net.toml")
    np.testing.assert_array_equal(case.params["gamma1"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(case.params["beta1"], [0.0, 0.0, 0.0])
    drawn = case_of("layernorm").params["gamma1"]
    assert not np.all(drawn == 1.0)  # drawn from the seed when the seed draws everything


# --- the refusals --------------------------------------------------------------------------------

def test_batch_norm_on_a_batch_of_one_is_refused_in_the_file_inline_and_python(capsys):
    one = NET_FILE.format(norms='norms = ["batchnorm", "none"]') + "[data]\nX = [[1.0, 2.0]]\nY = [[0.5]]\n"
    with pytest.raises(InputError, match="batch of one"):
        parse_case(one, "net.toml")
    with pytest.raises(InputError, match="batch of one"):
        make_case(Network(**NETWORKS["batchnorm"]), batch=1)
    assert main(["check", "--sizes", "2,3,1", "--activations", "relu,identity", "--loss", "half_mse",
                 "--norms", "batchnorm,none", "--batch", "1"]) == 2
    err = capsys.readouterr().err
    assert "variance" in err and len(err.strip().splitlines()) == 1
    make_case(Network(**NETWORKS["layernorm"]), batch=1)  # layer norm normalises each sample alone: fine


@needs_jax
def test_per_sample_gradients_are_refused_with_batch_norm_and_checked_with_layer_norm(capsys):
    assert main(["check", "--example", "seed-004-batchnorm", "--per-sample"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not defined with batch norm" in err
    report = check(case_of("layernorm"), against=["torch", "jax"], per_sample=True)
    assert report.ok and "dW1_per_sample" in report.checks


def test_the_fast_engine_refuses_a_normalised_network_instead_of_leaving_the_norm_out():
    case = case_of("batchnorm")
    with pytest.raises(InputError, match="fast engine has no norms"):
        fast.Workspace(case.network, case.batch)
    with pytest.raises(InputError, match="fast engine has no norms"):
        fast.value_and_grad(case.network, case.params, case.X, case.T)


def test_whole_network_code_on_a_normalised_network_is_refused_with_one_line():
    from manual_backprop.testing import check_network

    with pytest.raises(InputError, match="not checked as whole-network code yet"):
        check_network(lambda params, X, Y: {}, "seed-004-batchnorm")


def test_an_optimiser_step_on_a_normalised_network_is_refused():
    with pytest.raises(InputError, match="optimiser step"):
        check(case_of("batchnorm"), learning_rate=0.1)


# --- the shipped example, and train -------------------------------------------------------------

def test_the_shipped_batchnorm_network_checks(capsys):
    code, out = main(["check", "--example", "seed-004-batchnorm", "--json"]), capsys.readouterr().out
    assert code == 0 and json.loads(out)["ok"]


def test_train_learns_seed_004_with_batch_norm_through_the_checking_engine(capsys, tmp_path):
    code = main(["train", "--example", "seed-004-batchnorm", "--steps", "300", "--no-plots", "--json",
                 "--check-every", "100"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["ok"] and result["held_out_accuracy"] > 0.9


# --- validate: the shipped derivation, written independently --------------------------------------

def test_the_shipped_derivation_holds_the_numbers_an_independent_derivation_gives():
    case = load_example("batchnorm-derivation")
    inv_std = 1 / np.sqrt(derive(case)["Z1"].var(axis=0) + 1e-5)
    wrong = derive(case, {"dZ1": lambda t, c: t["dN1"] * inv_std})  # mean and var as constants
    for name, claim in case.claimed.items():
        np.testing.assert_allclose(claim.value, wrong[name], atol=0.6e-8, err_msg=name)


def test_validate_names_the_constant_statistics_at_dZ1_and_carries_the_rest():
    report = validate(load_example("batchnorm-derivation"))
    assert report.first_wrong == "dZ1" and report.own_errors == ["dZ1"]
    assert [f.mistake.id for f in report.claims["dZ1"].fits] == ["norm_statistics_constant"]
    assert sorted(report.carried_errors) == ["dW1", "dX", "db1"]


def test_a_right_derivation_of_a_layer_norm_network_is_all_right():
    case = case_of("both", seed=4)
    assert validate(dataclasses.replace(case, claimed=claims_of(derive(case)))).ok


# --- check_layer in the course's signature -------------------------------------------------------

def batchnorm_forward(x, gamma, beta, bn_param):
    eps = bn_param.get("eps", 1e-5)
    mu, var = x.mean(axis=0), x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (x, xhat, gamma, mu, var, eps)


def batchnorm_backward(dout, cache):  # the course's staged backward: dvar, dmu, dx
    x, xhat, gamma, mu, var, eps = cache
    N = x.shape[0]
    dxhat = dout * gamma
    dvar = (dxhat * (x - mu)).sum(axis=0) * -0.5 * (var + eps) ** -1.5
    dmu = -(dxhat / np.sqrt(var + eps)).sum(axis=0) + dvar * (-2 * (x - mu)).mean(axis=0)
    dx = dxhat / np.sqrt(var + eps) + dvar * 2 * (x - mu) / N + dmu / N
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def batchnorm_backward_constant_statistics(dout, cache):
    x, xhat, gamma, mu, var, eps = cache
    return dout * gamma / np.sqrt(var + eps), (dout * xhat).sum(axis=0), dout.sum(axis=0)


def test_check_layer_takes_the_course_batchnorm_pair_unchanged():
    report = check_layer(batchnorm_forward, batchnorm_backward, "batchnorm")
    assert report.ok, report.message()
    assert report.form == "forward(x, gamma, beta, bn_param)"


def test_check_layer_names_the_constant_statistics_in_a_course_batchnorm_backward():
    report = check_layer(batchnorm_forward, batchnorm_backward_constant_statistics, "batchnorm")
    assert not report.ok and report.first_wrong == "dx"
    assert "treated as constants" in report.message()


def test_check_layer_takes_linear_batchnorm_relu_as_a_params_pair():
    def forward(x, p):
        z = x @ p["W"] + p["b"]
        s, cache = batchnorm_forward(z, p["gamma"], p["beta"], {"mode": "train"})
        return np.maximum(s, 0), (x, p["W"], s, cache)

    def backward(dout, cache):
        x, W, s, bn = cache
        dz, dgamma, dbeta = batchnorm_backward(dout * (s > 0), bn)
        return {"x": dz @ W.T, "W": x.T @ dz, "b": dz.sum(axis=0), "gamma": dgamma, "beta": dbeta}

    report = check_layer(forward, backward, "linear+batchnorm+relu")
    assert report.ok, report.message()


def test_check_layer_checks_layernorm_and_refuses_batchnorm_on_one_sample():
    def forward(x, gamma, beta, ln_param):
        mu, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
        xhat = (x - mu) / np.sqrt(var + ln_param["eps"])
        return gamma * xhat + beta, (xhat, gamma, var, ln_param["eps"])

    def backward(dout, cache):
        xhat, gamma, var, eps = cache
        D = dout.shape[1]
        dxhat = dout * gamma
        dx = (D * dxhat - dxhat.sum(1, keepdims=True) - xhat * (dxhat * xhat).sum(1, keepdims=True)) \
            / (D * np.sqrt(var + eps))
        return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)

    assert check_layer(forward, backward, "layernorm").ok
    with pytest.raises(InputError, match="batch of one"):
        check_layer(batchnorm_forward, batchnorm_backward, "batchnorm", batch=1)
