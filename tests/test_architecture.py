"""The folders are the layers: every import points one way, and nothing imports in a circle.

Read from the source with ``ast`` (imports inside functions count too: a late
import is still a dependency)::

    errors, environment, files     leaves: anyone may import them
    kernels                        the rules, once
    description                    the network, its parameters and data, the file
    engine                         the NumPy forward and hand-derived backward
    references                     torch, JAX, finite differences
    compare                        the one tolerance policy and comparator
    checking, validation, testing, training, bench     what a user does
    cli                            the commands

A module may import its own folder and the folders above it in this list,
never one below. The framework references read the description only (never
the engine's code), so that they stay independent maths; finite differences
differentiate the engine's own forward, through ``engine.trace.forward``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "manual_backprop"

LAYERS = {
    "errors": 0, "environment": 0, "files": 0, "interrupts": 0,
    "kernels": 1,
    "description": 2,
    "engine": 3,
    "references": 4,
    "compare": 5,
    "checking": 6, "validation": 6, "testing": 6, "training": 6, "bench": 6, "display": 6, "grading": 6,
    "cli": 7,
    "__init__": 8, "__main__": 8, "pytest_plugin": 8,
}

#: What the framework references may import from the package: the description, and errors.
FRAMEWORK_REFERENCES = {"manual_backprop.references.torch_ref", "manual_backprop.references.jax_ref"}
FRAMEWORK_MAY_IMPORT = {"description", "errors", "references"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported_modules(path: Path) -> set[str]:
    """Every ``manual_backprop...`` module (or top-level name) ``path`` imports, anywhere in it."""
    name = module_name(path)
    package = name if is_package(path) else name.rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for s in block.body
                 for n in ast.walk(s)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue  # ``if TYPE_CHECKING:`` imports never run
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            # ``from . import references``: a module, not a name
            for a in node.names:
                candidate = f"{target}.{a.name}"
                if _exists(candidate):
                    out.add(candidate)
    return out


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _exists(module: str) -> bool:
    parts = module.split(".")
    if parts[0] != "manual_backprop":
        return False
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def folder_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


#: Data shipped in the package, not its code: the sample class's student submissions (some crash on purpose).
DATA = PACKAGE / "classes"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if DATA not in p.parents)
GRAPH = {module_name(p): {m for m in imported_modules(p) if m.startswith("manual_backprop")} for p in MODULES}


def test_every_folder_of_the_package_has_a_layer():
    folders = {folder_of(module_name(p)) for p in MODULES}
    assert folders <= set(LAYERS), sorted(folders - set(LAYERS))


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_point_only_to_the_own_folder_or_the_layers_below(path):
    here = module_name(path)
    layer = LAYERS[folder_of(here)]
    wrong = sorted(m for m in GRAPH[here] if m != "manual_backprop" and LAYERS[folder_of(m)] > layer)
    assert not wrong, f"{here} (layer {folder_of(here)}) imports {wrong}, which sit above it"


@pytest.mark.parametrize("module", sorted(FRAMEWORK_REFERENCES))
def test_the_framework_references_read_the_description_never_the_engine(module):
    folders = {folder_of(m) for m in GRAPH[module] if m != "manual_backprop"}
    assert folders <= FRAMEWORK_MAY_IMPORT, f"{module} imports from {sorted(folders - FRAMEWORK_MAY_IMPORT)}"


def test_finite_differences_differentiate_the_engine_through_its_forward_only():
    engine = {m for m in GRAPH["manual_backprop.references.finite_diff"] if folder_of(m) == "engine"}
    assert engine <= {"manual_backprop.engine.trace"}
    source = (PACKAGE / "references" / "finite_diff.py").read_text(encoding="utf-8")
    assert "from ..engine.trace import forward\n" in source


def test_no_module_imports_in_a_circle():
    # Package __init__ files only re-export; an import of a package is an import of its __init__.
    def edges(m: str) -> set[str]:
        return {t for t in GRAPH.get(m, ()) if t in GRAPH and t != m and not t.startswith(f"{m}.")}

    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges(m)):
            if state.get(t) == 1:
                cycle = path[path.index(t):] + [t]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state and not m.endswith(("__init__", "manual_backprop")):
            visit(m)


def test_nothing_installs_or_is_imported_under_a_generic_top_level_name():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["manual_backprop*"]
    assert not (ROOT / "references").exists()
    everything = list(PACKAGE.rglob("*.py")) + list((ROOT / "tests").rglob("*.py")) \
        + list((ROOT / "benchmarks").rglob("*.py")) + list((ROOT / "tools").rglob("*.py"))
    for path in everything:
        tops = {m.split(".")[0] for m in imported_modules(path)}
        assert "references" not in tops, f"{path.relative_to(ROOT)} imports the top-level name 'references'"


def test_docstrings_and_comments_point_at_nothing_outside_the_repository():
    for path in list(PACKAGE.rglob("*.py")) + [ROOT / "README.md"] + list((ROOT / "docs").rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "shared/research" not in text, path.relative_to(ROOT)
        assert "../PRODUCT.md" not in text, path.relative_to(ROOT)


def test_the_package_exports_exactly_its_public_names():
    import manual_backprop

    assert set(manual_backprop.__all__) == set(manual_backprop._FROM) | {"InputError"}
    for name in manual_backprop.__all__:
        assert getattr(manual_backprop, name) is not None
