"""Every third-party import of services/, scripts/ and bench/ is declared in pyproject.toml (dependency or extra)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"services", "vigil", "scripts", "bench", "tests"}
# Only inside Triton's Python backend, which provides it.
PROVIDED = {"triton_python_backend_utils"}


def _name(requirement: str) -> str:
    """PEP 503 normalised distribution name of a requirement string."""
    bare = re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", bare).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {_name(r) for r in reqs}


def _imports(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def test_every_import_is_declared() -> None:
    declared = _declared()
    distributions = md.packages_distributions()
    missing = []
    for folder in ("services", "scripts", "bench", "triton_models"):
        for module, path in sorted(_imports(ROOT / folder).items()):
            if module in sys.stdlib_module_names or module in FIRST_PARTY | PROVIDED:
                continue
            dists = {_name(d) for d in distributions.get(module, [])}
            if not dists & declared:
                missing.append(f"{module} (from {path.relative_to(ROOT)}; distribution {sorted(dists) or '?'})")
    assert not missing, "imports not declared in pyproject.toml: " + ", ".join(missing)
