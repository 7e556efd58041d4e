"""``manual-backprop train``: seed 004's network learns the circle with the hand-derived gradients alone."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import manual_backprop.training.train as train_module
from manual_backprop import Network
from manual_backprop.cli import main
from manual_backprop.training.train import (
    INNER_RADIUS,
    OUTER_RADII,
    circle_data,
    initial_parameters,
    train,
)

SEED_004 = Network((2, 4, 2, 1), ("relu", "relu", "sigmoid"), "bce")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def train_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["train", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_seed_004_reaches_95_percent_held_out_accuracy_and_writes_both_pngs(tmp_path, capsys):
    code, report = train_json(capsys, "--example", "seed-004", "--output", str(tmp_path))
    assert code == 0 and report["ok"] is True
    assert report["held_out_accuracy"] >= 0.95
    assert report["network"] == "2-4-2-1 relu/relu/sigmoid, bce (mean), float64"
    assert report["seconds"] < 60
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["decision_boundary.png", "loss_curve.png"]
    assert sorted(report["files"]) == sorted(str(tmp_path / n) for n in written)
    for name in written:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_mini_batch_training_also_reaches_95_percent(capsys):
    code, report = train_json(capsys, "--batch-size", "32", "--epochs", "20", "--no-plots")
    assert code == 0
    assert report["batch_size"] == 32 and report["steps"] == 20 * 15  # 450 points: 14 batches of 32 and one of 2
    assert report["held_out_accuracy"] >= 0.95
    assert report["files"] == []


def test_one_training_step_is_one_torch_sgd_step_on_the_training_set():
    pytest.importorskip("torch")
    from manual_backprop import make_case
    from manual_backprop.references import torch_ref

    data = circle_data(SEED_004, samples=40, seed=1)
    params = initial_parameters(SEED_004, 1)
    result = train(SEED_004, params, data, learning_rate=0.5, steps=1)
    case = make_case(SEED_004, params, data.X_train, data.Y_train)
    ref = torch_ref.next_parameters(case, lr=0.5)
    for name, value in result.params.items():
        np.testing.assert_allclose(value, ref[f"{name}_next"], rtol=1e-13, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("against", ["torch", "jax"])
def test_check_every_k_steps_agrees_with_the_reference_on_a_short_run(capsys, against):
    pytest.importorskip(against)
    code, report = train_json(capsys, "--steps", "12", "--check-every", "4", "--against", against, "--no-plots")
    assert code == 0 and report["ok"] is True
    assert report["check"] == {"against": against, "checks": 3, "ok": True, "mismatch": None}


def test_check_every_stops_at_the_first_wrong_gradient_with_exit_1(capsys, monkeypatch):
    pytest.importorskip("torch")
    real = train_module.fast.value_and_grad

    def missing_1_over_N(network, params, X, T, workspace=None):  # a classic slip, in db1 only
        L, grads = real(network, params, X, T, workspace)
        return L, {**grads, "b1": grads["b1"] * X.shape[0]}

    monkeypatch.setattr(train_module.fast, "value_and_grad", missing_1_over_N)
    code, report = train_json(capsys, "--steps", "50", "--check-every", "10", "--no-plots")
    assert code == 1 and report["ok"] is False
    assert report["first_divergence"] == "db1"
    assert report["check"]["mismatch"]["step"] == 0 and report["steps"] == 0
    mismatch = report["check"]["mismatch"]
    assert set(mismatch) == {"step", "tensor", "index", "ours", "reference", "against", "tolerance"}
    assert mismatch["tensor"] == "db1" and mismatch["against"] == "torch"
    assert abs(mismatch["ours"] - mismatch["reference"]) > mismatch["tolerance"] > 0
    assert report["files"] == []


def test_the_report_of_a_failed_check_names_the_step_tensor_element_and_both_values(capsys, monkeypatch):
    pytest.importorskip("torch")
    real = train_module.fast.value_and_grad

    def off_by_1e_6(network, params, X, T, workspace=None):
        L, grads = real(network, params, X, T, workspace)
        return L, {**grads, "W2": grads["W2"] + 1e-6}

    monkeypatch.setattr(train_module.fast, "value_and_grad", off_by_1e_6)
    assert main(["train", "--steps", "5", "--check-every", "1", "--no-plots"]) == 1
    out = capsys.readouterr().out
    # dW2 is exactly 0 in the rows of units dead on this batch: the worst element is one of them.
    assert re.search(r"STOPPED: step 0: dW2\[\d, \d\] disagrees with torch: hand-derived 1e-06, torch 0, "
                     r"\|Δ\| 1e-06 \(up to ", out), out
    assert " allowed); 8 of 8 elements beyond their tolerance" in out


@pytest.mark.parametrize("against", ["torch", "jax"])
def test_a_float32_run_re_checked_at_every_step_agrees_with_the_reference(capsys, against):
    pytest.importorskip(against)
    code, report = train_json(capsys, "--dtype", "float32", "--steps", "20", "--check-every", "1",
                              "--batch-size", "64", "--against", against, "--no-plots")
    assert code == 0, report["check"]["mismatch"]
    assert report["check"] == {"against": against, "checks": 20, "ok": True, "mismatch": None}


def test_no_progress_bar_or_escape_codes_when_the_output_is_not_a_terminal(tmp_path, capsys):
    assert main(["train", "--steps", "30", "--no-plots"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "\x1b" not in captured.out and "\r" not in captured.out
    assert "held-out accuracy" in captured.out


def test_circle_data_without_noise_is_split_by_the_circle():
    data = circle_data(SEED_004, samples=400, held_out=0.25, noise=0.0, seed=9)
    X = np.concatenate([data.X_train, data.X_held])
    labels = np.concatenate([data.labels_train, data.labels_held])
    r = np.linalg.norm(X, axis=1)
    assert (r[labels == 1] <= INNER_RADIUS).all()
    assert ((r[labels == 0] >= OUTER_RADII[0]) & (r[labels == 0] <= OUTER_RADII[1])).all()
    assert labels.sum() == 200 and len(data.X_held) == 100
    np.testing.assert_array_equal(data.Y_train[:, 0], data.labels_train)  # bce targets are the labels


def test_the_same_seed_gives_the_same_data_and_a_new_seed_new_data():
    a, b, c = (circle_data(SEED_004, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "-1"], "--lr"),
    (["--epochs", "0"], "--epochs"),
    (["--check-every", "0", "--steps", "3"], "--check-every"),
    (["--held-out", "1.5"], "--held-out"),
    (["--example", "no-such-example"], "unknown example"),
    (["/no/such/file.toml"], "no such file"),
    (["--sizes", "2,3", "--activations", "softmax", "--loss", "softmax_cross_entropy"], "2 (one per class)"),
    (["--sizes", "2,4,1", "--activations", "relu", "--loss", "bce"], "activation"),
    (["--example", "seed-004", "--sizes", "2,1"], "give one of"),
])
def test_a_wrong_input_is_one_line_on_stderr_and_exit_2(capsys, argv, message):
    assert main(["train", *argv, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


# --- divergence: a failure is never reported as success -------------------------------------------

def no_runtime_warnings(run):
    """``run()``'s result, and the RuntimeWarnings it raised (they would be printed on stderr)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    return result, [w for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("lr, what", [
    ("1e300", r"the loss is nan"),                               # overflows to NaN
    ("1e30", r"the loss is \S+, over 1e\+06 times its start "),  # stays finite, ~1e29, and useless
])
def test_a_learning_rate_that_blows_up_is_exit_1_with_the_step_and_no_pictures(tmp_path, capsys, lr, what):
    (code, report), warned = no_runtime_warnings(
        lambda: train_json(capsys, "--lr", lr, "--steps", "50", "--output", str(tmp_path)))
    assert code == 1 and report["ok"] is False, report
    assert warned == []
    d = report["diverged"]
    assert set(d) == {"step", "what"} and re.fullmatch(what + r".*", d["what"]), d
    assert 1 <= d["step"] <= 2 and report["steps"] == d["step"]
    assert report["files"] == [] and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err == ""


