#!/usr/bin/env python3
"""Mutation testing of the hand-derived backward rules: every mutant must be killed by the tests.

A *mutant* is the source with one small change in a backward rule: a dropped
or inverted mask, ``>=`` for ``>``, a sum over the wrong axis, a missing or
extra 1/N, a transposed product, a flipped sign, ``Z`` for ``A`` in the
sigmoid derivative, and every systematic operator change that can be made
in the syntax tree of the backward functions (``+``/``-``, ``*``/``/``, a
factor left out, a comparison turned, a constant changed, a ``.T`` dropped,
an operand order swapped, a step left out), whether written with operators
or as NumPy ufuncs with ``out=`` (``np.multiply(a, b, out=o)`` loses a factor
as ``np.positive(a, out=o)``). The rules live in ``kernels/``, which both
engines call; what backward code is left in the engines (the order of the
steps, the buffers and layers each kernel is given) is mutated there.
Each mutant is run against a fast, targeted subset of the test suite; it is
*killed* if some test fails. The mutation score is killed / all; anything
below 100% exits 1.

The working tree is never touched. The package, its references and the tests
are copied once into a temporary folder; each mutant gets its own copy of
that with the one file changed, and is tested in a child process whose
import path points at it. The copies are removed at the end, also on Ctrl-C.
On POSIX the children are forked from a parent that has already imported
NumPy, torch and pytest, so a mutant costs its tests and not the imports.

    python tools/mutate.py              # every mutant, 2 at a time; the table and the score; exit 0 at 100%,
                                        # 1 below it, 2 if the unmutated code already fails its tests
    python tools/mutate.py --list       # the mutants, without running them
    python tools/mutate.py --show 17    # the change mutant 17 makes
    python tools/mutate.py --only 17 42 # just these
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("manual_backprop", "tests", "pyproject.toml")

# The tests each mutant is given, fastest and most discriminating first. torch only:
# JAX would compile every network again in every child.
# The kernels' own tests come first: each rule against the derivative of its own forward (so that an
# activation or loss registered later is judged with no edit here), and the out=/scratch= forms and
# labels that only the fast engine uses.
KERNEL_OWN = ["tests/test_fast.py::test_every_activation_backward_is_the_derivative_of_its_forward",
              "tests/test_fast.py::test_every_loss_gradient_is_the_derivative_of_its_terms",
              "tests/test_fast.py::test_every_activation_kernel_writes_into_out_in_place_and_with_scratch",
              "tests/test_fast.py::test_every_loss_kernel_writes_into_out_and_takes_labels",
              "tests/test_dAL.py::test_the_unfused_kernels_give_the_arithmetic_values"]
AUTOGRAD_TESTS = ["tests/test_every_backward_rule.py", "tests/test_seeds.py"]
KERNEL_TESTS = KERNEL_OWN + AUTOGRAD_TESTS
REGULARIZATION_TESTS = ["tests/test_regularization_kernels.py",
                        "tests/test_regularization.py::test_the_course_network_gives_its_published_regularised_loss",
                        "tests/test_regularization.py::test_the_penalty_reaches_every_gradient_it_covers_as_torch_says",
                        "tests/test_regularization.py::test_accumulated_micro_batches_add_the_penalty_once"]
NORM_TESTS = ["tests/test_norms.py::test_the_engine_matches_the_students_long_form_derivation",
              "tests/test_norms.py::test_every_tensor_agrees_with_torch_jax_and_finite_differences"]
ENGINE_TESTS = AUTOGRAD_TESTS + REGULARIZATION_TESTS + NORM_TESTS + ["tests/test_accumulation.py", "-k", "not jax"]
FAST_TESTS = ["tests/test_fast.py",
              "tests/test_extremes.py::test_the_fast_engine_stays_finite_at_saturated_logits_and_equals_the_engine",
              "tests/test_regularization.py::test_the_fast_engine_adds_the_same_penalty"]
OPTIMIZER_TESTS = ["tests/test_optimizer_kernels.py"]
# -x: the first failure kills the mutant; plain asserts: no rewriting of every module on each run;
# no gc-heavy unraisable-exception hooks at exit (torch makes the heap large).
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:benchmark",
               "-p", "no:unraisableexception", "-p", "no:threadexception",
               "--assert=plain", "--no-header", "-rfE", "--tb=no"]


@dataclass(frozen=True)
class Target:
    """The backward functions of one file, and the tests that judge them."""

    path: str
    functions: Callable[[str], bool]
    tests: list[str]
    #: For a function that does forward and backward: mutate only the statements after the one starting so.
    after: dict[str, str] = field(default_factory=dict)


TARGETS = [
    Target("manual_backprop/kernels/activations.py", lambda q: q.endswith("_backward"), KERNEL_TESTS),
    Target("manual_backprop/kernels/linear.py",
           lambda q: q in {"linear_dW", "linear_db", "linear_dA_prev", "linear_backward"}, KERNEL_TESTS + FAST_TESTS),
    Target("manual_backprop/kernels/losses.py",
           lambda q: q.endswith("_grad") or q in {"Loss.scale", "Loss.gradient"}, KERNEL_TESTS),
    Target("manual_backprop/kernels/regularization.py", lambda q: q in {"l2_penalty", "l2_gradient"},
           REGULARIZATION_TESTS),
    Target("manual_backprop/kernels/optimizers.py",
           lambda q: q.endswith(("_update", "_state", "_step")) and q != "_state", OPTIMIZER_TESTS),
    Target("manual_backprop/kernels/normalization.py",
           lambda q: q in {"norm_backward", "norm_dgamma", "norm_dbeta", "norm_dN", "norm_dZ"}, NORM_TESTS),
    Target("manual_backprop/engine/trace.py", lambda q: q in {"backward", "_accumulate"}, ENGINE_TESTS),
    Target("manual_backprop/engine/fast.py", lambda q: q in {"_run", "_loss_and_dZ"}, FAST_TESTS,
           after={"_run": "_loss_and_dZ("}),
]

# The classic mistakes, written out where the operators below cannot make them: (file, function, old, new).
# derivative = A * (1 - A), made in place
_SIGMOID_DERIVATIVE = "np.subtract(1.0, A, out=scratch)\n    np.multiply(A, derivative, out=derivative)"
HANDWRITTEN = [
    ("manual_backprop/kernels/activations.py", "sigmoid_backward", _SIGMOID_DERIVATIVE,
     "np.subtract(1.0, Z, out=scratch)\n    np.multiply(Z, derivative, out=derivative)"),  # Z * (1 - Z)
    ("manual_backprop/kernels/activations.py", "sigmoid_backward", _SIGMOID_DERIVATIVE, "A"),
    ("manual_backprop/kernels/activations.py", "relu_backward", "np.greater(Z, 0.0, out=scratch)",
     "np.greater_equal(A, 0.0, out=scratch)"),                                       # (A >= 0)
    ("manual_backprop/kernels/activations.py", "tanh_backward", "np.multiply(A, A, out=scratch)",
     "np.multiply(Z, Z, out=scratch)"),                                            # 1 - Z * Z
    ("manual_backprop/kernels/linear.py", "linear_db", "np.ones(dZ.shape[0], dtype=dZ.dtype) @ dZ", "dZ.sum(axis=1)"),
    ("manual_backprop/kernels/linear.py", "linear_dW", "A_prev.T @ dZ", "(dZ.T @ A_prev)"),
    ("manual_backprop/kernels/losses.py", "Loss.gradient", "out=out), c, out=out)",
     "out=out), c / Z.shape[0], out=out)"),
    ("manual_backprop/kernels/losses.py", "Loss.scale", "1.0 / N", "1.0 / (N - 1)"),
    ("manual_backprop/kernels/losses.py", "Loss.scale", "1.0 / (N * K)", "1.0 / N"),
    ("manual_backprop/engine/trace.py", "backward", 'fwd[network.pre_activation(l)], fwd[f"A{l}"])',
     'fwd[network.pre_activation(l)], fwd[network.pre_activation(l)])'),
    # A passed for Z even to a backward that needs Z itself (one without the registry's backward_from_A)
    ("manual_backprop/engine/fast.py", "_run", "ws.Z_seen[l - 1], A_prev", "A_prev, A_prev"),
]

#: Handwritten mutants whose code has changed since (reported, so that the list is kept up to date).
STALE: list[str] = []
#: Every mutant made (before --only picks some).
ALL: list = []

# Mutants that compute the same thing as the original, with the reason. Keyed by
# "path:function: description"; they are listed, and left out of the score.
_1D = "a transpose of a 1-D array is the same array"
EQUIVALENT: dict[str, str] = {
    "manual_backprop/kernels/linear.py:linear_dW: in `if A_prev.shape[0] == 1:`: `1` constant 1 -> 0":
        "N == 0 never holds, so every batch takes A_prev.T @ dZ, which for N = 1 is the same outer product",
    "manual_backprop/kernels/linear.py:linear_db: in `return np.ones(dZ.shape[0], dtype=dZ.dtype) @ dZ`: "
    "`np.ones(dZ.shape[0], dtype=dZ.dtype) @ dZ` left operand of @ transposed": _1D,
    "manual_backprop/kernels/linear.py:linear_db: in `if dZ.shape[0] == 1: # one row: its copy`: `1` constant 1 -> 0":
        "the one-row shortcut db = dZ[0] is skipped; ones @ dZ gives the same row",
}


# --- making mutants ----------------------------------------------------------------------------

@dataclass
class Mutant:
    id: int
    path: str
    function: str
    line: int
    description: str  # what changes, in words, without the line number (so that it survives edits above it)
    source: str
    tests: list[str]
    key: str = ""     # "path:function: description", numbered "#2", "#3" where the same words recur

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.function}: {self.description}"


SWAP_BINOP = {ast.Add: [ast.Sub], ast.Sub: [ast.Add], ast.Mult: [ast.Div], ast.Div: [ast.Mult]}
SWAP_CMP = {ast.Gt: [ast.GtE, ast.Lt], ast.GtE: [ast.Gt, ast.Lt], ast.Lt: [ast.LtE, ast.Gt], ast.LtE: [ast.Lt, ast.Gt],
            ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.Is: [ast.IsNot], ast.IsNot: [ast.Is],
            ast.In: [ast.NotIn], ast.NotIn: [ast.In]}
SWAP_UFUNC = {"greater": ["greater_equal", "less"], "greater_equal": ["greater"], "less": ["less_equal"],
              "add": ["subtract"], "subtract": ["add"], "multiply": ["divide"], "divide": ["multiply"],
              "maximum": ["minimum"], "minimum": ["maximum"]}
SWAP_ARGS = {"subtract", "divide", "matmul"}
# A ufunc with out= loses an operand as np.positive(the other, out=...), which writes it unchanged.
DROP_OPERAND = {"multiply": ("right", "left"), "add": ("right", "left"),
                "subtract": ("right",), "divide": ("right",)}
SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.MatMult: "@"}


def _const_variants(value) -> list:
    if isinstance(value, bool):
        return [not value]
    if not isinstance(value, (int, float)):
        return []
    table = {0: [1], 1: [0, 2], 2: [1], 0.5: [1.0]}
    return table.get(value, [value + 1])


def _negate(node: ast.expr) -> ast.expr:
    return ast.UnaryOp(op=ast.USub(), operand=node)


def _transposed(node: ast.expr) -> ast.expr:
    if isinstance(node, ast.Attribute) and node.attr == "T":
        return node.value
    return ast.Attribute(value=node, attr="T", ctx=ast.Load())


def expression_variants(node: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """Every mutation of one expression node: (replacement, what it does)."""
    c = copy.deepcopy
    if isinstance(node, ast.BinOp):
        for op in SWAP_BINOP.get(type(node.op), []):
            yield ast.BinOp(c(node.left), op(), c(node.right)), f"{SYMBOL[type(node.op)]} -> {SYMBOL[op]}"
        if isinstance(node.op, ast.MatMult):
            yield ast.BinOp(c(node.right), ast.MatMult(), c(node.left)), "operands of @ swapped"
            yield ast.BinOp(_transposed(c(node.left)), ast.MatMult(), c(node.right)), "left operand of @ transposed"
            yield ast.BinOp(c(node.left), ast.MatMult(), _transposed(c(node.right))), "right operand of @ transposed"
        if isinstance(node.op, (ast.Mult, ast.Add)):
            yield c(node.left), "right operand left out"
            yield c(node.right), "left operand left out"
        if isinstance(node.op, (ast.Sub, ast.Div)):
            yield c(node.left), "right operand left out"
    elif isinstance(node, ast.Compare) and len(node.ops) == 1:
        for op in SWAP_CMP.get(type(node.ops[0]), []):
            yield ast.Compare(c(node.left), [op()], c(node.comparators)), f"comparison -> {op.__name__}"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        yield c(node.operand), "sign or negation dropped"
    elif isinstance(node, ast.BoolOp):
        op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield ast.BoolOp(op, c(node.values)), f"{type(node.op).__name__.lower()} -> {type(op).__name__.lower()}"
    elif isinstance(node, ast.Constant):
        for v in _const_variants(node.value):
            yield ast.Constant(v), f"constant {node.value!r} -> {v!r}"
    elif isinstance(node, ast.Attribute) and node.attr == "T":
        yield c(node.value), "transpose dropped"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
            and node.func.value.id == "np":
        name = node.func.attr
        for other in SWAP_UFUNC.get(name, []):
            new = c(node)
            new.func.attr = other
            yield new, f"np.{name} -> np.{other}"
        if name in SWAP_ARGS and len(node.args) >= 2:
            new = c(node)
            new.args[0], new.args[1] = new.args[1], new.args[0]
            yield new, f"arguments of np.{name} swapped"
        if name in DROP_OPERAND and len(node.args) == 2:
            for side in DROP_OPERAND[name]:
                new = c(node)
                new.func.attr = "positive"
                new.args = [new.args[0] if side == "right" else new.args[1]]
                yield new, f"{side} operand left out"


def statement_variants(node: ast.stmt) -> Iterator[tuple[ast.AST, str]]:
    """Every mutation of one statement: a sign flip of what it returns, += changed, a step left out."""
    c = copy.deepcopy
    if isinstance(node, ast.Return) and node.value is not None and not isinstance(node.value, ast.Tuple):
        yield ast.Return(_negate(c(node.value))), "sign of the result flipped"
    if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
        for i in range(len(node.value.elts)):
            new = c(node)
            new.value.elts[i] = _negate(new.value.elts[i])
            yield new, f"sign of result {i} flipped"
    if isinstance(node, ast.AugAssign):
        for op in SWAP_BINOP.get(type(node.op), []):
            yield ast.AugAssign(c(node.target), op(), c(node.value)), f"{SYMBOL[type(node.op)]}= -> {SYMBOL[op]}="
        target = c(node.target)
        target.ctx = ast.Store()
        yield ast.Assign([target], c(node.value), lineno=node.lineno), "accumulation overwrites instead"
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        yield ast.Pass(), "step left out"


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node``, skipping what cannot change a number: messages, annotations, raises."""
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "type_comment"):
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if not isinstance(child, ast.AST) or isinstance(child, (ast.Raise, ast.JoinedStr)):
                if isinstance(child, ast.JoinedStr):  # f-string keys like f"A{l - 1}": their expressions only
                    for v in child.values:
                        if isinstance(v, ast.FormattedValue):
                            yield v.value
                            yield from _walk(v.value)
                continue
            yield child
            yield from _walk(child)


