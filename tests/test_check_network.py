"""``check_network``: a whole network in the user's own NumPy code, judged by one call.

The networks under test are written here, by hand, in the course's style (CS231n's
``TwoLayerNet``: ``params`` W1 (D, H), b1 (H,), W2 (H, C), b2 (C,); ``loss(X, y)`` the mean
softmax cross-entropy and its gradients). That the right one is right is settled by torch's
autograd below, never by the code under test; each planted mistake is a classic one, and the
expected verdict (which tensor is first wrong, which catalogue entry names it) follows from
the published conventions: dReLU(0) = 0 (torch, JAX), the mean's 1/N, db summed over samples.
"""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import InputError
from manual_backprop.description.case import Claim, make_case
from manual_backprop.description.network import Network
from manual_backprop.testing.network import FORMS, assert_network_matches, check_network
from manual_backprop.validation import validate

NET = Network((4, 5, 3), ("relu", "softmax"), "softmax_cross_entropy", "mean")


class CourseNet:
    """A two-layer net in the course's style; ``mistake`` plants one classic mistake."""

    mistake = None

    def __init__(self, input_size, hidden_size, output_size, std=1e-4):
        self.params = {"W1": std * np.ones((input_size, hidden_size)), "b1": np.zeros(hidden_size),
                       "W2": std * np.ones((hidden_size, output_size)), "b2": np.zeros(output_size)}

    def loss(self, X, y=None, reg=0.0):
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        N = X.shape[0]
        h_in = X @ W1 + b1
        h = np.maximum(0, h_in)
        scores = h @ W2 + (0 if self.mistake == "forward_without_b2" else b2)
        shifted = scores - scores.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -logp[np.arange(N), y].sum()
        if self.mistake == "loss_without_logsumexp":  # the reported loss forgets log(sum(exp)); grads do not
            loss = -shifted[np.arange(N), y].sum()
        if self.mistake != "sum_loss_and_gradient":
            loss /= N
        d = np.exp(logp)
        d[np.arange(N), y] -= 1
        if self.mistake not in ("missing_1_over_N", "sum_loss_and_gradient"):
            d /= N
        grads = {"W2": h.T @ d, "b2": d.sum(axis=1 if self.mistake == "db2_axis1" else 0)}
        dh = d @ W2.T
        if self.mistake == "mask_missing":
            dh_in = dh
        elif self.mistake == "mask_ge":
            dh_in = dh * (h_in >= 0)
        else:
            dh_in = dh * (h_in > 0)
        grads["W1"] = X.T @ dh_in
        grads["b1"] = dh_in.sum(axis=0)
        return loss, grads


def planted(mistake):
    return type(f"CourseNet_{mistake}", (CourseNet,), {"mistake": mistake})


def trace_fn(mistake=None):
    """``fn(params, X, Y)`` returning the named tensors, intermediate ones included."""

    def fn(params, X, Y):
        net = planted(mistake)(4, 5, 3)
        net.params = params
        W1, b1, W2, b2 = (params[k] for k in ("W1", "b1", "W2", "b2"))
        N = X.shape[0]
        Z1 = X @ W1 + b1
        A1 = np.maximum(0, Z1)
        Z2 = A1 @ W2 + b2
        e = np.exp(Z2 - Z2.max(axis=1, keepdims=True))
        A2 = e / e.sum(axis=1, keepdims=True)
        L, grads = net.loss(X, Y)
        dZ2 = A2.copy()
        dZ2[np.arange(N), Y] -= 1
        dZ2 /= N
        dA1 = dZ2 @ W2.T
        dZ1 = dA1 if mistake == "mask_missing" else dA1 * (Z1 > 0)
        return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2, "L": L, "dZ2": dZ2, "dA1": dA1, "dZ1": dZ1,
                **{f"d{k}": v for k, v in grads.items()}}

    return fn


# --- the right code ------------------------------------------------------------------------------