def test_the_human_report_of_a_divergence_is_one_line_naming_the_step(capsys):
    code, warned = no_runtime_warnings(lambda: main(["train", "--lr", "1e300", "--no-plots"]))
    out = capsys.readouterr().out
    assert code == 1 and warned == []
    lines = [line for line in out.splitlines() if line.startswith("diverged")]
    assert lines == ["diverged at step 1: the loss is nan; lower --lr"], out


@pytest.mark.parametrize("poison, step, what", [
    ("loss inf", 3, "the loss is inf"),
    ("loss nan", 0, "the loss is nan"),
    ("grad W1", 2, "parameter W1 is not finite"),
    ("grad b3", 4, "parameter b3 is not finite"),
])
def test_training_stops_at_the_first_non_finite_loss_or_parameter(monkeypatch, poison, step, what):
    real = train_module.fast.value_and_grad
    calls = []

    def poisoned(network, params, X, T, workspace=None):
        L, grads = real(network, params, X, T, workspace)
        calls.append(1)
        if len(calls) - 1 == step:
            if poison.startswith("loss"):
                L = float(poison.split()[1])
            else:
                name = poison.split()[1]
                grads = {**grads, name: np.full_like(grads[name], np.inf)}
        return L, grads

    monkeypatch.setattr(train_module.fast, "value_and_grad", poisoned)
    data = circle_data(SEED_004, samples=40, seed=1)
    params = initial_parameters(SEED_004, 1)
    result, warned = no_runtime_warnings(lambda: train(SEED_004, params, data, learning_rate=0.5, steps=10))
    assert warned == [] and not result.ok and result.mismatch is None
    assert result.diverged == train_module.Divergence(step, what)
    assert result.diverged.message == f"diverged at step {step}: {what}; lower --lr"
    assert result.steps == step and len(calls) == step + 1  # stopped there, and
    assert all(np.isfinite(v).all() for v in result.params.values())  # kept the parameters of that step
    assert result.history.eval_steps[-1] == step and np.isfinite(result.final_loss)


