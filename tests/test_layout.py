"""The README's layout promises: imports point one way (ui -> finetune -> rag -> indexing), and no two
modules import each other, directly or through others, counting imports inside functions too."""

import ast

from tests.conftest import ROOT

ORDER = {"indexing": 0, "rag": 1, "finetune": 2, "ui": 3}


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file)."""
    graph = {}
    for pkg in ORDER:
        for f in (ROOT / pkg).glob("*.py"):
            mod, deps = f"{pkg}.{f.stem}", set()
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    top = node.module.split(".")[0]
                    if top not in ORDER:
                        continue
                    if node.module in ORDER:  # `from indexing import __version__`, `from rag import x`
                        for a in node.names:
                            sub = f"{node.module}.{a.name}"
                            deps.add(sub if (ROOT / node.module / f"{a.name}.py").exists()
                                     else f"{node.module}.__init__")
                    else:
                        deps.add(node.module)
            deps.discard(mod)
            graph[mod] = deps
    return graph


def test_imports_point_one_way_between_packages():
    wrong = [(a, b) for a, deps in import_graph().items() for b in deps
             if ORDER[b.split(".")[0]] > ORDER[a.split(".")[0]]]
    assert not wrong


def test_no_import_loops():
    graph = import_graph()
    loops = []

    def visit(node, path):
        for nxt in graph.get(node, ()):
            if nxt in path:
                loops.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    done = set()
    for start in graph:
        if start not in done:
            visit(start, [start])
    assert not loops, loops


def test_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "indexing.search" in graph["indexing.build"]  # imported inside build_index()
    assert "rag.merge" in graph["finetune.train"]
