"""`check --values` prints every true value; `check` says when it left a file's [claimed] values unjudged.

Expected numbers come from seed 003 (``/work/shared/seeds/003_*.txt`` and the notes of
``manual_backprop/examples/seed-003.toml``, whose weights make the seed's story hold):

    Z1 = [1, -1, 0.5, -2], A1 = [1, 0, 0.5, 0], Z2 = [1, -1], Z3 = [2, 2, -20]   (exact: short sums)
    Y_pred = A3 = [0.5, 0.5, 0]  (really [0.5, 0.5, 1.4e-10]: no finite logits give exactly 0)
    dZ3 = Y_pred - Y_target = [0.5, -0.5, 0],   dA2 = [1, -1],   dZ2 = [1, 0]
    dA1 = [1, -2, 2, -1],   dZ1 = [1, 0, 2, 0]  (the seed's comments: the ReLU mask)
    L = -log(0.5) = ln 2 = 0.693147...

The softmax's 1.4e-10 moves the gradients by about that much, so they are compared within 1e-9.
"""

from __future__ import annotations

import ast
import json
import math

import numpy as np
import pytest

from manual_backprop.cli import main

SEED_003 = ["check", "--example", "seed-003", "--against", "fd"]
SENTENCE = "were not judged: check compares the engine with the references"


def printed_values(out: str) -> dict[str, tuple[tuple[int, ...], np.ndarray]]:
    """The ``--values`` section: ``NAME (shape)`` then the value as NumPy prints it (Python literals)."""
    section = out.split("Values (the engine's, as --json gives them; each float in full):\n", 1)[1]
    values, name, shape, text = {}, None, None, []
    for line in section.splitlines() + ["END ()"]:
        head = line.split(" ", 1)
        if len(head) == 2 and head[1].startswith("(") and head[0].isidentifier():
            if name is not None:
                values[name] = (shape, np.array(ast.literal_eval(" ".join(text)), dtype=np.float64))
            name, shape, text = head[0], ast.literal_eval(head[1]), []
        else:
            text.append(line)
    return values


@pytest.fixture(scope="module")
def seed_003():
    import io
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(SEED_003 + ["--values"])
    return code, out.getvalue()


def test_values_prints_seed_003s_forward_values_exactly(seed_003):
    code, out = seed_003
    assert code in (0, 1)
    values = printed_values(out)
    assert values["Z1"][0] == (1, 4)
    np.testing.assert_array_equal(values["Z1"][1], [[1, -1, 0.5, -2]])
    np.testing.assert_array_equal(values["A1"][1], [[1, 0, 0.5, 0]])
    np.testing.assert_array_equal(values["Z2"][1], [[1, -1]])
    np.testing.assert_array_equal(values["Z3"][1], [[2, 2, -20]])


def test_values_prints_seed_003s_prediction_loss_and_gradients(seed_003):
    values = printed_values(seed_003[1])
    np.testing.assert_allclose(values["A3"][1], [[0.5, 0.5, 0]], rtol=0, atol=1e-9)
    assert 1e-10 < values["A3"][1][0, 2] < 2e-10                     # the notes' 1.4e-10, printed, not rounded to 0
    assert values["L"][0] == () and abs(float(values["L"][1]) - math.log(2)) < 1e-9
    np.testing.assert_allclose(values["dZ3"][1], [[0.5, -0.5, 0]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(values["dA2"][1], [[1, -1]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(values["dZ2"][1], [[1, 0]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(values["dA1"][1], [[1, -2, 2, -1]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(values["dZ1"][1], [[1, 0, 2, 0]], rtol=0, atol=1e-9)
    assert values["dW1"][0] == (3, 4) and values["db1"][0] == (4,)


def test_values_are_printed_in_full_and_read_back_as_the_json_values(seed_003, capsys):
    values = printed_values(seed_003[1])
    main(SEED_003 + ["--json"])
    tensors = json.loads(capsys.readouterr().out)["tensors"]
    assert list(values) == list(tensors)                              # every tensor, in the table's order
    for name, (shape, value) in values.items():
        assert list(shape) == tensors[name]["shape"]
        np.testing.assert_array_equal(value, np.array(tensors[name]["value"]))   # bit for bit: round-trips
    assert "..." not in seed_003[1].split("each float in full", 1)[1]


def test_values_changes_nothing_with_json(capsys):
    main(SEED_003 + ["--json"])
    plain = json.loads(capsys.readouterr().out)
    main(SEED_003 + ["--json", "--values"])
    with_values = json.loads(capsys.readouterr().out)
    for out in (plain, with_values):
        out.pop("timings_s")
        out.pop("environment")
    assert with_values == plain


def test_without_values_no_values_are_printed(capsys):
    main(SEED_003)
    assert "Values (" not in capsys.readouterr().out


def test_help_says_values_changes_nothing_with_json(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--values" in help_text and "with --json it changes nothing" in help_text


# --- claims in the file, not judged by check ------------------------------------------------------

DERIVATION = ["check", "--example", "seed-003-derivation", "--against", "fd"]
# the [claimed] table of manual_backprop/examples/seed-003-derivation.toml, in its order (20 names)
DERIVATION_CLAIMS = ["Z1", "A1", "Z2", "A2", "Z3", "A3", "dZ3", "dW3", "db3", "dA2", "dZ2", "dW2", "db2",
                     "dA1", "dZ1", "dW1", "db1", "dX", "W1_next", "b1_next"]


def test_check_of_a_file_with_claims_says_they_were_not_judged(capsys):
    main(DERIVATION)
    out = " ".join(capsys.readouterr().out.split())
    assert ("20 claimed values in the file were not judged: check compares the engine with the references; "
            "run manual-backprop validate --example seed-003-derivation to judge them.") in out


def test_check_json_lists_the_claims_not_judged_in_the_files_order(capsys):
    main(DERIVATION + ["--json"])
    assert json.loads(capsys.readouterr().out)["claims_not_judged"] == DERIVATION_CLAIMS


def test_check_of_a_file_without_claims_says_nothing_and_lists_none(capsys):
    main(SEED_003)
    assert SENTENCE not in " ".join(capsys.readouterr().out.split())
    main(SEED_003 + ["--json"])
    assert json.loads(capsys.readouterr().out)["claims_not_judged"] == []


def test_a_file_path_is_named_in_the_sentence_and_one_claim_is_singular(tmp_path, monkeypatch, capsys):
    from manual_backprop.description.catalog import example_text

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.toml").write_text(example_text("seed-003") + "\n[claimed]\ndZ3 = [[0.5, -0.5, 0]]\n")
    main(["check", "net.toml", "--against", "fd"])
    out = " ".join(capsys.readouterr().out.split())
    assert ("1 claimed value in the file was not judged: check compares the engine with the references; "
            "run manual-backprop validate net.toml to judge them.") in out


def test_the_html_page_carries_the_same_sentence(tmp_path, capsys):
    page = tmp_path / "check.html"
    main(DERIVATION + ["--html", str(page)])
    text = page.read_text()
    assert ("20 claimed values in the file were not judged: check compares the engine with the references; "
            "run manual-backprop validate --example seed-003-derivation to judge them.") in text
    page2 = tmp_path / "plain.html"
    main(SEED_003 + ["--html", str(page2)])
    assert SENTENCE not in page2.read_text()
