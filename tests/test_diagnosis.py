"""Every classic mistake in the catalogue, made by a student, is caught, located and named.

Each derivation below is written by ``tests/student.py`` with one step done
the wrong way, as the mistake's lambda says (written here, not taken from
the package), and every tensor is claimed to 8 decimals. ``validate`` must
find the claims wrong, name the mistaken step as the first wrong claim, call
its error its own, and name exactly that mistake; the steps after it are
carried.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from manual_backprop import validate
from manual_backprop.kernels import ACTIVATIONS
from manual_backprop.kernels.activations import Activation
from manual_backprop.validation.mistakes import BY_ID

from .helpers import case_of, with_kinks
from .student import claims_of, derive

RELU = dict(sizes=(4, 5, 3), activations=("relu", "identity"), loss="half_mse", seed=3)  # N = 6
SIGMOID = dict(sizes=(3, 4, 2), activations=("sigmoid", "identity"), loss="half_mse", batch=5, seed=1)
SQUARE = dict(sizes=(3, 3, 3), activations=("sigmoid", "identity"), loss="half_mse", batch=5, seed=1)


def relu_net():
    return case_of(**RELU)


def relu_net_with_a_step():
    return dataclasses.replace(relu_net(), learning_rate=0.3)


def sigmoid_net():
    return case_of(**SIGMOID)


def square_net():
    return case_of(**SQUARE)


def l2_net(convention="half", biases=False):
    return case_of((3, 4, 2), ("tanh", "identity"), "half_mse", batch=5, seed=1, l2=0.3,
                   l2_convention=convention, l2_biases=biases)


def stepping(rule, t=0, **constants):
    """The sigmoid network with one step of ``rule`` from a small non-zero state (t steps already taken)."""
    from manual_backprop.description.optimizer import OptimizerStep
    from manual_backprop.kernels import OPTIMIZERS

    def make():
        case = sigmoid_net()
        opt = OPTIMIZERS[rule]
        rng = np.random.default_rng(7)
        state = {f"{s}{p}": np.abs(rng.standard_normal(v.shape)) * 0.1 for s in opt.state for p, v in case.params.items()}
        step = OptimizerStep(rule, 0.2, {**opt.constants, **constants}, t, state)
        return dataclasses.replace(case, optimizer=step)
    return make


def batchnorm_net(eps=1e-5):
    """3-4-2, batch norm before a tanh, batch 4: as wide as the batch (dgamma over the wrong axis fits)."""
    return case_of((3, 4, 2), ("tanh", "identity"), "half_mse", batch=4, seed=2, norms=("batchnorm", "none"),
                   eps=eps)


def layernorm_net():
    return case_of((3, 5, 2), ("sigmoid", "identity"), "half_mse", batch=4, seed=3, norms=("layernorm", "none"))


def _normalised(Z, axis, eps, m_minus_1=False, eps_outside=False):
    """x̂ as a student writes it, over ``axis``: with Bessel's m - 1, or with eps outside the root if asked."""
    mu = Z.mean(axis=axis, keepdims=True)
    var = ((Z - mu) ** 2).sum(axis=axis, keepdims=True) / (Z.shape[axis] - (1 if m_minus_1 else 0))
    return (Z - mu) / (np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps))


def two_relu_layers_of_equal_width():
    return case_of((3, 4, 4, 2), ("relu", "relu", "identity"), "half_mse", batch=5, seed=2)


