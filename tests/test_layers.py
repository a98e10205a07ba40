"""Imports run one way: no cycle among scaling's modules, the library never imports its
command line or the experiments, and the model math (scaling.nn, and the backend kernels in
scaling.kernels that stand in for it) imports no higher layer.

Read from the source with `ast` (every import, also those inside functions), so nothing is
imported to check it.
"""
import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
ENTRY = ("scaling.cli", "scaling.__main__", "scaling.commands")
# What model math must not reach: mesh and sharding, the step, the loop and what it drives.
ABOVE_NN = ("scaling.sharding", "scaling.mesh", "scaling.compile_step", "scaling.train",
            "scaling.train_step", "scaling.train_state", "scaling.checkpoint", "scaling.data",
            "scaling.tasks", "scaling.models", "scaling.runtime") + ENTRY


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted((REPO / "scaling").rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _import_graph() -> dict[str, set[str]]:
    """module -> the scaling modules (or "experiments") it imports."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from pkg import sub` imports the submodule; `from pkg import name`, the package.
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                         else node.module for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "experiments":
                    targets.add("experiments")
                elif name.split(".")[0] == "scaling" and resolve(name) not in (None, module):
                    targets.add(resolve(name))
        graph[module] = targets
    return graph


def _is(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_import_cycles():
    graph, done, path, cycles = _import_graph(), set(), [], []

    def visit(module):
        if module in path:
            cycles.append(path[path.index(module):] + [module])
            return
        if module in done or module not in graph:
            return
        path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_library_imports_neither_the_command_line_nor_the_experiments():
    upward = [(m, t) for m, targets in _import_graph().items() if not _is(m, ENTRY)
              for t in targets if _is(t, ENTRY) or t == "experiments"]
    assert not upward, upward


def test_model_math_imports_no_higher_layer():
    upward = [(m, t) for m, targets in _import_graph().items()
              if _is(m, ("scaling.nn", "scaling.kernels")) for t in targets if _is(t, ABOVE_NN)]
    assert not upward, upward
