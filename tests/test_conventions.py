"""Your conventions: the column layout, where the 1/N lives, and bias rows and columns.

Expected values come from the course's own code written out here in NumPy (column vectors, the 1/m
in dW and db), from seed 002's notebook as printed, from torch and JAX (through ``check``), or from
arithmetic: a transpose, and N times a mean's delta.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from manual_backprop import Network, check, check_layer, check_network, load_example, make_case, validate
from manual_backprop.cli import main
from manual_backprop.description.case import Claim

from .student import claims_of


# --- the course's 2-4-1 network, column vectors, the 1/m in the parameter step -------------------

X = np.array([[1.0, -0.5, 2.0], [0.5, 1.5, -1.0]])                        # (n0, m) = (2, 3)
Y = np.array([[1.0, 0.0, 1.0]])                                           # (1, m)
W1 = np.array([[0.1, -0.2], [0.4, 0.3], [-0.5, 0.2], [0.3, 0.15]])         # (4, 2)
b1 = np.array([[0.01], [-0.02], [0.03], [0.0]])                           # (4, 1)
W2 = np.array([[0.6, -0.4, 0.2, 0.5]])                                    # (1, 4)
b2 = np.array([[-0.1]])


def course(params, X, Y, *, tanh_from_Z=False, dW1_transposed=False, db1_axis0=False):
    """The course's forward and backward, as its notebooks write them (column vectors, 1/m in dW, db)."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    m = X.shape[1]
    Z1 = W1 @ X + b1
    A1 = np.tanh(Z1)
    Z2 = W2 @ A1 + b2
    A2 = 1 / (1 + np.exp(-Z2))
    L = -np.sum(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)) / m
    dZ2 = A2 - Y
    dW2 = dZ2 @ A1.T / m
    db2 = np.sum(dZ2, axis=1, keepdims=True) / m
    dA1 = W2.T @ dZ2
    dZ1 = dA1 * (1 - (Z1 if tanh_from_Z else A1) ** 2)
    dW1 = (X @ dZ1.T if dW1_transposed else dZ1 @ X.T) / m
    db1 = (np.sum(dZ1, axis=0) if db1_axis0 else np.sum(dZ1, axis=1, keepdims=True)) / m
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2, "L": L, "dZ2": dZ2, "dW2": dW2, "db2": db2,
            "dA1": dA1, "dZ1": dZ1, "dW1": dW1, "db1": db1}


PARAMS = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
NET = Network((2, 4, 1), ("tanh", "sigmoid"), "bce")


def course_case(deltas="per_sample", **mistakes):
    claims = claims_of(course(PARAMS, X, Y, **mistakes))
    return make_case(NET, PARAMS, X, Y, claimed=claims, layout="column", deltas=deltas)


def test_the_course_derivation_validates_as_written_in_its_own_convention():
    report = validate(course_case())
    assert report.ok, report.summary()
    # and the engine behind the truth agrees with torch and JAX on the same case
    assert check(course_case(), against=["torch", "jax"]).ok


def test_the_shipped_course_example_is_the_course_code_to_8_decimals():
    case = load_example("course-2-4-1-column")
    printed = course({k: case.shown(k, v) for k, v in case.params.items()}, case.shown("X", case.X),
                     case.shown("Y", case.Y))
    for name, claim in case.claimed.items():
        np.testing.assert_allclose(claim.value, np.round(printed[name], 8), rtol=0, atol=1e-12)
    assert validate(case).ok


def test_values_tables_and_json_are_in_the_files_layout():
    report = validate(course_case())
    out = report.to_json()["tensors"]
    assert out["Z1"]["shape"] == [4, 3] and out["dW1"]["shape"] == [4, 2] and out["db1"]["shape"] == [4, 1]
    # the true dW1 is the course's own, (1/m) dZ1 @ X.T
    np.testing.assert_allclose(out["dW1"]["value"], course(PARAMS, X, Y)["dW1"], rtol=1e-12)
    # dZ2 under per-sample deltas is A2 - Y, N = 3 times the gradient dL/dZ2
    np.testing.assert_allclose(out["dZ2"]["value"], course(PARAMS, X, Y)["dZ2"], rtol=1e-12)
    assert "dW1 = (1/N) · dZ1 @ X.T" in report.claims["dW1"].step.formula
    assert report.claims["Z1"].step.formula == "Z1 = W1 @ X + b1"