def test_the_right_course_net_agrees_with_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    params = {"W1": rng.standard_normal((4, 5)), "b1": rng.standard_normal(5),
              "W2": rng.standard_normal((5, 3)), "b2": rng.standard_normal(3)}
    net = CourseNet(4, 5, 3)
    net.params = {k: v.copy() for k, v in params.items()}
    loss, grads = net.loss(X, y)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    scores = torch.relu(torch.tensor(X) @ t["W1"] + t["b1"]) @ t["W2"] + t["b2"]
    ref = torch.nn.functional.cross_entropy(scores, torch.tensor(y))
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-12)
    for k in params:
        np.testing.assert_allclose(grads[k], t[k].grad.numpy(), rtol=1e-10, atol=1e-13)


def test_a_course_class_unchanged_passes_every_trial_in_one_call():
    report = check_network(CourseNet, NET)
    assert report.ok, report.message()
    assert [t.name for t in report.trials] == ["random", "batch 1", "kink", "float32"]
    assert [t.batch for t in report.trials] == [4, 1, 4, 4]
    assert report.form == FORMS["object"]
    assert report.name == "CourseNet(input_size=4, hidden_size=5, output_size=3)"
    assert list(report.trials[0].validation.claims) == ["L", "dW2", "db2", "dW1", "db1"]
    assert report.first_wrong is None and report.wrong_part is None
    # the gradients agree with finite differences of the code's own loss, too
    assert set(report.trials[0].fd) == {"dW2", "db2", "dW1", "db1"}
    assert all(c.ok for c in report.trials[0].fd.values())


def test_the_kink_trial_puts_pre_activations_exactly_on_zero():
    report = check_network(CourseNet, NET)
    case = report.trials[2].validation.case
    Z1 = case.X @ case.params["W1"] + case.params["b1"]
    assert np.all(Z1[0, ::2] == 0)          # 1 * W1[0, j] + 0 + ... + (-W1[0, j]) is exactly 0
    np.testing.assert_array_equal(case.X[0], [1.0, 0, 0, 0])


def test_an_instance_is_used_as_it_is_and_its_params_are_set_each_trial():
    net = CourseNet(4, 5, 3)
    report = check_network(net, NET)
    assert report.ok, report.message()
    assert report.name == "CourseNet"
    assert net.params["W1"].shape == (4, 5) and not np.all(net.params["W1"] == 1e-4)


def test_a_function_returning_named_tensors_has_every_one_judged_intermediates_too():
    report = check_network(trace_fn(), NET)
    assert report.ok, report.message()
    assert report.form == FORMS["trace"]
    assert set(report.trials[0].validation.claims) == {"Z1", "A1", "Z2", "A2", "L", "dZ2", "dA1", "dZ1",
                                                        "dW1", "db1", "dW2", "db2"}


def test_a_function_returning_loss_and_grads_keyed_dW_or_W():
    def fn(params, X, Y):
        net = CourseNet(4, 5, 3)
        net.params = params
        loss, grads = net.loss(X, Y)
        return loss, {"dW1": grads["W1"], "db1": grads["b1"], "W2": grads["W2"], "b2": grads["b2"]}

    report = check_network(fn, NET)
    assert report.ok, report.message()
    assert report.form == FORMS["loss_grads"]


