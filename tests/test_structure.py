"""The layers import one way: common -> data_tools -> models -> stereo -> eval.

A library module may import only from its own layer or the ones below. Entry scripts (modules with an
``if __name__ == "__main__":`` guard: the CLIs) sit on top of the chain and may call any layer, e.g.
``stereo/search.py`` hands ``eval.search_plots.plot_search`` to the search loop. Lazy imports inside
functions count like top-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("common", "data_tools", "models", "stereo", "eval")


def _is_entry_script(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and \
                isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__":
            return True
    return False


def _imported_packages(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(LAYERS)


def upward_imports() -> list[str]:
    problems = []
    for rank, layer in enumerate(LAYERS):
        for path in sorted((ROOT / layer).glob("*.py")):
            tree = ast.parse(path.read_text())
            if _is_entry_script(tree):
                continue
            for package in _imported_packages(tree):
                if LAYERS.index(package) > rank:
                    problems.append(f"{path.relative_to(ROOT)} imports {package}")
    return problems


def test_no_library_module_imports_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    tree = ast.parse("def f():\n    from eval.metrics import x\n")
    assert _imported_packages(tree) == {"eval"} and not _is_entry_script(tree)
    assert _is_entry_script(ast.parse("if __name__ == '__main__':\n    pass\n"))