# mistake id: (the network, the wrong step as the student writes it, the step named first)
MADE = {
    "relu_mask_missing": (relu_net, {"dZ1": lambda t, c: t["dA1"]}, "dZ1"),
    "relu_mask_at_zero": (lambda: with_kinks(relu_net()), {"dZ1": lambda t, c: t["dA1"] * (t["Z1"] >= 0)}, "dZ1"),
    "relu_mask_from_gradient": (relu_net, {"dZ1": lambda t, c: np.maximum(t["dA1"], 0)}, "dZ1"),
    "relu_mask_of_another_layer": (two_relu_layers_of_equal_width,
                                   {"dZ1": lambda t, c: t["dA1"] * (t["Z2"] > 0)}, "dZ1"),
    "relu_mask_on_dA": (relu_net, {"dA1": lambda t, c: (t["dZ2"] @ c.params["W2"].T) * (t["Z1"] > 0)}, "dA1"),
    "sigmoid_derivative_from_Z": (sigmoid_net, {"dZ1": lambda t, c: t["dA1"] * t["Z1"] * (1 - t["Z1"])}, "dZ1"),
    "sigmoid_derivative_twice": (sigmoid_net, {"dZ1": lambda t, c: t["dA1"] * (t["A1"] * (1 - t["A1"])) ** 2}, "dZ1"),
    "tanh_derivative_from_Z": (lambda: case_of((3, 4, 2), ("tanh", "identity"), "half_mse", batch=5, seed=1),
                               {"dZ1": lambda t, c: t["dA1"] * (1 - t["Z1"] ** 2)}, "dZ1"),
    "activation_derivative_missing": (sigmoid_net, {"dZ1": lambda t, c: t["dA1"]}, "dZ1"),
    "softmax_elementwise_derivative": (lambda: case_of((3, 4, 3), ("tanh", "softmax"), "half_mse", batch=5, seed=4),
                                       {"dZ2": lambda t, c: t["dA2"] * t["A2"] * (1 - t["A2"])}, "dZ2"),
    "forward_transposed_weights": (square_net, {"Z1": lambda t, c: t["X"] @ c.params["W1"].T + c.params["b1"]}, "Z1"),
    "forward_bias_missing": (sigmoid_net, {"Z1": lambda t, c: t["X"] @ c.params["W1"]}, "Z1"),
    "forward_weights_of_another_layer": (
        lambda: case_of((3, 3, 3, 2), ("tanh", "tanh", "identity"), "half_mse", batch=5, seed=6),
        {"Z2": lambda t, c: t["A1"] @ c.params["W1"] + c.params["b2"]}, "Z2"),
    "forward_other_sample": (sigmoid_net, {"Z1": lambda t, c: t["X"][[0] * 5] @ c.params["W1"] + c.params["b1"]}, "Z1"),
    "activation_missing": (sigmoid_net, {"A1": lambda t, c: t["Z1"]}, "A1"),
    # the course's placement (dZ summed over samples) in a file that declares gradients: N = 6 times dZ1
    "deltas_other_placement": (relu_net, {"dZ1": lambda t, c: 6 * t["dA1"] * (t["Z1"] > 0)}, "dZ1"),
    # (at dA2 the same numbers are the per-sample convention too: tested on its own below)
    "missing_1_over_N": (relu_net, {"L": lambda t, c: 0.5 * ((t["A2"] - c.Y) ** 2).sum()}, "L"),
    "extra_1_over_N": (relu_net, {"dW2": lambda t, c: t["A1"].T @ t["dZ2"] / 6}, "dW2"),
    "half_mse_vs_mse": (relu_net, {"dA2": lambda t, c: 2 * (t["A2"] - c.Y) / 6}, "dA2"),
    "flipped_sign": (relu_net, {"dA2": lambda t, c: (c.Y - t["A2"]) / 6}, "dA2"),
    # bce from dL/dŷ (N = 6, K = 1: c = 1/6), the y/ŷ term alone
    "bce_second_term_missing": (lambda: case_of((3, 4, 1), ("tanh", "sigmoid"), "bce", batch=6, seed=2),
                                {"dA2": lambda t, c: -(c.Y / t["A2"]) / 6}, "dA2"),
    "cross_entropy_without_Y": (lambda: case_of((3, 4, 3), ("tanh", "softmax"), "softmax_cross_entropy", batch=5,
                                                seed=2),
                                {"dZ2": lambda t, c: t["A2"] / 5}, "dZ2"),
    "transposed_weight_gradient": (relu_net, {"dW2": lambda t, c: t["dZ2"].T @ t["A1"]}, "dW2"),
    "weight_gradient_from_Z": (relu_net, {"dW2": lambda t, c: t["Z1"].T @ t["dZ2"]}, "dW2"),
    "db_wrong_axis": (lambda: case_of((3, 4, 4), ("sigmoid", "identity"), "half_mse", batch=4, seed=5),
                      {"db2": lambda t, c: t["dZ2"].sum(axis=1)}, "db2"),
    "transposed_product": (square_net, {"dA1": lambda t, c: t["dZ2"] @ c.params["W2"]}, "dA1"),
    "transposed_layout": None,  # a claim written transposed, not a derivation made so: tested on its own below
    "sgd_ascent": (relu_net_with_a_step, {"W1_next": lambda t, c: c.params["W1"] + 0.3 * t["dW1"]}, "W1_next"),
    "sgd_learning_rate_missing": (relu_net_with_a_step, {"W1_next": lambda t, c: c.params["W1"] - t["dW1"]}, "W1_next"),
    # L2 (λ = 0.3, "half": ½λΣW², gradient λW): each written as the student gets it wrong
    "l2_other_convention": (l2_net, {"dW2": lambda t, c: t["A1"].T @ t["dZ2"] + 2 * 0.3 * c.params["W2"]}, "dW2"),
    "l2_gradient_missing": (l2_net, {"dW1": lambda t, c: t["X"].T @ t["dZ1"]}, "dW1"),
    "l2_biases_regularized": (l2_net, {"db2": lambda t, c: t["dZ2"].sum(axis=0) + 0.3 * c.params["b2"]}, "db2"),
    "l2_penalty_missing_from_loss": (l2_net, {"L": lambda t, c: t["L_data"]}, "L"),
    # optimiser steps (lr = 0.2; Adam after t = 2 steps): the student's step written wrong
    "adam_counter_not_incremented": (stepping("adam", t=2), {"W1_next": lambda t, c: c.params["W1"] - 0.2 * (
        t["mW1_next"] / (1 - 0.9 ** 2)) / (np.sqrt(t["vW1_next"] / (1 - 0.999 ** 2)) + 1e-8)}, "W1_next"),
    "adam_bias_correction_missing": (stepping("adam", t=2), {"W1_next": lambda t, c: c.params["W1"] - 0.2 * (
        t["mW1_next"] / (np.sqrt(t["vW1_next"]) + 1e-8))}, "W1_next"),
    "momentum_wrong_sign": (stepping("momentum"), {"W1_next": lambda t, c: c.params["W1"] + 0.2 * t["vW1_next"]},
                            "W1_next"),
    "momentum_forms_mixed": (stepping("momentum"), {"vW1_next": lambda t, c: 0.9 * c.optimizer.state["vW1"]
                                                    - 0.2 * t["dW1"]}, "vW1_next"),
    "update_before_backprop": (lambda: dataclasses.replace(relu_net(), learning_rate=0.3),
                               {"dA1": lambda t, c: t["dZ2"] @ (c.params["W2"] - 0.3 * t["dW2"]).T}, "dA1"),
    # a whole loop without zero_grad, not one step written wrong: tested on its own below
    "gradients_accumulated_across_steps": None,
    # batch norm and layer norm (tests/test_norms.py has more: the shipped derivation, the layer check)
    "norm_statistics_constant": (batchnorm_net, {"dZ1": lambda t, c: t["dN1"] / np.sqrt(t["Z1"].var(axis=0) + 1e-5)},
                                 "dZ1"),
    "norm_bessel_variance": (batchnorm_net, {"N1": lambda t, c: _normalised(t["Z1"], 0, 1e-5, m_minus_1=True)}, "N1"),
    "norm_eps_outside_root": (lambda: batchnorm_net(eps=1e-2),
                              {"N1": lambda t, c: _normalised(t["Z1"], 0, 1e-2, eps_outside=True)}, "N1"),
    "norm_parameter_gradient_wrong_axis": (batchnorm_net, {"dgamma1": lambda t, c: (t["dS1"] * t["N1"]).sum(axis=1)},
                                           "dgamma1"),
    "layernorm_batch_statistics": (layernorm_net, {"N1": lambda t, c: _normalised(t["Z1"], 0, 1e-5)}, "N1"),
}


