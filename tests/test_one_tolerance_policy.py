"""One tolerance policy: only ``manual_backprop/compare/tolerance.py`` defines a tolerance.

Read from the source with ``ast``, every module of the package, the
benchmarks and the tools. Outside the policy's module none may

- define, at module or class level, a constant named like a tolerance
  (a part of its name, split at ``_``, containing TOL, ROUNDOFF, FLOOR or
  ULP, or starting with EPS: ``CHECK_TOLERANCE``, ``CHECK_RTOL``,
  ``ROUNDING_ULPS``, ``U64_EPS``) whose value is a number, holds numbers,
  or is another name (an alias of the policy's constant is a second definition);
- write a unit roundoff or machine epsilon as a literal (``2.0**-53``,
  ``2**-24``, ``2**-52``, ``2**-23``, or their decimal values);
- read ``np.finfo(...).eps`` (or ``.epsneg``, ``.resolution``, or
  ``sys.float_info.epsilon``): a rounding scale taken from NumPy is a
  tolerance made outside the policy.

Everyone else imports ``K``, ``UNIT_ROUNDOFF``, ``FLOOR``, ``tolerance`` and
the error-scale functions from :mod:`manual_backprop.compare`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "manual_backprop" / "compare" / "tolerance.py"
SCANNED = sorted([*(ROOT / "manual_backprop").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"),
                  *(ROOT / "tools").rglob("*.py")])

NAME_PARTS = ("TOL", "ROUNDOFF", "FLOOR", "ULP")
EXPONENTS = {53, 24, 52, 23}  # u and eps of float64 and float32
LITERALS = {2.0**-e for e in EXPONENTS}
EPS_ATTRIBUTES = {"eps", "epsneg", "resolution"}

#: The one exception, checked line for line: the description validates a user's probability rows
#: before anything runs, and it sits below compare (it may not import it). How far a written row
#: may be from summing to 1 is a fact about the input (K entries, each rounded to the dtype), not
#: a tolerance between two computations. Any other breach in that module still fails.
INPUT_VALIDATION = {
    "manual_backprop/description/case.py": ["reads np.finfo(...).eps"],
}


def tolerance_like(name: str) -> bool:
    """``CHECK_TOLERANCE``, ``CHECK_RTOL``, ``ROUNDING_ULPS``, ``EPS``: yes. ``MAX_STEPS``, ``EPOCHS``: no."""
    parts = [p for p in name.upper().split("_") if p]
    return any(any(k in p for k in NAME_PARTS) or p.startswith("EPS") for p in parts)


def numeric_value(node: ast.AST) -> bool:
    """A number, something holding numbers, or an alias (a bare name or attribute)."""
    if isinstance(node, (ast.Name, ast.Attribute)):
        return True
    return any(isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)
               for n in ast.walk(node))


def _constant_number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant_number(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    return None


def _is_finfo(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Attribute) and node.func.attr == "finfo")
        or (isinstance(node.func, ast.Name) and node.func.id == "finfo"))


def _targets(stmt: ast.stmt) -> list[str]:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    names = []
    for t in targets:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.append(n.id)
    return names


def violations(source: str) -> list[str]:
    """Every breach of the rule in one module's source, as ``line: what``."""
    tree = ast.parse(source)
    found = []
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for stmt in body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
                for name in _targets(stmt):
                    if tolerance_like(name) and numeric_value(stmt.value):
                        found.append(f"{stmt.lineno}: defines the tolerance-like constant {name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            base, exponent = _constant_number(node.left), _constant_number(node.right)
            if base == 2 and exponent is not None and -exponent in EXPONENTS:
                found.append(f"{node.lineno}: writes the unit roundoff 2**{int(exponent)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value in LITERALS:
            found.append(f"{node.lineno}: writes the unit roundoff {node.value!r}")
        elif isinstance(node, ast.Attribute) and node.attr in EPS_ATTRIBUTES and _is_finfo(node.value):
            found.append(f"{node.lineno}: reads np.finfo(...).{node.attr}")
        elif (isinstance(node, ast.Attribute) and node.attr == "epsilon"
              and isinstance(node.value, ast.Attribute) and node.value.attr == "float_info"):
            found.append(f"{node.lineno}: reads sys.float_info.epsilon")
    return found


@pytest.mark.parametrize("path", [p for p in SCANNED if p != POLICY],
                         ids=[p.relative_to(ROOT).as_posix() for p in SCANNED if p != POLICY])
def test_no_module_but_the_policy_defines_a_tolerance(path):
    rel = path.relative_to(ROOT).as_posix()
    found = [f.split(": ", 1)[1] for f in violations(path.read_text(encoding="utf-8"))]
    assert found == INPUT_VALIDATION.get(rel, []), \
        f"{rel}: " + "; ".join(found) + " (import it from manual_backprop.compare)"


def test_the_policy_itself_defines_what_everyone_else_imports():
    found = violations(POLICY.read_text(encoding="utf-8"))
    for what in ("K", "UNIT_ROUNDOFF", "FLOOR", "ELEMENTWISE_ULPS"):
        assert f"{what} = " in POLICY.read_text(encoding="utf-8")
    assert any("UNIT_ROUNDOFF" in f for f in found) and any("2**-53" in f for f in found)


@pytest.mark.parametrize("source", [
    "CHECK_TOLERANCE = {'float64': 1e-9, 'float32': 1e-4}",
    "CHECK_RTOL = {'float32': 1e-2}",
    "ATOL = 1e-12",
    "LAYER_TOLERANCE = 8.0",
    "ROUNDING_ULPS = 16.0",
    "MY_EPS = 1e-7",
    "TOL: float = 1e-6",
    "LAYER_TOL = K",
    "class C:\n    RTOL = 1e-5",
    "U64 = 2.0**-53",
    "def f():\n    u = 2**-24\n    return u",
    "u = 1.1102230246251565e-16",
    "import numpy as np\ntol = 8 * np.finfo(np.float32).eps",
    "import sys\nx = sys.float_info.epsilon",
])
def test_the_scanner_catches(source):
    assert violations(source), source


@pytest.mark.parametrize("source", [
    "_FLOOR_REFERENCE: dict = {}",           # a cache named after the benchmark floors, holding no number
    "MAX_STEPS = 10",
    "EPOCHS = 1000",
    "from manual_backprop.compare import FLOOR, UNIT_ROUNDOFF",
    "import numpy as np\nbig = np.finfo(np.float32).max",
    "x = 2.0**-40",
    "class C:\n    tolerance: float",
])
def test_the_scanner_lets_pass(source):
    assert not violations(source), source