def test_a_course_mistake_is_named_in_column_terms():
    report = validate(course_case(tanh_from_Z=True))
    assert report.own_errors == ["dZ1"] and set(report.carried_errors) == {"dW1", "db1"}
    assert report.claims["dZ1"].fits[0].mistake.id == "tanh_derivative_from_Z"
    report = validate(course_case(dW1_transposed=True))
    assert report.own_errors == ["dW1"]
    assert report.claims["dW1"].diagnosis == "dW1 is X @ dZ1.T, the transposed product; it should be dZ1 @ X.T."


def test_db_summed_over_the_units_is_named_with_the_column_layouts_axes():
    # with 4 units and 4 samples the wrong sum has db1's shape
    X4 = np.array([[1.0, -0.5, 2.0, 0.3], [0.5, 1.5, -1.0, -0.7]])
    Y4 = np.array([[1.0, 0.0, 1.0, 0.0]])
    claims = claims_of(course(PARAMS, X4, Y4, db1_axis0=True), ["dZ1", "db1"])
    report = validate(make_case(NET, PARAMS, X4, Y4, claimed=claims, layout="column", deltas="per_sample"))
    assert report.own_errors == ["db1"]
    assert "over the units (axis 0) instead of over the samples (axis 1)" in report.claims["db1"].diagnosis


def test_a_claim_in_the_row_layout_is_named_as_the_other_layout():
    claims = claims_of(course(PARAMS, X, Y))
    claims["Z1"] = Claim(claims["Z1"].value.T, claims["Z1"].resolution.T)  # (m, 4): one sample per row
    report = validate(make_case(NET, PARAMS, X, Y, claimed=claims, layout="column", deltas="per_sample"))
    assert report.own_errors == ["Z1"] and report.claims["Z1"].check.status == "transposed"
    assert "in the column-vector convention it is (n, N), one sample per column" in report.claims["Z1"].diagnosis
    assert any("makes it (4, 3)" in n for n in report.claims["Z1"].notes)


def test_the_courses_placement_in_a_file_that_declares_gradients_is_diagnosed_as_exactly_that():
    report = validate(course_case(deltas="gradient"))
    assert report.own_errors == ["dZ2"] and set(report.carried_errors) == {"dA1", "dZ1"}
    assert report.claims["dZ2"].fits[0].mistake.id == "deltas_other_placement"
    assert "N = 3 times ∂L/∂Z2: the per-sample convention" in report.claims["dZ2"].diagnosis
    assert report.claims["dW2"].ok and report.claims["dW1"].ok  # the parameter gradients are the same


def test_gradient_deltas_in_a_per_sample_file_are_diagnosed_the_other_way():
    claims = claims_of(course(PARAMS, X, Y))
    for name in ("dZ2", "dA1", "dZ1"):  # dL/d·, the 1/m inside: a third of the course's
        claims[name] = Claim(np.round(course(PARAMS, X, Y)[name] / 3, 8), claims[name].resolution)
    report = validate(make_case(NET, PARAMS, X, Y, claimed=claims, layout="column", deltas="per_sample"))
    assert report.own_errors == ["dZ2"]
    assert report.claims["dZ2"].fits[0].mistake.id == "deltas_other_placement"
    assert "the gradient convention" in report.claims["dZ2"].diagnosis


def test_under_a_sum_the_two_placements_are_the_same_numbers():
    net = Network((2, 4, 1), ("tanh", "sigmoid"), "bce", reduction="sum")
    rows = make_case(net, PARAMS, X, Y, layout="column")
    per_sample = make_case(net, PARAMS, X, Y, layout="column", deltas="per_sample")
    trace = check(rows, against=["fd"]).trace
    assert np.array_equal(rows.shown("dZ1", trace["dZ1"]), per_sample.shown("dZ1", trace["dZ1"]))


# --- the column layout through check: the transposes of the row layout's numbers ------------------