def _body(func: ast.FunctionDef, after: str | None, src: str) -> list[ast.stmt]:
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if after is not None:
        starts = [i for i, s in enumerate(body) if after in (ast.get_source_segment(src, s) or "")]
        body = body[starts[0] + 1:] if starts else body  # marker gone: the whole function (forward mutants die too)
    return body


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    yield f"{node.name}.{item.name}", item


class Source:
    """One file's text, with byte offsets per line (ast positions count UTF-8 bytes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8")
        self.starts = [0]
        for line in self.data.split(b"\n")[:-1]:
            self.starts.append(self.starts[-1] + len(line) + 1)

    def line(self, lineno: int) -> str:
        return self.text.splitlines()[lineno - 1].strip()

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.starts[node.lineno - 1] + node.col_offset, self.starts[node.end_lineno - 1] + node.end_col_offset)

    def splice(self, node: ast.AST, new: ast.AST) -> str | None:
        """The file with ``node`` replaced by ``new``; None if the node's position cannot be trusted."""
        a, b = self.span(node)
        segment = self.data[a:b].decode("utf-8")
        is_stmt = isinstance(node, ast.stmt)
        try:
            parsed = ast.parse(segment, mode="exec" if is_stmt else "eval")
        except SyntaxError:
            return None
        parsed_node = parsed.body[0] if is_stmt else parsed.body
        if ast.dump(parsed_node) != ast.dump(node):
            return None  # positions inside some f-strings are not exact: leave such a node alone
        new = ast.fix_missing_locations(new)
        if ast.dump(new) == ast.dump(node):
            return None
        text = ast.unparse(new)
        if not is_stmt:
            text = f"({text})"  # an expression in parentheses is valid wherever the original stood
        return (self.data[:a] + text.encode("utf-8") + self.data[b:]).decode("utf-8")


