"""The package's import structure: layers written down once, no cycles, imports at the top.

Walks every module of ``recbole_llm`` with ``ast`` (nothing is imported) and fails on
* an import cycle among the package's modules;
* a module importing a module of a higher layer;
* one method package importing another (methods find other models by name);
* an import of this package placed inside a function (they belong at the top of the file;
  lookups by name use ``importlib``).
"""
import ast
import os

import pytest

import recbole_llm

ROOT = os.path.dirname(recbole_llm.__file__)

# Lowest first. A module may import modules of its own layer or of lower layers only.
LAYERS = (
    ("ground", ("recbole_llm", "recbole_llm.compat", "recbole_llm.validation", "recbole_llm.registry",
                "recbole_llm.config", "recbole_llm.knn", "recbole_llm.augmentation",
                "recbole_llm.llm", "recbole_llm.nn")),
    ("machinery", ("recbole_llm.federated", "recbole_llm.community")),
    ("methods", ("recbole_llm.model",)),
    ("glue", ("recbole_llm.utils", "recbole_llm.quick_start", "recbole_llm.case_study")),
    ("faces", ("recbole_llm.apps",)),
)
METHODS = ("mltfr", "lumos", "l3rec", "pod", "backbones")


def module_files():
    """``{module name: path}`` of every module of the package (``__init__`` as the package)."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, os.path.dirname(ROOT))[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = module_files()


def imports_of(path, module):
    """``[(imported module, line, inside a function)]`` of the package's own modules."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - child.level + 1]
                                    + ([base] if base else []))
                for alias in child.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{base}.{alias.name}"
                    names.append(sub if sub in MODULES else base)
            for name in names:
                if name == "recbole_llm" or name.startswith("recbole_llm."):
                    while name not in MODULES:
                        name = name.rpartition(".")[0]
                    out.append((name, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return out


GRAPH = {m: imports_of(p, m) for m, p in MODULES.items()}


def layer_of(module):
    best, rank = None, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and \
                    (best is None or len(prefix) > len(best)):
                best, rank = prefix, i
    return rank


def method_of(module):
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "model" else None


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_no_import_cycle():
    state, stack, cycles = {}, [], []

    def dfs(node):
        state[node] = "open"
        stack.append(node)
        for target, _, _ in GRAPH[node]:
            if target == node:
                continue
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                dfs(target)
        stack.pop()
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            dfs(module)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_lower_layers_never_import_higher_ones():
    bad = [f"{m}:{line} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
           for m, edges in GRAPH.items() for t, line, _ in edges if layer_of(t) > layer_of(m)]
    assert bad == []


def test_methods_do_not_import_each_other():
    bad = [f"{m}:{line} imports {t}" for m, edges in GRAPH.items() for t, line, _ in edges
           if method_of(m) and method_of(t) and method_of(m) != method_of(t)]
    assert bad == []
    assert set(METHODS) <= {method_of(m) for m in MODULES}


def test_package_imports_are_at_the_top_of_files():
    bad = [f"{m}:{line} imports {t} inside a function" for m, edges in GRAPH.items()
           for t, line, inside in edges if inside]
    assert bad == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, True),
    ({"a": ["b"], "b": ["c"], "c": []}, False),
])
def test_the_cycle_check_would_fail_on_a_cycle(monkeypatch, edges, expected):
    graph = {k: [(t, 1, False) for t in v] for k, v in edges.items()}
    monkeypatch.setattr(__import__(__name__), "GRAPH", graph, raising=False)
    monkeypatch.setitem(globals(), "GRAPH", graph)
    try:
        test_no_import_cycle()
        failed = False
    except AssertionError:
        failed = True
    assert failed is expected


def test_a_higher_import_would_be_caught(monkeypatch):
    monkeypatch.setitem(globals(), "GRAPH", {"recbole_llm.llm.loading": [("recbole_llm.quick_start", 3, False)]})
    with pytest.raises(AssertionError, match="imports recbole_llm.quick_start"):
        test_lower_layers_never_import_higher_ones()
