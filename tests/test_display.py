"""The notebook tables, the page, the drawing and ``compare``: what a person sees.

Expected verdicts come from the seeds as the command line judges them
(``manual-backprop validate --example seed-003-derivation``: dZ1 wrong on its own, dW1, db1, dX
carried; ``manual-backprop check --example seed-002``: all 14 tensors agree), never from the
code under test run a second way.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import manual_backprop
from manual_backprop import check, compare_tensor, load_example, make_case, run, validate
from manual_backprop.cli import main
from manual_backprop.description.network import Network
from manual_backprop.display import drawing
from manual_backprop.display.cells import KINDS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: ``manual-backprop validate --example seed-003-derivation``.
SEED_003 = {"Z1": "right", "A1": "right", "Z2": "right", "A2": "right", "Z3": "right", "A3": "right",
            "dZ3": "right", "dW3": "right", "db3": "right", "dA2": "right", "dZ2": "right", "dW2": "right",
            "db2": "right", "dA1": "right", "dZ1": "own", "dW1": "carried", "db1": "carried", "dX": "carried",
            "W1_next": "carried", "b1_next": "carried"}


def row_kinds(page: str) -> dict[str, str]:
    rows = re.findall(r'<tr id="([^"]+)"[^>]*>(.*?)</tr>', page, flags=re.S)
    return {name: re.search(r'data-kind="([a-z_]+)"', body).group(1) for name, body in rows}


def chip_kinds(svg: str) -> dict[str, str]:
    return dict(re.findall(r'data-tensor="([^"]+)" data-kind="([a-z_]+)"', svg))


@pytest.fixture(scope="module")
def seed_003():
    return validate(load_example("seed-003-derivation"))


@pytest.fixture(scope="module")
def seed_002_fd():
    return check(load_example("seed-002"), against=["fd"])


def test_validate_table_in_a_notebook(seed_003):
    page = seed_003._repr_html_()
    kinds = row_kinds(page)
    assert {n: kinds[n] for n in SEED_003} == SEED_003
    # the tensors not claimed: their true values, never shown as right
    assert kinds["L"] == "not_judged" and kinds["X"] == "data"
    assert page.index("First wrong claim: dZ1") < page.index('<table class="mb-table">')


def test_plain_repr_is_the_table_not_a_dataclass_dump(seed_003):
    text = repr(seed_003)
    assert not text.startswith("Validation(")
    line = next(x for x in text.splitlines() if x.startswith("dZ1 "))
    assert "[1, -2✗, 2, -1✗]" in line and "[1, 0, 2, 0]" in line and "WRONG: own error (2 of 4)" in line

    p = Printer()
    seed_003._repr_pretty_(p, False)
    assert p.out == [text]


def test_the_cli_table_and_the_notebook_table_say_the_same(seed_003, capsys):
    assert main(["validate", "--example", "seed-003-derivation"]) == 1
    out = capsys.readouterr().out
    for line in repr(seed_003).splitlines():
        if line.startswith(("dZ1 ", "dW1 ", "dX ")):
            assert " ".join(line.split()) in " ".join(out.split())


def test_a_tensor_no_reference_judged_is_grey_never_right(seed_002_fd):
    # finite differences alone cannot judge the forward values (check's own report says so)
    assert seed_002_fd.forward_not_judged == ["Z1", "A1", "Z2", "A2", "L"]
    kinds = row_kinds(seed_002_fd._repr_html_())
    assert all(kinds[n] == "not_judged" for n in ["Z1", "A1", "Z2", "A2", "L"])
    assert all(kinds[n] == "right" for n in ["dA2", "dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1", "dX"])
    svg = drawing.own_svg(_view(seed_002_fd))
    assert chip_kinds(svg)["Z1"] == "not_judged" and chip_kinds(svg)["dW1"] == "right"


def test_gradients_not_judged_are_grey_and_fail(tmp_path):
    report = check(load_example("seed-002"), against=["fd"], per_sample=True)
    assert not report.ok and "dW1_per_sample" in report.not_judged
    kinds = row_kinds(report._repr_html_())
    assert kinds["dW1_per_sample"] == "not_judged"
    assert "not judged by any reference" in report._repr_html_()


class Printer:
    """IPython's pretty printer, as far as ``_repr_pretty_`` uses it."""

    def __init__(self):
        self.out = []

    def text(self, t):
        self.out.append(t)