def _short(text: str | None, width: int = 100) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def make_mutants(root: Path = ROOT) -> list[Mutant]:
    mutants: list[Mutant] = []
    seen: set[tuple[str, str]] = set()

    keys: dict[str, int] = {}

    def add(path: str, function: str, line: int, description: str, text: str | None, tests: list[str]) -> None:
        if text is None or (path, text) in seen:
            return
        seen.add((path, text))
        key = f"{path}:{function}: {description}"
        keys[key] = keys.get(key, 0) + 1
        if keys[key] > 1:
            key += f" #{keys[key]}"
        mutants.append(Mutant(len(mutants) + 1, path, function, line, description, text, tests, key))

    for target in TARGETS:
        file = root / target.path
        if not file.exists():
            continue
        src = Source(file.read_text(encoding="utf-8"))
        tree = ast.parse(src.text)
        for qualname, func in _functions(tree):
            if not target.functions(qualname):
                continue
            for stmt in _body(func, target.after.get(qualname), src.text):
                for node in [stmt, *_walk(stmt)]:
                    variants = statement_variants(node) if isinstance(node, ast.stmt) else expression_variants(node)
                    for new, what in variants:
                        add(target.path, qualname, node.lineno,
                            f"in `{_short(src.line(node.lineno))}`: `{_short(ast.get_source_segment(src.text, node))}` {what}",
                            src.splice(node, new), target.tests)
    for path, function, old, new in HANDWRITTEN:
        file = root / path
        if not file.exists():
            continue
        text = file.read_text(encoding="utf-8")
        tree = ast.parse(text)
        func = dict(_functions(tree)).get(function)
        if func is None:
            STALE.append(f"{path} has no function {function} any more: update HANDWRITTEN in tools/mutate.py")
            continue
        lines = text.splitlines(keepends=True)
        first = _body(func, None, text)[0]  # the code after the docstring: a formula there is not the rule
        start, end = first.lineno - 1, func.end_lineno
        body = "".join(lines[start:end])
        if old not in body:
            STALE.append(f"{path}:{function} no longer contains {old!r}: update HANDWRITTEN in tools/mutate.py")
            continue
        line = first.lineno + body[: body.index(old)].count("\n")
        mutated = "".join(lines[:start]) + body.replace(old, new, 1) + "".join(lines[end:])
        tests = next(t.tests for t in TARGETS if t.path == path)
        add(path, function, line, f"`{old}` -> `{new}` (classic mistake)", mutated, tests)
    return mutants


