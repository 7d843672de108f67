"""The package rules of docs/architecture.md, checked on every module's imports (top-level and deferred).

- a service (adapters, gating, ingest, indexing, memory, notifier, reasoning, uplink) imports only itself,
  `common` and `models`;
- `models` imports only itself and `common`; `common` imports only itself;
- the composition layers (`cli`, `embedded`) may import any of them; nothing in `services` imports them back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("adapters", "gating", "ingest", "indexing", "memory", "notifier", "reasoning", "uplink")
APPS = ("cli", "embedded")

# Who may import whom, by top-level package under `services`.
ALLOWED: dict[str, frozenset[str]] = {
    **{svc: frozenset({svc, "common", "models"}) for svc in SERVICES},
    "models": frozenset({"models", "common"}),
    "common": frozenset({"common"}),
    **{app: frozenset({*SERVICES, *APPS, "common", "models"}) for app in APPS},
}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT / "services")
    return rel.parts[0].removesuffix(".py")


def imported_services(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level package) for every `services.X` a module imports, wherever the import sits."""
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "services" else [f"services.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "services" and len(parts) > 1:
                found.append((getattr(node, "lineno", 0), parts[1]))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in (ROOT / "services").rglob("*.py") if "__pycache__" not in p.parts)


def test_every_package_has_a_rule() -> None:
    packages = {_package(p) for p in _modules()} - {"__init__"}
    assert packages <= set(ALLOWED), f"packages without an import rule: {sorted(packages - set(ALLOWED))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_rules(path: Path) -> None:
    package = _package(path)
    if package == "__init__":
        return
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports services.{target}"
        for line, target in imported_services(tree)
        if target not in ALLOWED[package]
    ]
    assert not bad, f"`{package}` may import only {sorted(ALLOWED[package])} (docs/architecture.md):\n" + "\n".join(bad)


def test_the_checker_sees_deferred_imports() -> None:
    tree = ast.parse("def f():\n    from services.memory.retriever import Retriever\n    import services.gating.x\n")
    assert imported_services(tree) == [(2, "memory"), (3, "gating")]


def _imported_modules(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, module, at top level) for every absolute import of a module."""
    top = {id(node) for node in getattr(tree, "body", [])}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, id(node) in top))
    return found


def test_the_uplink_service_leaves_its_research_code_alone() -> None:
    """The service modules import services.uplink.sim only where the running service needs it, deferred.

    The one such place is the emulated link the uplink bootstrap builds for tests and benchmarks (a bandwidth trace);
    scipy (the `sim` extra) stays inside sim/.
    """
    uplink = ROOT / "services" / "uplink"
    allowed_deferred = {("bootstrap.py", "services.uplink.sim.traces")}
    bad = []
    for path in sorted(uplink.glob("*.py")):
        for line, module, top in _imported_modules(ast.parse(path.read_text(), filename=str(path))):
            research = module == "services.uplink.sim" or module.startswith("services.uplink.sim.")
            if module.split(".")[0] == "scipy" or (research and (top or (path.name, module) not in allowed_deferred)):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "the uplink service imports its research code:\n" + "\n".join(bad)