def _view(report):
    from manual_backprop.display.view import make_view

    options = report._display_options() if hasattr(report, "_display_options") else {}
    return make_view(report, **options)


@pytest.mark.parametrize("backend", ["own", "graphviz"])
def test_the_page_draws_the_network_with_every_tensor_coloured(seed_003, backend, tmp_path):
    if backend == "graphviz" and drawing.drawing_backend() != "graphviz":
        pytest.skip("Graphviz's dot is not on the PATH (the project's own SVG is drawn instead)")
    page = seed_003.to_html(tmp_path / "page.html", backend=backend)
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == page
    assert f'data-backend="{backend}"' in page
    svg = html.unescape(page[page.index("<svg"):page.index("</svg>")])  # Graphviz writes - as &#45;
    # the units and the weights of seed 003 on the edges (W1[0, 2] = 1.0, W3[1, 1] = 2.0, b3 aside)
    assert ">-0.5<" in svg
    for name, words in {"dZ1": "WRONG: own error (2 of 4)", "dW1": "wrong: carried from dZ1 (6 of 12)",
                        "dX": "wrong: carried from dZ1 (3 of 3)", "Z1": "right", "L": "not claimed"}.items():
        assert f"{name} " in svg and words in svg, name
    # the true value of dZ1 on hover, next to the claim
    assert "true: [1, 0, 2, 0]" in svg and "claimed: [1, -2, 2, -1]" in svg
    assert drawing.COLOURS["own"][0] in svg and drawing.COLOURS["carried"][0] in svg
    assert "◀ first" in svg
    if backend == "own":
        chips = chip_kinds(svg)
        assert {n: chips[n] for n in ("dZ1", "dW1", "db1", "dX", "Z1", "dA1")} == \
            {"dZ1": "own", "dW1": "carried", "db1": "carried", "dX": "carried", "Z1": "right", "dA1": "right"}
        assert chips["L"] == "not_judged" and chips["W1"] == "data"
    # self-contained: nothing fetched
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", page)


def test_without_dot_the_project_draws_its_own(monkeypatch, seed_003):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert drawing.drawing_backend() == "own"
    assert 'data-backend="own"' in seed_003.to_html()


def test_a_big_network_is_drawn_as_blocks_with_shapes():
    case = make_case(Network((40, 30, 10), ("relu", "identity"), "half_mse", "mean", "float64"), seed=0, batch=2)
    report = check(case, against=["fd"])
    svg = drawing.own_svg(_view(report))
    assert "40 units" in svg and "W1 (40, 30)" in svg and "dW1 (40, 30)" in svg
    assert "<circle" not in svg