# --- running them ------------------------------------------------------------------------------

@dataclass
class Result:
    mutant: Mutant
    status: str  # killed | survived | timeout | equivalent
    by: str = ""
    seconds: float = 0.0


def _snapshot(tmp: Path) -> Path:
    """A clean copy of what the tests need, with bytecode compiled once (the job slots are copies of it)."""
    snap = tmp / "clean"
    snap.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, snap / name, ignore=ignore)
        else:
            shutil.copy2(src, snap / name)
    import compileall

    compileall.compile_dir(str(snap), quiet=2)
    return snap


def _write(slot: Path, snap: Path, path: str, text: str | None) -> None:
    """Put the mutant's text (or, with None, the original file) into a slot, and drop that module's bytecode.

    The children write no bytecode, so a stale .pyc of an earlier mutant can never be loaded.
    """
    file = slot / path
    if text is None:
        shutil.copy2(snap / path, file)
    else:
        file.write_text(text, encoding="utf-8")
    for pyc in (file.parent / "__pycache__").glob(f"{file.stem}.*.pyc"):
        pyc.unlink()


def _child(where: Path, tests: list[str], log: Path) -> None:
    """In the forked child: point imports at the copy, run pytest, and leave without cleanup."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)   # Ctrl-C or a CI timeout ends a child at once;
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent cleans up
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(where)
        sys.path.insert(0, str(where))
        sys.dont_write_bytecode = True
        import manual_backprop

        if not Path(manual_backprop.__file__).resolve().is_relative_to(where.resolve()):
            print(f"mutate.py: imported {manual_backprop.__file__}, not the copy in {where}")
            os._exit(WRONG_IMPORT)
        import pytest

        code = pytest.main([*PYTEST_ARGS, *tests])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    except BaseException:  # noqa: BLE001 - anything in the child is a failed run
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(99)


#: A child's exit code when the package it imported is not the mutated copy (the run is then void).
WRONG_IMPORT = 98


def _start(where: Path, tests: list[str], log: Path, fork: bool):
    if fork:
        pid = os.fork()
        if pid == 0:
            _child(where, tests, log)
        return pid
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(where), os.environ.get("PYTHONPATH", "")]),
               PYTHONDONTWRITEBYTECODE="1")
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests], cwd=where, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _poll(handle, fork: bool) -> int | None:
    if fork:
        pid, status = os.waitpid(handle, os.WNOHANG)
        return None if pid == 0 else os.waitstatus_to_exitcode(status)
    return handle.poll()


def _kill(handle, fork: bool) -> None:
    try:
        if fork:
            os.kill(handle, signal.SIGKILL)
            os.waitpid(handle, 0)
        else:
            handle.kill()
            handle.wait()
    except (ProcessLookupError, ChildProcessError):
        pass


def _killed_by(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" ", 1)[1].split(" - ")[0]
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1][:100] if lines else "the test run failed"


def run_all(mutants: list[Mutant], jobs: int, timeout: float, fork: bool, progress: bool) -> tuple[list[Result], float]:
    tmp = Path(tempfile.mkdtemp(prefix="mutate-"))
    running: dict[int, tuple] = {}
    results: list[Result] = []
    try:
        snap = _snapshot(tmp)
        slots = []
        for i in range(jobs):  # one private copy per job: a mutant is written in, run, and written back
            slots.append(tmp / f"slot{i}")
            shutil.copytree(snap, slots[-1])
        # The unmutated code must pass the same tests, or no kill means anything.
        t0 = time.perf_counter()
        for tests in dict.fromkeys(tuple(m.tests) for m in mutants):
            log = tmp / "baseline.log"
            handle = _start(slots[0], list(tests), log, fork)
            while (code := _poll(handle, fork)) is None:
                time.sleep(0.05)
            if code != 0:  # (including WRONG_IMPORT)
                sys.stderr.write(log.read_text(errors="replace")[-3000:])
                raise Abort(f"the unmutated code fails its tests ({' '.join(tests)}); fix that first")
        baseline = time.perf_counter() - t0

        queue = [m for m in mutants if m.key not in EQUIVALENT]
        results += [Result(m, "equivalent", EQUIVALENT[m.key]) for m in mutants if m.key in EQUIVALENT]
        free = list(range(jobs))
        while queue or running:
            while queue and free:
                m, slot = queue.pop(0), free.pop()
                _write(slots[slot], snap, m.path, m.source)
                log = tmp / f"m{m.id}.log"
                running[slot] = (m, _start(slots[slot], m.tests, log, fork), time.perf_counter(), log)
            time.sleep(0.01)
            for slot, (m, handle, t, log) in list(running.items()):
                code = _poll(handle, fork)
                elapsed = time.perf_counter() - t
                if code is None and elapsed < timeout:
                    continue
                if code is None:
                    _kill(handle, fork)
                    r = Result(m, "timeout", f"no result in {timeout:.0f} s", elapsed)
                elif code == WRONG_IMPORT:
                    raise Abort(log.read_text(errors="replace").strip())
                elif code == 0:
                    r = Result(m, "survived", "", elapsed)
                else:
                    r = Result(m, "killed", _killed_by(log), elapsed)
                results.append(r)
                del running[slot]
                _write(slots[slot], snap, m.path, None)
                free.append(slot)
                if progress:
                    sys.stderr.write(f"\r{len(results)}/{len(mutants)} mutants run")
                    sys.stderr.flush()
        if progress:
            sys.stderr.write("\n")
        return sorted(results, key=lambda r: r.mutant.id), baseline
    finally:
        for m, handle, *_ in running.values():
            _kill(handle, fork)
        shutil.rmtree(tmp, ignore_errors=True)


# --- the report --------------------------------------------------------------------------------

def report(results: list[Result], seconds: float, baseline: float) -> float:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("#", "file:line", "function", "mutation", "result", "killed by", "s"):
        table.add_column(col, overflow="fold")
    for r in results:
        m = r.mutant
        style = {"killed": "", "timeout": "", "equivalent": "dim", "survived": "red bold"}[r.status]
        cell = f"[{style}]{r.status}[/{style}]" if style else r.status
        table.add_row(str(m.id), f"{m.path.removeprefix('manual_backprop/')}:{m.line}", m.function,
                      escape(m.description), cell, escape(r.by), f"{r.seconds:.1f}")
    console.print(table)
    judged = [r for r in results if r.status != "equivalent"]
    killed = sum(r.status in ("killed", "timeout") for r in judged)
    score = 100.0 * killed / len(judged) if judged else 100.0
    per_file: dict[str, list[int]] = {}
    for r in judged:
        k = per_file.setdefault(r.mutant.path, [0, 0])
        k[0] += r.status in ("killed", "timeout")
        k[1] += 1
    summary = Table(box=None, pad_edge=False, header_style="bold", title="mutation score per file")
    for col in ("file", "killed", "mutants", "score"):
        summary.add_column(col)
    for path, (k, n) in per_file.items():
        summary.add_row(path, str(k), str(n), f"{100.0 * k / n:.1f}%")
    console.print(summary)
    equivalent = len(results) - len(judged)
    console.print(f"[bold]mutation score: {killed}/{len(judged)} = {score:.1f}%[/bold]"
                  + (f" ({equivalent} equivalent mutant(s) not counted)" if equivalent else "")
                  + f" in {seconds:.0f} s (unmutated tests: {baseline:.1f} s)")
    for line in STALE:
        console.print(f"[yellow]stale: {escape(line)}[/yellow]")
    keys = {r.mutant.key for r in results}
    for key in EQUIVALENT:
        if key not in keys and len(results) == len(ALL):
            console.print(f"[yellow]stale: EQUIVALENT names no mutant any more: {escape(key)}[/yellow]")
    for r in results:
        if r.status == "survived":
            console.print(f"[red]SURVIVED {r.mutant.id}: {escape(str(r.mutant))}[/red]  (python tools/mutate.py --show {r.mutant.id})")
    return score


def show(m: Mutant) -> None:
    import difflib

    original = (ROOT / m.path).read_text(encoding="utf-8").splitlines(keepends=True)
    sys.stdout.writelines(difflib.unified_diff(original, m.source.splitlines(keepends=True),
                                               f"a/{m.path}", f"b/{m.path}", n=2))


class Abort(Exception):
    """The run means nothing (the unmutated code fails, or the copy was not what got imported): exit 2."""


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    p.add_argument("--timeout", type=float, default=120, help="seconds before a mutant's tests count as hung")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--show", type=int, metavar="ID", help="print the diff of one mutant and exit")
    p.add_argument("--only", type=int, nargs="+", metavar="ID", help="run only these mutants")
    p.add_argument("--no-fork", action="store_true", help="a fresh interpreter per mutant (slower; the default off POSIX)")
    p.add_argument("--min-score", type=float, default=100.0, help="exit 1 below this score (default 100)")
    args = p.parse_args(argv)

    mutants = make_mutants()
    ALL[:] = mutants
    if args.show is not None:
        show(next(m for m in mutants if m.id == args.show))
        return 0
    if args.list:
        for m in mutants:
            print(f"{m.id:4d}  {m}")
        print(f"{len(mutants)} mutants")
        return 0
    if args.only:
        mutants = [m for m in mutants if m.id in set(args.only)]

    # Ctrl-C, and SIGTERM from a CI timeout, interrupt the run so that its copies are removed
    # (a shell without job control starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    fork = hasattr(os, "fork") and not args.no_fork
    if fork:  # import once in the parent; every forked child inherits them (nothing started yet)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("MKL_NUM_THREADS", "1")
        import hypothesis  # noqa: F401  (the tests' conftest imports it)
        import numpy  # noqa: F401
        import pytest  # noqa: F401
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
    t0 = time.perf_counter()
    try:
        results, baseline = run_all(mutants, max(1, args.jobs), args.timeout, fork, sys.stderr.isatty())
    except KeyboardInterrupt:
        sys.stderr.write("mutate.py: interrupted; the temporary copies are removed, the working tree was never touched\n")
        return 130
    except Abort as exc:
        sys.stderr.write(f"mutate.py: {exc}\n")
        return 2
    score = report(results, time.perf_counter() - t0, baseline)
    return 0 if score >= args.min_score else 1


if __name__ == "__main__":
    sys.exit(main())
