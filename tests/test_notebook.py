"""The notebook a student runs: ``examples/notebook.ipynb``, executed by a real kernel (nbclient).

Its ``text/html`` outputs are what Jupyter shows. The expected verdicts are seed 003's derivation
as ``manual-backprop validate --example seed-003-derivation`` prints them (dZ1 wrong on its own,
the ReLU mask left out; dW1, db1, dX carried from it; every forward claim right) and seed 002's
check (all 14 tensors agree with every reference).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbclient  # the dev extra: pip install -e '.[dev]' (missing, this test fails: it is never skipped)
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"

#: ``manual-backprop validate --example seed-003-derivation``, verdict by verdict.
SEED_003 = {"Z1": "right", "A1": "right", "Z2": "right", "A2": "right", "Z3": "right", "A3": "right",
            "dZ3": "right", "dW3": "right", "db3": "right", "dA2": "right", "dZ2": "right", "dW2": "right",
            "db2": "right", "dA1": "right", "dZ1": "own", "dW1": "carried", "db1": "carried", "dX": "carried",
            "W1_next": "carried", "b1_next": "carried"}
SEED_002_TENSORS = ["Z1", "A1", "Z2", "A2", "L", "dA2", "dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1", "dX"]


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    return {cell.source: cell for cell in nb.cells if cell.cell_type == "code"}


def html_of(cell) -> str:
    outs = [o for o in cell.outputs if o.output_type == "error"]
    assert not outs, "".join(outs[0].traceback)
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert results, f"no result shown for {cell.source!r}"
    assert "text/html" in results[0].data, f"{cell.source!r} shows no HTML: {list(results[0].data)}"
    return results[0].data["text/html"]


def row_kinds(page: str) -> dict[str, str]:
    """Each table row's tensor and the kind of its verdict cell (``data-kind``)."""
    rows = re.findall(r'<tr id="([^"]+)"[^>]*>(.*?)</tr>', page, flags=re.S)
    return {name: re.search(r'data-kind="([a-z_]+)"', body).group(1) for name, body in rows}


def test_validate_as_the_last_line_shows_the_verdicts_table(executed):
    page = html_of(executed["validate(case)"])
    for column in ("tensor", "claimed", "true", "verdict"):
        assert f"<th>{column}</th>" in page
    kinds = row_kinds(page)
    assert {n: kinds[n] for n in SEED_003} == SEED_003
    # the first wrong tensor and its diagnosis come before the table
    table = page.index('<table class="mb-table">')
    assert page.index("First wrong claim: dZ1, wrong on its own.") < table
    assert page.index("ReLU mask left out") < table
    # the true value beside the claim, the wrong elements marked
    dz1 = re.search(r'<tr id="dZ1".*?</tr>', page, flags=re.S).group(0)
    assert "[1, 0, 2, 0]" in dz1 and "-2✗" in dz1
    assert 'class="mb-first"' in dz1
    # the plain-text form too, not a dataclass dump
    plain = executed["validate(case)"].outputs[0].data["text/plain"]
    assert plain.startswith("Seed 003 derivation") and "WRONG: own error (2 of 4)" in plain
    assert "Validation(" not in plain


def test_check_as_the_last_line_shows_the_verdicts_table(executed):
    page = html_of(executed['check(load_example("seed-002"))'])
    for column in ("tensor", "shape", "margin", "verdict", "value"):
        assert f"<th>{column}</th>" in page
    kinds = row_kinds(page)
    assert list(kinds) == SEED_002_TENSORS
    assert set(kinds.values()) == {"right"}
    assert "All 14 tensors agree with" in page


def test_compare_gives_one_line(executed):
    wrong = executed['my_dZ1 = [[1, -2, 2, -1]]\ncompare_tensor("dZ1", my_dZ1, case)']
    page = html_of(wrong)
    assert 'data-kind="wrong"' in page and "NOT within tolerance" in page
    line = wrong.outputs[0].data["text/plain"]
    assert "\n" not in line and line.startswith("dZ1 (1, 4): not exact; NOT within tolerance; max |Δ| 2")
    right = html_of(executed['compare_tensor("dZ1", run(case)["dZ1"], case)'])
    assert 'data-kind="right"' in right and "exact; within tolerance; max |Δ| 0" in right
