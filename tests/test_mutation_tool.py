"""The mutation run (``tools/mutate.py``) makes every classic mistake the issue names, and only in copies.

Running the mutants takes minutes and is CI's job (``python tools/mutate.py``);
these tests only check what the tool makes, which takes a second.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mutate():
    spec = importlib.util.spec_from_file_location("mutate_tool", ROOT / "tools" / "mutate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mutants(mutate):
    return mutate.make_mutants()


def _has(mutants, function: str, *words: str) -> bool:
    return any(m.function == function and all(w in m.description for w in words) for m in mutants)


@pytest.mark.parametrize("function,words", [
    ("relu_backward", ("`np.multiply(dA, np.greater(Z, 0.0, out=scratch), out=out)`", "right operand left out")),
    # ^ a dropped mask
    ("relu_backward", ("np.greater -> np.less",)),                         # an inverted mask
    ("relu_backward", ("np.greater -> np.greater_equal",)),                # >= for >
    ("linear_db", ("dZ.sum(axis=1)",)),                                    # the sum over the wrong axis
    ("softmax_backward", ("constant 1 -> 0",)),                            # ... and axis=0 in the softmax
    ("Loss.gradient", ("`np.multiply(self.grad_into(Z, A, T, out=out), c, out=out)`",
                       "right operand left out")),                         # a missing 1/N
    ("Loss.gradient", ("c / Z.shape[0]",)),                                # an extra 1/N
    ("linear_dA_prev", ("transpose dropped",)),                            # a transposed product
    ("linear_dW", ("operands of @ swapped",)),
    ("half_mse_grad", ("sign of the result flipped",)),                    # a flipped sign
    ("sigmoid_backward", ("np.subtract(1.0, Z",)),                           # Z for A in the sigmoid derivative
    ("tanh_backward", ("np.multiply(Z, Z",)),                              # ... and in the tanh derivative
    ("_run", ("`A_prev, A_prev`",)),                                       # the fast engine passing A for Z
])
def test_each_classic_mistake_of_the_issue_is_a_mutant(mutants, function, words):
    assert _has(mutants, function, *words)


def test_every_mutant_parses_and_changes_the_code(mutants):
    originals = {m.path: (ROOT / m.path).read_text(encoding="utf-8") for m in mutants}
    for m in mutants:
        assert m.source != originals[m.path], m
        ast.parse(m.source)  # a SyntaxError fails the test


def test_the_backward_rules_of_every_engine_are_mutated(mutants):
    paths = {m.path for m in mutants}
    for path in ("kernels/activations.py", "kernels/linear.py", "kernels/losses.py", "engine/trace.py",
                 "engine/fast.py"):
        assert f"manual_backprop/{path}" in paths


def test_no_handwritten_mutant_is_stale_and_every_equivalent_one_exists(mutate, mutants):
    assert mutate.STALE == []
    keys = {m.key for m in mutants}
    assert set(mutate.EQUIVALENT) <= keys


def test_making_mutants_leaves_the_working_tree_untouched(mutate):
    files = sorted((ROOT / "manual_backprop").rglob("*.py"))
    before = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    mutate.make_mutants()
    assert {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files} == before
