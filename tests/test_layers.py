"""Imports go one way (issue 26): no import cycle between project modules, and no room imports a higher one.

Rooms, bottom to top: `core` (imports no other project module) < `taggers`, `dedup`, `training`
(each imports core and itself only: never each other, never pipeline) < `pipeline` (anything).

The modules are parsed, not imported: an import inside a function is an import too (it only
hides a cycle until the function runs), so every import statement at any depth counts, relative
(`from ..core import io`) or absolute (`from dolma_prep.taggers import registry`).
"""
from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

from conftest import REPO

ROOMS = ("core", "taggers", "dedup", "training", "pipeline")
MAY_IMPORT = {
    "core": {"core"},
    "taggers": {"core", "taggers"},
    "dedup": {"core", "dedup"},
    "training": {"core", "training"},
    "pipeline": set(ROOMS),
}


def project_modules(root: Path = REPO) -> dict[str, Path]:
    """Dotted name (without `dolma_prep.`) -> file, for every module of the rooms."""
    mods = {}
    for room in ROOMS:
        for path in sorted((root / room).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _nearest(name: str, mods: dict[str, Path]) -> str | None:
    """The module an import of `name` loads: itself, or the package it names something of."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name.removeprefix("dolma_prep.") for a in node.names if a.name.startswith("dolma_prep.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1 > len(base):
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the project")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module == "dolma_prep" or (node.module or "").startswith("dolma_prep."):
                target = node.module.removeprefix("dolma_prep").removeprefix(".")
            else:
                continue
            # `from X import y`: the module X.y when there is one, else X (y is a name in it)
            for a in node.names:
                sub = f"{target}.{a.name}" if target else a.name
                targets.append(sub if sub in mods else target)
        for t in targets:
            found = _nearest(t, mods)
            if found is not None and found != name:
                out.add(found)
    return out


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    mods = project_modules(root)
    return {name: imports_of(name, path, mods) for name, path in mods.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other round a loop (Tarjan), sorted; singletons left out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def loop_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One shortest import loop from the group's first module back to it: [a, b, ..., a]."""
    start, members = group[0], set(group)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"{group} is not a cycle")


def room_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a room imports one it may not."""
    return sorted((src, dst) for src, dsts in graph.items() for dst in dsts
                  if dst.split(".")[0] not in MAY_IMPORT[src.split(".")[0]])


def cycle_errors(graph: dict[str, set[str]]) -> list[str]:
    return [f"import cycle: {' -> '.join(loop_through(g, graph))}  (all of {', '.join(g)})"
            for g in strongly_connected(graph)]


def room_errors(graph: dict[str, set[str]]) -> list[str]:
    errors = []
    for src, dst in room_violations(graph):
        room = src.split(".")[0]
        errors.append(f"{src} imports {dst}: {room}/ may import only {', '.join(sorted(MAY_IMPORT[room]))}")
    return errors


def test_no_import_cycles():
    errors = cycle_errors(import_graph())
    assert not errors, "\n".join(errors)


def test_lower_rooms_do_not_import_higher_ones():
    errors = room_errors(import_graph())
    assert not errors, "\n".join(errors)


def test_every_import_form_is_seen(tmp_path):
    """The checks on a small tree: relative, absolute and nested imports, cycles and rooms."""
    files = {
        "core/__init__.py": "",
        "core/a.py": "def f():\n    from ..pipeline import run  # a lazy import is an import\n",
        "taggers/__init__.py": "",
        "taggers/t.py": "from dolma_prep.core import a\nimport dolma_prep.training.x\n",
        "dedup/__init__.py": "",
        "training/__init__.py": "",
        "training/x.py": "from .y import thing\n",
        "training/y.py": "from . import x\n",
        "pipeline/__init__.py": "",
        "pipeline/run.py": "from ..taggers import t\nfrom ..core.a import f\n",
        "pipeline/stages/__init__.py": "from . import s\n",
        "pipeline/stages/s.py": "from ... import core\nfrom ...pipeline.run import x\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(tmp_path)
    assert graph["core.a"] == {"pipeline.run"}
    assert graph["taggers.t"] == {"core.a", "training.x"}
    assert graph["pipeline.stages"] == {"pipeline.stages.s"}
    assert graph["pipeline.stages.s"] == {"core", "pipeline.run"}
    assert strongly_connected(graph) == [["core.a", "pipeline.run", "taggers.t"], ["training.x", "training.y"]]
    assert cycle_errors(graph) == [
        "import cycle: core.a -> pipeline.run -> core.a  (all of core.a, pipeline.run, taggers.t)",
        "import cycle: training.x -> training.y -> training.x  (all of training.x, training.y)",
    ]
    assert room_violations(graph) == [("core.a", "pipeline.run"), ("taggers.t", "training.x")]
    assert room_errors(graph) == ["core.a imports pipeline.run: core/ may import only core",
                                  "taggers.t imports training.x: taggers/ may import only core, taggers"]
