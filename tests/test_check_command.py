"""`manual-backprop check`: the table, --json as PRODUCT.md fixes it, exit codes, and the extras."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest

from manual_backprop.cli import main
from manual_backprop.kernels import ACTIVATIONS

pytest.importorskip("torch")
pytest.importorskip("jax")


def _json(capsys, argv):
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_check_with_no_arguments_runs_seed_002_against_every_reference_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "manual_backprop"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Seed 002" in proc.stdout
    assert "All 14 tensors agree with torch, jax, fd" in proc.stdout
    for name in ("Z1", "A1", "L", "dA2", "dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1", "dX"):
        assert f"\n{name} " in proc.stdout


def test_json_has_the_fields_the_product_contract_fixes(capsys):
    code, out = _json(capsys, ["check", "--example", "seed-002", "--json"])
    assert code == 0
    assert out["ok"] is True and out["first_divergence"] is None
    assert out["not_judged"] == [] and out["forward_not_judged"] == []  # torch and JAX judge the forward
    dW1 = out["tensors"]["dW1"]
    assert dW1["shape"] == [2, 3]
    assert dW1["value"][0][0] == pytest.approx(0.01746411, abs=5e-9)  # seed 002's printed value
    assert set(dW1["checks"]) == {"torch", "jax", "fd"}
    for ref in ("torch", "jax"):
        assert dW1["checks"][ref]["ok"] is True
        assert dW1["checks"][ref]["max_abs_err"] < 1e-15
        assert "max_rel_err" in dW1["checks"][ref]
    env = out["environment"]
    for key in ("seed", "python", "numpy", "torch", "jax", "blas", "threads"):
        assert key in env


def test_a_wrong_rule_exits_1_and_json_names_the_first_divergence(capsys, monkeypatch):
    monkeypatch.setitem(ACTIVATIONS, "sigmoid",
                        dataclasses.replace(ACTIVATIONS["sigmoid"], backward=lambda dA, Z, A: dA * Z * (1 - Z)))
    code, out = _json(capsys, ["check", "--example", "seed-002", "--json", "--against", "torch"])
    assert code == 1
    assert out["ok"] is False
    assert out["first_divergence"] == "dZ1"
    assert out["step_before_first_divergence"] == "dA1"
    assert out["tensors"]["dZ1"]["checks"]["torch"]["ok"] is False
    assert out["tensors"]["dA1"]["checks"]["torch"]["ok"] is True


def test_the_human_report_names_the_worst_element_and_the_step_before(capsys, monkeypatch):
    monkeypatch.setitem(ACTIVATIONS, "sigmoid",
                        dataclasses.replace(ACTIVATIONS["sigmoid"], backward=lambda dA, Z, A: dA * Z * (1 - Z)))
    assert main(["check", "--example", "seed-002", "--against", "torch"]) == 1
    out = capsys.readouterr().out
    assert "First divergence: dZ1" in out
    assert "worst element dZ1[" in out
    assert "step before: dA1 agrees with every reference" in out


def test_inline_network_float32_runs_and_stays_float32(capsys):
    code, out = _json(capsys, ["check", "--sizes", "5,7,3", "--activations", "relu,softmax",
                               "--loss", "softmax_cross_entropy", "--batch", "9", "--seed", "1",
                               "--dtype", "float32", "--json"])
    assert code == 0, out["first_divergence"]
    assert {t["dtype"] for t in out["tensors"].values()} == {"float32"}


def test_per_sample_and_descent_step_are_checked_against_both_frameworks(capsys):
    code, out = _json(capsys, ["check", "--example", "seed-004", "--per-sample", "--lr", "0.5", "--json"])
    assert code == 0
    for name in ("dW1_per_sample", "db3_per_sample", "W1_next", "b3_next"):
        assert set(out["tensors"][name]["checks"]) == {"torch", "jax"}
        assert all(c["ok"] for c in out["tensors"][name]["checks"].values())
    # arithmetic anyone can redo: b_next = b - lr * db
    b3, db3 = out["tensors"]["b3_next"]["value"][0], out["tensors"]["db3"]["value"][0]
    from manual_backprop import load_example

    assert b3 == pytest.approx(load_example("seed-004").params["b3"][0] - 0.5 * db3, rel=1e-15)


def test_the_sgd_table_of_a_file_adds_the_descent_step(tmp_path, capsys):
    from manual_backprop.description.catalog import example_text

    f = tmp_path / "net.toml"
    f.write_text(example_text("seed-002") + "\n[sgd]\nlearning_rate = 0.5\n")
    code, out = _json(capsys, ["check", str(f), "--json", "--against", "torch"])
    assert code == 0
    assert out["tensors"]["W2_next"]["checks"]["torch"]["ok"]


def test_a_passing_check_headlines_the_margin_after_the_kink_allowance_not_before():
    """float32, one unit that rounding puts on the other side of the kink in torch and JAX (test_kinks)."""
    import io

    from manual_backprop.checking.checker import check
    from manual_backprop.cli.check import render

    from .test_kinks import _find_flip

    report = check(_find_flip(), against=["torch", "jax"])
    assert report.ok
    flipped = report.checks["dZ2"]["torch"]
    assert flipped.status == "kink" and flipped.margin > 1e6 and flipped.kink_margin <= 1
    out = io.StringIO()
    render(report, file=out)
    text = out.getvalue()
    headline = re.search(r"All \d+ tensors agree with torch, jax \(largest margin (\S+) of the tolerance\)", text)
    assert headline and float(headline.group(1)) <= 1, text
    row = re.search(r"\ndZ2 .* (\S+)  ok \(kink rounding\)", text)
    assert row and float(row.group(1)) <= 1
    assert "of the rounding tolerance alone" in text  # the margin before the allowance, said as such


def test_seed_000_prints_one_row_per_sample_as_its_table_does(capsys):
    assert main(["check", "--example", "seed-000", "--against", "fd"]) == 0
    out = capsys.readouterr().out
    assert "Per sample" in out
    # x = 0 for both samples, so each sample's dW1 = outer(x, dZ1) is exactly zero;
    # db2 per sample is z2 - y = [0.25 - 1, 0.05 - 0] (summed half-MSE)
    assert re.search(r"\ndW1 +0 +\[\[0, 0\], \[0, 0\]\] *\n +1 +\[\[0, 0\], \[0, 0\]\]", out)
    assert re.search(r"\ndb2 +0 +\[-0\.75, 0\.05\]", out)


def test_profile_shows_where_the_time_went(capsys):
    assert main(["check", "--example", "seed-002", "--profile", "--against", "torch,fd"]) == 0
    out = capsys.readouterr().out
    assert "time: engine" in out and "torch" in out and "compare:fd" in out


def test_examples_lists_every_seed_network(capsys):
    assert main(["examples"]) == 0
    out = capsys.readouterr().out
    for name in ("seed-000", "seed-002", "seed-003", "seed-004"):
        assert name in out