def _json(*args):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue())


def test_check_in_the_column_layout_shows_the_row_layouts_numbers_transposed():
    inline = ["check", "--sizes", "3,4,2", "--activations", "relu,identity", "--loss", "half_mse", "--batch", "5",
              "--against", "torch,jax"]
    code_row, rows = _json(*inline)
    code_col, cols = _json(*inline, "--layout", "column")
    assert code_row == code_col == 0
    for name in ("Z1", "A1", "dZ2", "dW1", "dW2", "dX"):
        np.testing.assert_array_equal(np.array(cols["tensors"][name]["value"]), np.array(rows["tensors"][name]["value"]).T)
    assert cols["tensors"]["db1"]["shape"] == [4, 1] and rows["tensors"]["db1"]["shape"] == [4]
    _, per_sample = _json(*inline, "--deltas", "per_sample")
    for name in ("dZ2", "dA1", "dZ1", "dX"):  # N = 5 times the mean's gradient
        np.testing.assert_allclose(per_sample["tensors"][name]["value"], 5 * np.array(rows["tensors"][name]["value"]),
                                   rtol=1e-15)
    np.testing.assert_array_equal(per_sample["tensors"]["dW1"]["value"], rows["tensors"]["dW1"]["value"])


# --- bias rows and columns --------------------------------------------------------------------------

def test_seed_002s_notebook_validates_verbatim_with_its_bias_rows():
    case = load_example("seed-002-notebook")
    assert case.claimed["db1"].value.shape == (1, 3) and case.claimed["db2"].value.shape == (1, 1)
    report = validate(case)
    assert report.ok, report.summary()
    assert report.to_json()["tensors"]["db1"]["shape"] == [1, 3]   # shown back as written
    assert report.claims["db1"].check.true.shape == (1, 3)


def test_a_bias_row_is_judged_the_same_in_the_file_and_in_the_api():
    # seed 002: d_b2 = rowsum(d_A2) = 0.77325462, printed (1, 1)
    case = load_example("seed-002")
    api = validate(dataclasses.replace(case, claimed={"db2": Claim(np.array([[0.77325462]]), np.full((1, 1), 5e-9))}))
    assert api.ok
    api = validate(make_case(case.network, case.params, case.X, case.Y, claimed={"db2": np.array([[0.77325462]])}))
    assert not api.ok  # raw arrays are exact: 0.77325462 is not the true 0.7732546175750392...
    assert api.claims["db2"].check.true.shape == (1, 1)


