"""The import layers, checked on every run (docs/architecture.md, "Imports go one way").

    cli  ->  shuffler, predict  ->  common

``shuffler`` and ``predict`` never import each other; inside ``shuffler`` the methods use the
engine's phases and the phases never reach back into the methods. Imports of the package's own
modules sit at the top of a module, except the few listed here, where start-up time or an
optional dependency is the reason.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Tuple

PACKAGE = Path(__file__).resolve().parent.parent / "bigshuf"

#: Which top-level parts each part may import.
ALLOWED = {
    "common": {"common"},
    "shuffler": {"common", "shuffler"},
    "predict": {"common", "predict"},
    "cli": {"common", "shuffler", "predict", "cli"},
    "": {"common", "shuffler", "predict", "cli"},  # bigshuf/__init__, __main__, launch
}

#: Own-module imports allowed inside functions: (module, imported), with the reason.
LAZY = {
    ("bigshuf/__init__.py", "*"),              # public names resolved on first use (start-up)
    ("bigshuf/launch.py", "bigshuf.cli"),      # `bigshuf --version` and signals before click
}


def _modules() -> Iterator[Tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        yield rel, ast.parse(path.read_text(), rel)


def _own_imports(tree: ast.Module) -> Iterator[Tuple[ast.AST, str, bool]]:
    """(node, imported module, at the module's top level) for imports of bigshuf modules."""
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bigshuf"):
            yield node, node.module, id(node) in top
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bigshuf"):
                    yield node, alias.name, id(node) in top


def _part(name: str) -> str:
    """The top-level part of a dotted module name: ``bigshuf.shuffler.run`` -> ``shuffler``;
    modules directly in the package (``bigshuf.launch``, ``bigshuf``) -> ``""``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ""


def test_imports_go_one_way():
    wrong = []
    for rel, tree in _modules():
        here = _part(rel[:-3].replace("/", ".").removesuffix(".__init__"))
        for node, module, _ in _own_imports(tree):
            there = _part(module)
            if there and there not in ALLOWED[here]:
                wrong.append(f"{rel}:{node.lineno} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_engines_phases_never_import_the_methods():
    wrong = [f"{rel}:{node.lineno} imports {module}"
             for rel, tree in _modules()
             if rel.startswith("bigshuf/shuffler/") and "/methods/" not in rel
             and not rel.endswith("/run.py")  # the front door chooses among the methods
             for node, module, _ in _own_imports(tree) if module.startswith("bigshuf.shuffler.methods")]
    assert not wrong, "\n".join(wrong)


def test_own_modules_are_imported_at_the_top():
    lazy = [f"{rel}:{node.lineno} imports {module}"
            for rel, tree in _modules() if not rel.startswith("bigshuf/cli/")
            for node, module, top in _own_imports(tree)
            if not top and (rel, module) not in LAZY and (rel, "*") not in LAZY]
    assert not lazy, "\n".join(lazy)


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The checks above would fail on a violation (not a test that cannot fail)."""
    tree = ast.parse("from bigshuf.predict.can import CanModel\n")
    found = [m for _, m, _ in _own_imports(tree)]
    assert found == ["bigshuf.predict.can"] and _part(found[0]) not in ALLOWED["shuffler"]