def validated(case, wrong=None, names=None, written=None):
    """Validate the student's derivation of ``case`` (``written`` replaces claims as written)."""
    claims = claims_of(derive(case, wrong), names)
    claims.update(claims_of(written or {}))
    return validate(dataclasses.replace(case, claimed=claims))


def test_every_mistake_in_the_catalogue_has_a_derivation_below():
    assert set(MADE) == set(BY_ID)


def test_the_derivations_without_a_mistake_are_all_right():
    for make in {made[0] for made in MADE.values() if made}:
        report = validated(make())
        assert report.ok, report.first_wrong


@pytest.mark.parametrize("mistake", [m for m, made in MADE.items() if made])
def test_a_derivation_with_the_mistake_is_caught_at_its_step_and_the_mistake_named(mistake):
    make, wrong, step = MADE[mistake]
    report = validated(make(), wrong)
    assert not report.ok
    assert report.first_wrong == step
    assert report.own_errors == [step]
    assert [f.mistake.id for f in report.claims[step].fits] == [mistake]
    assert all(report.claims[n].error == "carried" for n in report.claims if not report.claims[n].ok and n != step)


def test_a_claim_written_in_the_transposed_layout_is_named_as_such():
    case = sigmoid_net()
    report = validated(case, written={"Z1": np.round(derive(case)["Z1"].T, 8)})
    assert report.first_wrong == "Z1" and report.own_errors == ["Z1"]
    assert report.claims["Z1"].check.status == "transposed"
    assert [f.mistake.id for f in report.claims["Z1"].fits] == ["transposed_layout"]