def _one_line_exit_2(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_nothing_else_is_broadcast(tmp_path, capsys):
    text = load_example_text("seed-002").replace("b1 = [0.0, 0.0, 0.0]", "b1 = [[0.0], [0.0], [0.0]]")
    path = tmp_path / "column_bias.toml"
    path.write_text(text)
    err = _one_line_exit_2(["check", str(path)], capsys)
    assert "[parameters] b1 has shape (3, 1), expected (3,) or (1, 3)" in err
    path.write_text(load_example_text("seed-002-notebook").replace("db1 = [[0.08669385, 0.09616941, 0.1055807 ]]",
                                                                   "db1 = [[0.08669385], [0.09616941], [0.1055807]]"))
    err = _one_line_exit_2(["validate", str(path)], capsys)
    assert "[claimed] db1 has shape (3, 1), expected (3,) or (1, 3)" in err


def load_example_text(name):
    from manual_backprop.description.catalog import example_text

    return example_text(name)


def test_bad_conventions_and_column_shapes_are_one_line_errors(tmp_path, capsys):
    text = load_example_text("course-2-4-1-column")
    path = tmp_path / "net.toml"
    path.write_text(text.replace('layout = "column"', 'layout = "diagonal"'))
    assert "[network] layout must be \"row\"" in _one_line_exit_2(["check", str(path)], capsys)
    path.write_text(text.replace('deltas = "per_sample"', 'deltas = 3'))
    assert "[network] deltas must be a string" in _one_line_exit_2(["check", str(path)], capsys)
    path.write_text(text.replace('layout = "column"\n', ""))  # the column arrays read as rows
    err = _one_line_exit_2(["check", str(path)], capsys)
    assert "[parameters] W1 has shape (4, 2), expected (2, 4)" in err
    with pytest.raises(Exception, match=r"X has shape \(3, 2\), expected \(2, N\) for input width 2 \(the column"):
        make_case(NET, PARAMS, X.T, Y, layout="column")


# --- your own code in the column layout: check_layer and check_network ------------------------------

def affine_forward(x, w, b):  # the course's column vectors: x (n_in, N), w (n_out, n_in), b (n_out, 1)
    return w @ x + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return w.T @ dout, dout @ x.T, dout.sum(axis=1, keepdims=True)


def test_check_layer_takes_a_column_layout_layer_as_written():
    assert check_layer(affine_forward, affine_backward, "linear", layout="column", against=("torch",)).ok
    # the same code in the row layout fails to run (its shapes do not chain): the layout matters
    assert not check_layer(affine_forward, affine_backward, "linear", against=("torch",)).ok


def test_check_layer_names_a_column_mistake_in_column_terms():
    def backward(dout, cache):
        x, w, b = cache
        return w.T @ dout, x @ dout.T, dout.sum(axis=1, keepdims=True)  # dW transposed: (n_in, n_out)

    report = check_layer(affine_forward, backward, "linear", layout="column", n_in=3, against=("torch",))
    assert not report.ok
    assert any("dW is x @ dout.T, the transposed product; it should be dout @ x.T" in h for h in report.hints)


def test_check_network_runs_the_course_code_in_its_convention():
    def fn(params, X, Y):
        return course(params, X, Y)

    case = make_case(NET, PARAMS, X, Y, layout="column", deltas="per_sample")
    report = check_network(fn, case, float32=False)
    assert report.ok, report.message()
    wrong = check_network(fn, case, deltas="gradient", float32=False)
    assert not wrong.ok and wrong.first_wrong == "dZ2"


# --- seed 004's derivation from dL/dŷ (the shipped example) ---------------------------------------

def test_the_shipped_seed_004_derivation_from_dL_dyhat_is_torchs_unfused_gradient_and_validates():
    import torch

    case = load_example("seed-004-derivation")
    assert validate(case).ok
    # torch autograd of the BCE written from ŷ (not fused with the logits) gives the claimed dA3
    A3 = torch.tensor(case.claimed["A3"].value, requires_grad=True)
    y = torch.tensor(case.Y)
    L = -(y * torch.log(A3) + (1 - y) * torch.log(1 - A3)).mean()
    L.backward()
    np.testing.assert_allclose(case.claimed["dA3"].value, A3.grad.numpy(), atol=1e-8)


def test_a_dL_dyhat_without_its_second_term_is_named_and_carried_into_dZ3():
    case = load_example("seed-004-derivation")
    yhat, y, N = case.claimed["A3"].value, case.Y, case.batch
    wrong = -(1 / N) * (y / yhat)                      # only the y/ŷ term
    claims = {n: case.claimed[n] for n in ("A3", "dA3", "dZ3")}
    claims["dA3"] = Claim(np.round(wrong, 8), np.full(wrong.shape, 5e-9))
    claims["dZ3"] = Claim(np.round(wrong * yhat * (1 - yhat), 8), np.full(wrong.shape, 5e-9))
    report = validate(dataclasses.replace(case, claimed=claims))
    assert report.own_errors == ["dA3"] and report.carried_errors == ["dZ3"]
    assert report.claims["dA3"].fits[0].mistake.id == "bce_second_term_missing"


def test_validate_reads_a_file_in_the_layout_and_deltas_its_options_name(capsys):
    assert main(["validate", "--example", "course-2-4-1-column"]) == 0
    assert main(["validate", "--example", "course-2-4-1-column", "--deltas", "gradient"]) == 1
    out = capsys.readouterr().out
    assert "Your dZ2 is N = 3 times ∂L/∂Z2: the per-sample convention" in out
    err = _one_line_exit_2(["validate", "--example", "course-2-4-1-column", "--layout", "row"], capsys)
    assert "[parameters] W1 has shape (4, 2), expected (2, 4)" in err