def test_the_network_may_be_a_case_a_file_or_an_example(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text('[network]\nsizes = [4, 5, 3]\nactivations = ["relu", "softmax"]\n'
                    'loss = "softmax_cross_entropy"\n\n[data]\nX = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.25, 2.0]]\n'
                    'Y = [2, 0]\n')
    report = check_network(CourseNet, str(path))
    assert report.ok and report.trials[0].batch == 2            # the file's two rows, for the first trial
    np.testing.assert_array_equal(report.trials[0].validation.case.X[1], [0.5, -1.0, 0.25, 2.0])
    assert check_network(CourseNet, make_case(NET, seed=3, batch=6)).trials[0].batch == 6


# --- the planted classic mistakes: caught, localised, named ----------------------------------------

def test_a_missing_relu_mask_is_named_and_localised_to_dZ1():
    report = check_network(planted("mask_missing"), NET)
    assert not report.ok
    assert report.first_wrong == "dW1" and report.first_wrong_trial == "random"   # dW2, db2 come first, right
    assert report.mistake == "relu_mask_missing"
    assert report.diagnosis == ("dW1 follows by the right rules from dZ1, which was not written down and has a "
                                "mistake: dZ1 is dA1 with the ReLU mask left out; it should be dA1 * (Z1 > 0).")
    assert report.wrong_part == "backward"
    assert report.diagnosis in report.message()


def test_a_missing_relu_mask_in_code_that_returns_dZ1_is_named_at_dZ1_itself():
    report = check_network(trace_fn("mask_missing"), NET)
    assert report.first_wrong == "dZ1"
    assert report.diagnosis == "dZ1 is dA1 with the ReLU mask left out; it should be dA1 * (Z1 > 0)."


def test_a_mask_taken_as_Z_ge_0_is_caught_on_the_kink_trial_only():
    report = check_network(planted("mask_ge"), NET)
    verdicts = {t.name: t.ok for t in report.trials}
    assert verdicts == {"random": True, "batch 1": True, "kink": False, "float32": True}
    assert report.first_wrong_trial == "kink" and report.first_wrong == "dW1"
    assert report.mistake == "relu_mask_at_zero"
    assert "dZ1 takes the ReLU mask as Z1 >= 0" in report.diagnosis


def test_a_missing_1_over_N_is_caught_with_batch_above_1_and_not_with_1():
    report = check_network(planted("missing_1_over_N"), NET)
    verdicts = {t.name: t.ok for t in report.trials}
    assert verdicts["batch 1"] is True and verdicts["random"] is False   # at N = 1 the 1/N is 1
    assert report.first_wrong == "dW2"
    assert report.mistake == "missing_1_over_N"
    assert "dZ2 is missing the 1/N of the mean: it is N = 4 times too large" in report.diagnosis
    assert report.wrong_part == "backward"   # the loss is right; the gradients disagree with its differences


def test_db_summed_over_the_wrong_axis_is_caught_and_named_in_a_batch_that_gives_it_its_shape():
    report = check_network(planted("db2_axis1"), NET)
    first = report.trials[0]
    assert first.problems == {"db2": "db2 has shape (4,), expected (3,) or (1, 3)"}
    assert report.first_wrong == "db2"
    names = [t.name for t in report.trials]
    assert "batch 3" in names                          # N = 3 = the width of layer 2: db2 has shape (3,)
    assert report.mistake == "db_wrong_axis"
    assert "db2 sums dZ2 over the units (axis 1) instead of over the samples (axis 0)" in report.message()


def test_a_wrong_forward_with_a_self_consistent_backward_is_told_apart():
    # L = sum of the sample losses (no 1/N) and its gradients without 1/N: right for the loss written
    report = check_network(planted("sum_loss_and_gradient"), NET)
    assert report.first_wrong == "L"
    assert report.wrong_part == "forward"
    assert all(c.ok for c in report.trials[0].fd.values())     # the gradients are the code's own loss's
    assert "your backward is consistent with it" in report.message()


def test_a_wrong_loss_beside_true_gradients_is_a_wrong_forward():
    report = check_network(planted("loss_without_logsumexp"), NET)
    assert report.first_wrong == "L"
    assert [n for n, c in report.trials[0].validation.claims.items() if not c.ok] == ["L"]
    assert report.wrong_part == "forward"
    assert any(c.failed for c in report.trials[0].fd.values())   # true gradients are not the wrong loss's
    assert "your gradients are the true ones" in report.message()


def test_a_forward_without_b2_whose_backward_is_wrong_for_it_too_is_both():
    report = check_network(planted("forward_without_b2"), NET)
    assert report.first_wrong == "L"
    assert report.trials[0].fd["db2"].failed       # the code's loss does not move with b2; its db2 does
    assert report.wrong_part == "forward and backward"


# --- untrusted code: no traceback, ever --------------------------------------------------------------

def _raises(params, X, Y):
    raise ValueError("shapes do not align")


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no")


def _raises_unprintable(params, X, Y):
    raise _Unprintable()


BAD_CODE = {
    "raises": (_raises, "_raises raised ValueError: shapes do not align"),
    "unprintable exception": (_raises_unprintable, "raised _Unprintable"),
    "None": (lambda p, X, Y: None, "returned None; it must return (loss, grads)"),
    "a string": (lambda p, X, Y: "loss", "returned a str"),
    "three values": (lambda p, X, Y: (1.0, {}, 2), "returned a tuple of 3 values"),
    "grads not a dict": (lambda p, X, Y: (1.0, [1, 2]), "returned (loss, a list)"),
    "empty mapping": (lambda p, X, Y: {}, "returned an empty mapping"),
}


@pytest.mark.parametrize("case", list(BAD_CODE), ids=list(BAD_CODE))
def test_code_that_raises_or_returns_nothing_usable_is_one_line_status_error(case):
    fn, words = BAD_CODE[case]
    report = check_network(fn, NET, float32=False)
    assert not report.ok
    assert all(t.error is not None for t in report.trials)
    assert words in report.trials[0].error
    assert "\n" not in report.trials[0].error and "Traceback" not in report.message()


def _right_grads(params, X, Y):
    net = CourseNet(4, 5, 3)
    net.params = {k: v.copy() for k, v in params.items()}
    return net.loss(X, Y)


def _with(**changes):
    def fn(params, X, Y):
        loss, grads = _right_grads(params, X, Y)
        for k, v in changes.items():
            grads[k] = v(grads[k]) if callable(v) else v
        return changes.get("loss", loss), {k: v for k, v in grads.items() if k != "loss"}
    return fn


BAD_TENSORS = {
    "NaN": (_with(W1=lambda g: np.where(g == g.flat[0], np.nan, g)), "dW1", "dW1 has NaN at index [0, 0]"),
    "wrong shape": (_with(W2=lambda g: g[:2]), "dW2", "dW2 has shape (2, 3), expected (5, 3)"),
    "strings": (_with(b1=lambda g: g.astype(str)), "db1", "not of numbers"),
    "None": (_with(b2=None), "db2", "as None"),
    "integers": (_with(b2=lambda g: np.zeros(3, dtype=int)), "db2", "holds int64 values"),
    "ragged": (_with(W1=[[1.0, 2.0], [3.0]]), "dW1", "not an array of numbers"),
    "object": (_with(W1=object()), "dW1", "not an array of numbers"),
}


@pytest.mark.parametrize("case", list(BAD_TENSORS), ids=list(BAD_TENSORS))
def test_a_tensor_of_the_wrong_kind_is_named_and_never_passes(case):
    fn, name, words = BAD_TENSORS[case]
    report = check_network(fn, NET, float32=False)
    assert not report.ok
    assert report.first_wrong == name
    assert words in report.trials[0].problems[name]
    assert "Traceback" not in report.message()


def test_a_missing_or_misspelt_gradient_is_reported():
    def lowercase(params, X, Y):
        loss, grads = _right_grads(params, X, Y)
        grads["w1"] = grads.pop("W1")
        return loss, grads

    report = check_network(lowercase, NET, float32=False)
    assert not report.ok and report.first_wrong == "dW1"
    assert report.trials[0].problems["dW1"] == "lowercase returned no gradient for W1"
    assert "did you mean 'W1'? names are case-sensitive" in report.trials[0].problems[""]


def test_code_that_writes_into_its_inputs_gets_copies_and_is_reported():
    def scribbles(params, X, Y):
        out = _right_grads(params, X, Y)
        X *= 0
        params["b1"] += 1
        return out

    report = check_network(scribbles, NET, float32=False)
    assert report.ok, report.message()                        # copies went in: the verdict stands
    notes = report.trials[0].notes
    assert "scribbles wrote into params['b1'] (it was given a copy)" in notes
    assert "scribbles wrote into X (it was given a copy)" in notes
    assert "Note (random trial): scribbles wrote into X" in report.message()


def test_a_class_whose_init_raises_is_one_line():
    class Broken:
        def __init__(self, input_size, hidden_size, output_size):
            raise RuntimeError("no GPU")

    report = check_network(Broken, NET)
    assert not report.ok
    assert report.trials[0].error.startswith("Broken(input_size=4, hidden_size=5, output_size=3) raised "
                                             "RuntimeError: no GPU")


def test_not_a_recognised_form_is_an_input_error():
    for fn, words in ((3, "not a recognised form"), (lambda X: X, "must take (params, X, Y)")):
        with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            check_network(fn, NET)
    with pytest.raises(InputError, match="batch must be"):
        check_network(CourseNet, NET, batch=0)
    with pytest.raises(InputError, match="network must be"):
        check_network(CourseNet, 42)


# --- the pytest helper -----------------------------------------------------------------------------

def test_assert_network_matches_passes_right_code_and_fails_with_the_report_message():
    assert assert_network_matches(CourseNet, NET).ok
    with pytest.raises(AssertionError) as e:
        assert_network_matches(planted("mask_missing"), NET)
    assert str(e.value) == check_network(planted("mask_missing"), NET).message()
    assert "dW1 follows by the right rules from dZ1" in str(e.value)
    with pytest.raises(InputError, match="unknown option 'batches'"):
        assert_network_matches(CourseNet, NET, batches=3)


# --- raw arrays as claims ----------------------------------------------------------------------------

def test_make_case_takes_plain_arrays_as_exact_claims():
    # L = mean cross-entropy of all-zero logits... here: a claim of dW1 = 0, which is wrong unless dW1 is 0
    case = make_case(NET, claimed={"dW1": np.zeros((4, 5)), "L": 1.0})
    assert isinstance(case.claimed["dW1"], Claim)
    np.testing.assert_array_equal(case.claimed["dW1"].resolution, np.zeros((4, 5)))
    assert case.claimed["L"].resolution.shape == ()
    assert validate(case).first_wrong == "L"   # L of 3 classes near uniform is about log 3 = 1.0986, not 1.0


@pytest.mark.parametrize("value, words", [
    (np.zeros((5, 5)), "dW1 has shape (5, 5), expected (4, 5)"),
    (np.zeros((4, 5), np.float32), "dW1 is float32 but the network is float64"),
    (np.full((4, 5), np.nan), "dW1 has NaN at index [0, 0]"),
    (None, "dW1 is None"),
    ([[1, 2]], "integers where floats are needed"),
])
def test_make_case_checks_plain_claims_like_every_array(value, words):
    with pytest.raises(InputError) as e:
        make_case(NET, claimed={"dW1": value})
    assert words in str(e.value)
    with pytest.raises(InputError, match="unknown tensor name 'dQ'"):
        make_case(NET, claimed={"dQ": [1.0]})


def test_make_case_keeps_a_transposed_plain_claim_for_validate_to_name():
    case = make_case(NET, claimed={"dW1": np.zeros((5, 4))})
    assert validate(case).claims["dW1"].check.status == "transposed"


def test_the_truth_is_confirmed_against_the_frameworks_and_a_wrong_engine_is_never_trusted(monkeypatch):
    report = check_network(CourseNet, NET)
    assert report.truth_confirmed and "agrees with torch and jax" in report.truth
    # Planted in the engine itself: the relu backward with its mask left out. The user's right code now
    # disagrees with the (wrong) truth, and the frameworks say the truth is wrong: no verdict is trusted.
    from dataclasses import replace

    from manual_backprop.kernels import ACTIVATIONS
    relu = ACTIVATIONS["relu"]
    monkeypatch.setitem(ACTIVATIONS, "relu", replace(relu, backward=lambda dA, Z, A, out=None, scratch=None: dA))
    broken = check_network(CourseNet, NET)
    assert not broken.ok and not broken.truth_confirmed
    assert "The truth could not be confirmed" in broken.message()
    assert broken.summary() == ["No verdict on your code: the truth it is judged against disagrees with the frameworks."]