def test_the_transposed_weight_gradient_keeps_its_transposed_shape_and_is_still_diagnosed():
    case = relu_net()
    report = validated(case, {"dW2": lambda t, c: t["dZ2"].T @ t["A1"]})
    check = report.claims["dW2"].check
    assert (check.claimed.shape, check.true.shape) == ((3, 5), (5, 3))
    assert "dZ2.T @ A1" in report.claims["dW2"].diagnosis


def test_a_mistake_in_a_step_not_written_down_is_found_upstream_of_the_claim():
    # only dW1 and db1 are claimed; their unwritten dZ1 lost the ReLU mask
    report = validated(relu_net(), {"dZ1": lambda t, c: t["dA1"]}, names=["dW1", "db1"])
    fit = report.claims["dW1"].fits[0]
    assert (fit.mistake.id, fit.step) == ("relu_mask_missing", "dZ1")
    assert report.claims["dW1"].diagnosis.startswith("dW1 follows by the right rules from dZ1, which was not written")


def test_an_own_error_below_a_carried_one_is_diagnosed_from_the_students_own_inputs():
    # the sign of dA2 is flipped (dZ2, dA1 carry it), and then the mask is left out of dZ1
    wrong = {"dA2": lambda t, c: (c.Y - t["A2"]) / 6, "dZ1": lambda t, c: t["dA1"]}
    report = validated(relu_net(), wrong)
    assert report.first_wrong == "dA2"
    assert report.own_errors == ["dA2", "dZ1"]
    assert report.claims["dA1"].error == "carried" and report.claims["dA1"].carried_from == ["dZ2"]
    assert [f.mistake.id for f in report.claims["dZ1"].fits] == ["relu_mask_missing"]


def test_a_wrong_number_no_mistake_explains_gets_no_diagnosis():
    case = relu_net()
    trace = derive(case)
    dW1 = np.round(trace["dW1"], 8)
    dW1[1, 2] += 0.123
    report = validated(case, written={"dW1": dW1})
    assert report.own_errors == ["dW1"]
    assert report.claims["dW1"].fits == [] and report.claims["dW1"].diagnosis is None
    assert report.claims["dW1"].check.wrong.sum() == 1 and report.claims["dW1"].check.worst == (1, 2)


def test_with_two_samples_a_missing_1_over_N_and_the_mse_factor_2_give_the_same_numbers_and_both_are_said():
    case = case_of(**{**RELU, "batch": 2})
    report = validated(case, {"dA2": lambda t, c: t["A2"] - c.Y})
    fits = [f.mistake.id for f in report.claims["dA2"].fits]
    # (and, N times dA2, the per-sample convention's placement of the 1/N, named first)
    assert fits == ["deltas_other_placement", "missing_1_over_N", "half_mse_vs_mse"]
    assert "also come from a missing 1/N or half-MSE versus MSE" in report.claims["dA2"].diagnosis


