"""The house's floors, read from the source with `ast`: core/ at the bottom, then envs/, agents/, trainer/
and reports/, then the command lines (gym_agents/ and the repository's shims) and bench/ on top. Nothing
imports a floor above its own, agents/ and envs/ never import trainer/, and no module takes part in an
import loop, counting imports inside functions (those run too) but not `if TYPE_CHECKING:` blocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"core": 0, "envs": 1, "agents": 2, "trainer": 3, "reports": 3, "gym_agents": 4, "bench": 5}
SHIMS = {"train": 5, "evaluate": 5, "compare": 5}


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    for shim in SHIMS:
        modules[shim] = ROOT / f"{shim}.py"
    return modules


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that `name` imports anywhere in its body (functions included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` names a.b.c; keep the longest prefix that is a project module.
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


def floor(module: str) -> int:
    top = module.split(".")[0]
    return FLOORS.get(top, SHIMS.get(top, 0))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_reader_sees_imports_inside_functions_and_skips_type_checking(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trainer.runner\n"
        "def f():\n    from agents import dqn\n    import core.errors\n"
    )
    modules = {"probe": source, "agents": source, "agents.dqn": source, "core.errors": source, "trainer.runner": source}
    assert imports_of("probe", source, modules) == {"agents.dqn", "core.errors"}


def test_no_floor_imports_a_floor_above_it(graph):
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if floor(target) > floor(module)
    )
    assert not upward, "\n".join(upward)


def test_agents_and_envs_never_import_the_trainer_or_the_command_lines(graph):
    bad = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.split(".")[0] in ("core", "envs", "agents")
        for target in targets
        if target.split(".")[0] in ("trainer", "gym_agents", *SHIMS)
    )
    assert not bad, "\n".join(bad)


def find_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return loops


def test_there_is_no_import_loop(graph):
    assert not find_loops(graph)


def test_a_planted_loop_and_an_upward_import_are_caught(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import agents.b\n")
    b.write_text("def f():\n    from trainer import runner\n    import agents.a\n")
    modules = {"agents.a": a, "agents.b": b, "trainer": a, "trainer.runner": a}
    graph = {"agents.a": imports_of("agents.a", a, modules), "agents.b": imports_of("agents.b", b, modules)}
    assert graph == {"agents.a": {"agents.b"}, "agents.b": {"trainer.runner", "agents.a"}}
    assert floor("trainer.runner") > floor("agents.b")
    assert find_loops(graph) == [["agents.a", "agents.b"]]