def test_check_page_and_svg_from_the_command_line(tmp_path, capsys):
    page, svg = tmp_path / "check.html", tmp_path / "check.svg"
    assert main(["check", "--example", "seed-000", "--against", "fd", "--html", str(page), "--svg", str(svg)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    kinds = row_kinds(text)
    assert kinds["dW1"] == "right" and kinds["Z1"] == "not_judged"
    drawn = svg.read_text(encoding="utf-8")
    assert drawn.startswith("<?xml") and "<svg" in drawn and "</svg>" in drawn
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left behind


@pytest.mark.parametrize("option", ["--html", "--svg"])
@pytest.mark.parametrize("command", [["validate", "--example", "seed-003-derivation"],
                                     ["check", "--example", "seed-002", "--against", "fd"]])
def test_a_bad_path_is_exit_2_with_one_line(tmp_path, capsys, command, option):
    for bad, words in ((tmp_path, "it is a folder"), (tmp_path / "no" / "page.html", "no such folder")):
        assert main([*command, option, str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and err.startswith("manual-backprop: cannot write to")


def test_compare_uses_the_engine_truth_and_the_one_policy():
    case = load_example("seed-003-derivation")
    true = run(case)["dZ1"]
    exact = compare_tensor("dZ1", true, case)
    assert exact.exact and exact.ok and exact.max_abs_err == 0
    assert repr(exact) == "dZ1 (1, 4): exact; within tolerance; max |Δ| 0, margin 0 (≤ 1 passes)"
    # the derivation's dZ1 (the mask left out): wrong at 2 elements, by 2
    wrong = compare_tensor("dZ1", [[1, -2, 2, -1]], case)
    assert not wrong.ok and wrong.max_abs_err == 2 and "\n" not in repr(wrong)
    assert "NOT within tolerance" in repr(wrong) and "worst dZ1[0, 1]: yours -2, true 0" in repr(wrong)
    assert 'data-kind="wrong"' in wrong._repr_html_()
    assert "shape (4, 1) here" in repr(compare_tensor("dZ1", true.T, case))
    with pytest.raises(manual_backprop.InputError, match="not a tensor of this network"):
        compare_tensor("dQ", true, case)


def test_compare_is_within_tolerance_off_the_last_bits_only():
    case = load_example("seed-002")
    true = run(case)["dW1"]
    near = compare_tensor("dW1", true + np.spacing(true), case)
    assert near.ok and not near.exact and 0 < near.margin <= 1
    far = compare_tensor("dW1", true * (1 + 1e-6), case)
    assert not far.ok and far.margin > 1


def test_the_helper_is_compare_tensor_beside_the_compare_folder():
    import types

    from manual_backprop.compare import tolerance  # noqa: F401  (the folder of the one policy)

    assert manual_backprop.compare_tensor is compare_tensor
    assert isinstance(manual_backprop.compare, types.ModuleType)


def test_layer_loss_and_network_reports_show_a_table():
    from manual_backprop import check_layer, check_network
    from manual_backprop.testing.layers import LayerReport

    def forward(x, params):
        return x @ params["W"] + params["b"]

    def backward(dout, cache):
        x, params = cache
        return {"dx": dout @ params["W"].T, "dW": x.T @ dout, "db": dout.sum(axis=0)}

    layer = check_layer(lambda x, p: (forward(x, p), (x, p)), backward, "linear")
    assert isinstance(layer, LayerReport)
    page = layer._repr_html_()
    assert "<table" in page and ("right" in row_kinds(page).values() or "wrong" in row_kinds(page).values())
    printer = Printer()
    layer._repr_pretty_(printer, False)
    assert printer.out[0].startswith("linear layer") and "tensor  trial" in printer.out[0]
    from manual_backprop import load_case

    net = check_network(_student("two_layer_net_mistake.py"), load_case(EXAMPLES / "two_layer.toml"))
    assert not net.ok
    page = net._repr_html_()
    assert "<th>trial</th>" in page and "<th>yours</th>" in page and net.first_wrong in row_kinds(page)
    assert "<svg" in net.to_html()


def _student(filename: str):
    from manual_backprop.cli.validate import load_code

    source = (EXAMPLES / filename).read_text(encoding="utf-8")
    name = re.search(r"^(?:class|def) (\w+)", source, flags=re.M).group(1)
    return load_code(str(EXAMPLES / filename), name)


def test_every_kind_has_a_colour_and_a_legend():
    assert set(KINDS) == set(drawing.COLOURS)


def test_the_repr_of_every_report_is_its_table_not_a_dataclass_dump():
    import numpy as np

    from manual_backprop import check_layer

    def relu_forward(x, params):
        return np.maximum(x, 0), x

    def relu_backward(dout, x):
        return dout * (x > 0)

    text = repr(check_layer(relu_forward, relu_backward, "relu", against=("torch",)))
    assert "LayerReport(" not in text and "relu" in text and "dx" in text