def test_a_mask_taken_as_Z_greater_or_equal_0_is_invisible_without_exact_zeros():
    # no Z1 is exactly 0 here, so (Z1 >= 0) is (Z1 > 0): the derivation is right
    case = relu_net()
    assert not (case.X @ case.params["W1"] + case.params["b1"] == 0).any()
    assert validated(case, {"dZ1": lambda t, c: t["dA1"] * (t["Z1"] >= 0)}).ok


def test_a_newly_registered_activation_gets_the_diagnosis_of_its_left_out_derivative(monkeypatch):
    # softsign is not in the package: registering it (kernels and texts) is all it takes
    assert "softsign" not in ACTIVATIONS
    softsign = Activation("softsign", lambda Z: Z / (1 + np.abs(Z)), lambda dA, Z, A: dA / (1 + np.abs(Z)) ** 2,
                          "A = Z / (1 + |Z|)", "{dA} / (1 + |{Z}|)**2")
    monkeypatch.setitem(ACTIVATIONS, "softsign", softsign)
    case = case_of((3, 4, 2), ("softsign", "identity"), "half_mse", batch=5, seed=1)
    assert validated(case).ok
    report = validated(case, {"dZ1": lambda t, c: t["dA1"]})
    assert report.first_wrong == "dZ1" and report.own_errors == ["dZ1"]
    assert [f.mistake.id for f in report.claims["dZ1"].fits] == ["activation_derivative_missing"]
    assert report.claims["dZ1"].fits[0].sentence == (
        "dZ1 is dA1 with the softsign derivative left out; it should be dZ1 = dA1 / (1 + |Z1|)**2.")


@pytest.mark.parametrize("act", sorted(set(ACTIVATIONS) - {"identity", "relu"}))
def test_the_left_out_derivative_is_diagnosed_for_every_registered_activation_but_relus_own(act):
    last = act == "softmax"
    acts = ("tanh", act) if last else (act, "identity")
    case = case_of((3, 4, 3), acts, "half_mse", batch=5, seed=4)
    name = "dZ2" if last else "dZ1"
    report = validated(case, {name: lambda t, c: t[f"dA{name[-1]}"]})
    assert report.first_wrong == name
    assert "activation_derivative_missing" in [f.mistake.id for f in report.claims[name].fits]


@pytest.mark.parametrize("rule", ["sgd", "momentum", "momentum_velocity", "rmsprop", "adam"])
def test_k_steps_without_zero_grad_are_named_and_nothing_else_is(rule):
    # The student loops k = 3 times by the book (tests/student.py), once zeroing the gradients between
    # steps and once letting them add up; the first derivation is right, the second is that mistake alone.
    from .student import derive_steps

    case = stepping(rule, t=2 if rule == "adam" else 0)()
    case = dataclasses.replace(case, optimizer=dataclasses.replace(case.optimizer, steps=3))
    right = validate(dataclasses.replace(case, claimed=claims_of(derive_steps(case))))
    assert right.ok, right.summary()
    report = validate(dataclasses.replace(case, claimed=claims_of(derive_steps(case, zero_grad=False))))
    after = [n for n in report.claims if n.endswith("_next")]
    assert after and report.own_errors == [n for n in after if not report.claims[n].ok]
    assert "W1_next" in report.own_errors
    for n in report.own_errors:
        assert [f.mistake.id for f in report.claims[n].fits] == ["gradients_accumulated_across_steps"], n
    assert all(report.claims[n].ok for n in report.claims if not n.endswith("_next"))  # step 1 is the same


def test_the_courses_top_delta_in_a_gradient_file_is_named_as_its_convention_first():
    # dA2 = A2 - Y (the course's δ, no 1/N) where the file declares gradients: the same numbers are the
    # per-sample convention and a missing 1/N; the convention is named first, the other said beside it.
    report = validated(relu_net(), {"dA2": lambda t, c: t["A2"] - c.Y})
    fits = [f.mistake.id for f in report.claims["dA2"].fits]
    assert fits == ["deltas_other_placement", "missing_1_over_N"]
    assert 'deltas = "per_sample"' in report.claims["dA2"].diagnosis
