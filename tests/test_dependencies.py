"""pyproject's dependencies match the imports: every third-party module the package imports is
declared (torch excepted: installed first on purpose, see the Makefile), and every declared
runtime dependency is imported by the package."""
import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["core", "pipeline", "taggers", "dedup", "training"]
NOT_DECLARED_ON_PURPOSE = {"torch"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _norm(re.split(r"[\s<>=!~\[;]", req.strip(), maxsplit=1)[0])


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    extras = {_requirement_name(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    return runtime, extras


def _imported_modules() -> dict[str, str]:
    found: dict[str, str] = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for n in names:
                    top = n.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "dolma_prep":
                        found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_imported_module_is_declared():
    runtime, extras = _declared()
    dists_of = md.packages_distributions()
    missing = []
    for module, where in sorted(_imported_modules().items()):
        if module in NOT_DECLARED_ON_PURPOSE:
            continue
        dists = {_norm(d) for d in dists_of.get(module, [])}
        assert dists, f"{module} (imported by {where}) is not installed"
        if not dists & (runtime | extras):
            missing.append(f"{module} ({where}; distribution {sorted(dists)})")
    assert not missing, "imported but not declared in pyproject.toml: " + ", ".join(missing)


def test_every_runtime_dependency_is_imported():
    runtime, _ = _declared()
    dists_of = md.packages_distributions()
    provided = {_norm(d) for m in _imported_modules() for d in dists_of.get(m, [])}
    assert not runtime - provided, f"declared but never imported by the package: {sorted(runtime - provided)}"
