"""rrcore's packages are layers: a module imports only from layers below its own, or from
its own package without closing a circle.

The layers, bottom to top, are listed in :data:`LAYERS`; each package's docstring says what
it owns. Every import counts: those at the top of a module, inside functions and under
``if TYPE_CHECKING:``. A newcomer can then read rrcore bottom up, and a change to a layer
can only break the layers above it. The import chains that importing a module runs through
are short, so no module sits on a tall stack of others.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import rrcore

SOURCE = Path(rrcore.__file__).parent

# Bottom to top. A root module (``rrcore.api``) is a layer of its own.
LAYERS = (
    "rrcore",
    "rrcore.base",
    "rrcore.contracts",
    "rrcore.data",
    "rrcore.model",
    "rrcore.evaluation",
    "rrcore.api",
    "rrcore.training",
    "rrcore.tools",
    "rrcore.research",
    "rrcore.testing",
    "rrcore.cli",
    "rrcore.__main__",
)
LONGEST_CHAIN = 7  # modules on the longest path of imports, counting both ends


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the deepest entry that ``module`` is or lies in."""
    # The root package holds no modules of its own beyond those LAYERS names.
    matches = [
        i for i, layer in enumerate(LAYERS) if module == layer or (layer != "rrcore" and module.startswith(layer + "."))
    ]
    assert matches, f"{module} is in no layer of tests/test_layers.py: LAYERS"
    return max(matches)


def _import_names(node: ast.AST, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        # `from rrcore.tools import export` names the module rrcore.tools.export.
        names = [f"{node.module}.{alias.name}" for alias in node.names]
        return [name if name in known else node.module for name in names]
    return []


def _load_time_imports(statements: list[ast.stmt]) -> list[ast.stmt]:
    """The import statements that run when the module is imported: at module level, in
    ``try``/``if`` blocks there, but not under ``if TYPE_CHECKING:``."""
    found = []
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            found += _load_time_imports(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            found += _load_time_imports(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                found += _load_time_imports(handler.body)
    return found


def imported_modules(module: str, load_time_only: bool = False) -> set[str]:
    """The rrcore modules ``module`` imports: anywhere in its source, or with
    ``load_time_only`` only those its import runs."""
    known = modules()
    tree = ast.parse(known[module].read_text(encoding="utf-8"))
    nodes = _load_time_imports(tree.body) if load_time_only else ast.walk(tree)
    names = [name for node in nodes for name in _import_names(node, known)]
    return {name for name in names if name in known and name != module}


@cache
def import_graph(load_time_only: bool = False) -> dict[str, frozenset[str]]:
    return {module: frozenset(imported_modules(module, load_time_only)) for module in modules()}


def upward_imports() -> list[str]:
    graph = import_graph()
    return sorted(
        f"{module} (layer {LAYERS[layer_of(module)]}) imports {target} (layer {LAYERS[layer_of(target)]})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )


def circles() -> list[list[str]]:
    """Each import circle once, as the modules on it."""
    graph = import_graph()
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def longest_chain() -> list[str]:
    """The longest path of imports that importing a module runs through (meaningful only
    without circles): how many floors a newcomer climbs to understand the top one."""
    assert not circles(), "import circles make every chain endless"
    graph = import_graph(load_time_only=True)

    @cache
    def chain(module: str) -> tuple[str, ...]:
        below = [chain(target) for target in graph[module]]
        return (module, *max(below, key=len, default=()))

    return list(max((chain(module) for module in graph), key=len))


def test_every_module_lies_in_a_layer():
    for module in modules():
        layer_of(module)


def test_no_module_imports_a_layer_above_its_own():
    assert not upward_imports(), "\n".join(upward_imports())


def test_no_import_circles():
    assert not circles(), "\n".join(" -> ".join(circle) for circle in circles())


def test_import_chains_are_short():
    chain = longest_chain()
    assert len(chain) <= LONGEST_CHAIN, " -> ".join(chain)


def test_each_package_says_what_it_owns_and_may_import():
    for layer in LAYERS:
        path = SOURCE.joinpath(*layer.split(".")[1:], "__init__.py")
        if layer == "rrcore" or not path.exists():
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        assert "May import" in docstring, f"{path}: the docstring says what the package may import"
