"""The package stands alone and its modules import one way (issue #20, items 4 and 5): no module of
``shardlens`` imports snakemake, and the graph of its imports has no cycle, neither through the
imports run when a module is imported nor through those deferred into functions (a deferred
import hides a cycle that a module-level one would make; modules that do one job import one way,
as the split of models/ocr_engines.py into interface, RapidOCR and registry did)."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import re
from pathlib import Path

import shardlens


def _modules() -> dict[str, Path]:
    """Every module of the package, by name, found as importlib would (without importing the
    modules themselves; walk_packages imports the packages' __init__ files)."""
    found = {"shardlens": Path(shardlens.__file__)}
    for info in pkgutil.walk_packages(shardlens.__path__, "shardlens."):
        spec = importlib.util.find_spec(info.name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            found[info.name] = Path(spec.origin)
    return found


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for _ in range(node.level - 1):
        package = package.rsplit(".", 1)[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(module: str, path: Path, module_level: bool) -> set[str]:
    """Absolute names imported by a module: all of them, or only those run when it is imported
    (not inside functions, nor under ``if TYPE_CHECKING:``)."""

    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if module_level and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit_list(child.orelse)
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, path, child)
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in child.names if alias.name != "*")
            visit(child)

    def visit_list(nodes: list[ast.AST]) -> None:
        for n in nodes:
            visit(ast.Module(body=[n], type_ignores=[]))

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return names


def test_walk_finds_the_package():
    modules = _modules()
    for name in ("shardlens.config", "shardlens.cli", "shardlens.stages.ocr", "shardlens.models.ocr_engines", "shardlens.dashboard.app"):
        assert name in modules


def test_no_package_module_imports_snakemake():
    offenders = {
        name: sorted(n for n in _imports(name, path, module_level=False) if n == "snakemake" or n.startswith("snakemake.")) for name, path in _modules().items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def _graph(module_level: bool = True) -> dict[str, set[str]]:
    modules = _modules()
    return {name: {n for n in _imports(name, path, module_level) if n in modules and n != name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_are_counted_apart(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("from . import a\n\n\ndef f():\n    from .b import c\n\n\nif TYPE_CHECKING:\n    from . import d\n")
    assert _imports("shardlens.mod", path, module_level=True) == {"shardlens", "shardlens.a"}
    assert _imports("shardlens.mod", path, module_level=False) == {"shardlens", "shardlens.a", "shardlens.b", "shardlens.b.c", "shardlens.d"}


def test_no_import_cycle():
    assert _cycles(_graph(module_level=True)) == [], "import cycles (module-level imports)"


def test_no_import_cycle_through_deferred_imports():
    assert _cycles(_graph(module_level=False)) == [], "import cycles (counting imports inside functions)"


ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"


def _parts() -> dict[str, int]:
    """docs/ARCHITECTURE.md's table of parts: each module or package named in a row (``images/``
    is the package) with the row's number."""
    parts: dict[str, int] = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            for name in re.findall(r"`([a-z_/]+)`", cells[2]):
                parts["shardlens." + name.rstrip("/").replace("/", ".")] = int(cells[0])
    return parts


def _part_of(module: str, parts: dict[str, int]) -> int | None:
    """The part of ``module``: that of the longest name in ``parts`` that is it or holds it (the
    package's own ``__init__`` belongs to the base)."""
    if module == "shardlens":
        return 0
    while module not in parts and "." in module:
        module = module.rsplit(".", 1)[0]
    return parts.get(module)


def test_every_module_is_in_one_part_of_the_architecture():
    parts = _parts()
    assert len(set(parts.values())) == 9, "docs/ARCHITECTURE.md's table of parts was not read"
    assert [name for name in _modules() if _part_of(name, parts) is None] == []


def test_imports_follow_the_order_of_the_parts():
    """No module imports one of a part below its own (counting imports inside functions)."""
    parts = _parts()
    upward = sorted(
        f"{name} (part {_part_of(name, parts)}) imports {target} (part {_part_of(target, parts)})"
        for name, targets in _graph(module_level=False).items()
        for target in targets
        if _part_of(target, parts) > _part_of(name, parts)
    )
    assert upward == []


def test_a_module_belongs_to_the_part_of_its_package():
    parts = {"shardlens.low": 0, "shardlens.high": 1}
    assert _part_of("shardlens.high.sub", parts) == 1 and _part_of("shardlens.low", parts) == 0
    assert _part_of("shardlens.elsewhere", parts) is None