def test_an_overflow_is_a_divergence_even_when_the_gradient_is_re_checked(capsys):
    pytest.importorskip("torch")
    (code, report), warned = no_runtime_warnings(
        lambda: train_json(capsys, "--lr", "1e300", "--steps", "5", "--check-every", "1", "--no-plots"))
    assert code == 1 and report["ok"] is False and warned == []
    assert report["diverged"]["step"] == 1 and report["first_divergence"] is None
    assert report["check"] == {"against": "torch", "checks": 1, "ok": True, "mismatch": None}


def test_train_result_keeps_its_old_constructor_and_a_converging_run_has_no_divergence():
    data = circle_data(SEED_004, samples=40, seed=1)
    result = train(SEED_004, initial_parameters(SEED_004, 1), data, learning_rate=0.5, steps=3)
    assert result.ok and result.diverged is None
    old = train_module.TrainResult(result.network, result.params, result.data, result.history, 3, 30, 1, 0.5,
                                   0.0, 0, None, None)
    assert old.ok and old.diverged is None


# --- the output folder and the pictures -----------------------------------------------------------

def test_an_unwritable_output_folder_is_one_line_and_exit_2_before_any_training(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the output folder")

    monkeypatch.setattr(train_module, "train", no_training)
    for output in (blocker / "pictures", blocker):  # a folder that cannot be made, a file
        assert main(["train", "--steps", "5", "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"manual-backprop: cannot write to {output}: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert blocker.read_text() == "not a folder"
    # --no-plots writes nothing, so the folder is not looked at
    monkeypatch.undo()
    assert main(["train", "--steps", "5", "--no-plots", "--output", str(blocker / "pictures")]) == 0


@pytest.mark.parametrize("interrupted", ["decision_boundary.png", "loss_curve.png"])
def test_an_interrupted_picture_leaves_no_truncated_png(tmp_path, capsys, monkeypatch, interrupted):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    old = PNG_MAGIC + b"the picture of an earlier run"
    for name in ("decision_boundary.png", "loss_curve.png"):
        (tmp_path / name).write_bytes(old)
    real_savefig = Figure.savefig
    drawn = []

    def savefig(self, fname, **kwargs):  # the first bytes, then Ctrl-C in the middle of the PNG
        drawn.append(fname)
        if len(drawn) < (1 if interrupted == "decision_boundary.png" else 2):
            return real_savefig(self, fname, **kwargs)
        if hasattr(fname, "write"):
            fname.write(PNG_MAGIC + b"half")
        else:
            with open(fname, "wb") as f:
                f.write(PNG_MAGIC + b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", savefig)
    assert main(["train", "--steps", "5", "--output", str(tmp_path)]) == 130
    assert capsys.readouterr().err.endswith("manual-backprop: interrupted\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decision_boundary.png", "loss_curve.png"]  # no .tmp
    assert (tmp_path / interrupted).read_bytes() == old
    for name in ("decision_boundary.png", "loss_curve.png"):
        content = (tmp_path / name).read_bytes()
        assert content == old or (content[:8] == PNG_MAGIC and content.endswith(b"IEND\xaeB`\x82")), name


# --- the starting parameters ----------------------------------------------------------------------

def test_seed_004_starts_with_the_relu_biases_made_positive_and_nothing_else_changed():
    from manual_backprop.description.case import random_parameters

    drawn, start = random_parameters(SEED_004, 4), initial_parameters(SEED_004, 4)
    for name, value in drawn.items():
        expected = np.abs(value) if name in ("b1", "b2") else value  # layers 1 and 2 are ReLU, 3 sigmoid
        np.testing.assert_array_equal(start[name], expected, err_msg=name)
    assert (drawn["b1"] < 0).any() or (drawn["b2"] < 0).any()  # so the test tells something


def test_the_biases_made_positive_are_those_of_activations_with_a_kink_in_the_registry(monkeypatch):
    import dataclasses

    from manual_backprop.kernels import ACTIVATIONS

    net = Network((2, 8, 8, 1), ("relu", "tanh", "sigmoid"), "bce")
    drawn = initial_parameters(net, 7)
    assert (drawn["b1"] >= 0).all() and (drawn["b2"] < 0).any()
    monkeypatch.setitem(ACTIVATIONS, "relu", dataclasses.replace(ACTIVATIONS["relu"], kink=None))
    monkeypatch.setitem(ACTIVATIONS, "tanh", dataclasses.replace(ACTIVATIONS["tanh"], kink=0.0))
    swapped = initial_parameters(net, 7)
    assert (swapped["b1"] < 0).any() and (swapped["b2"] >= 0).all()
    np.testing.assert_array_equal(np.abs(swapped["b1"]), drawn["b1"])


def test_train_html_puts_the_log_and_both_pictures_on_one_self_contained_page(tmp_path, capsys):
    import base64
    import re

    page = tmp_path / "train.html"
    assert main(["train", "--steps", "20", "--output", str(tmp_path), "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    text = page.read_text(encoding="utf-8")
    assert "20 descent steps" in printed and "20 descent steps" in text  # the same log as printed
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 2 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "decision_boundary.png" in text and "loss_curve.png" in text
    assert not re.search(r'(src|href)="https?://', text)  # nothing fetched
    assert main(["train", "--steps", "5", "--no-plots", "--html", str(tmp_path)]) == 2  # a folder: exit 2
    assert capsys.readouterr().err.startswith("manual-backprop: cannot write to")


@pytest.mark.parametrize("optimizer", ["momentum", "rmsprop", "adam"])
def test_train_with_an_optimizer_rechecks_every_step_against_torch_optim(optimizer, capsys):
    code = main(["train", "--optimizer", optimizer, "--lr", "0.05", "--steps", "40", "--check-every", "10",
                 "--no-plots", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] and out["optimizer"] == optimizer and out["check"]["checks"] == 4
    assert out["final_loss"] < 0.69  # below the loss of a coin toss (ln 2) after 40 steps from seed 004's start


def test_train_stops_at_the_first_optimiser_step_that_disagrees_with_torch_optim(monkeypatch, capsys):
    # Planted in the kernel: Adam's bias correction with t instead of t + 1 (from the second step on).
    import dataclasses as dc

    from manual_backprop.kernels import OPTIMIZERS, optimizers

    right = optimizers.adam_update
    monkeypatch.setitem(OPTIMIZERS, "adam", dc.replace(
        OPTIMIZERS["adam"], update=lambda W, g, s, lr, t=0, **c: right(W, g, s, lr, t=max(t - 1, 0), **c)))
    code = main(["train", "--optimizer", "adam", "--lr", "0.05", "--steps", "5", "--check-every", "1",
                 "--no-plots", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and not out["ok"]
    assert out["check"]["mismatch"]["step"] == 1 and out["check"]["mismatch"]["tensor"].endswith("_next")
