"""The package's shape: imports flow downward only, and the pure stages stay light.

The layers are the README's map ("How the code is laid out"), lowest first. A module may
import from its own folder and from lower layers, never from a higher one: so the
content, email and audience stages can be read, tested and reused without the database,
the scheduler or the web server.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "digest"

# Lowest first; a name is a top-level module or a folder of the package.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__init__", "errors"}),
    frozenset({"models", "clock", "crontab", "eventloop"}),
    frozenset({"content"}),
    frozenset({"audience"}),
    frozenset({"email"}),
    frozenset({"store"}),
    frozenset({"settings"}),
    frozenset({"options"}),
    frozenset({"delivery"}),
    frozenset({"bounces"}),
    frozenset({"seedcache"}),
    frozenset({"pipeline"}),
    frozenset({"sending"}),
    frozenset({"readers"}),
    frozenset({"checks"}),
    frozenset({"alerts"}),
    frozenset({"schedule", "web"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

# Importing these would make a pure stage need the database, the scheduler, the web
# server or the settings loader.
HEAVY = ("sqlalchemy", "apscheduler", "starlette", "pydantic_settings", "uvicorn", "aiosmtplib")


def _area(module: str) -> str:
    """The layer name of a dotted module under digest: its folder or top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()


def _digest_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every digest module ``path`` imports, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "digest":
                # A submodule, or a name of the package itself (__version__).
                found += [
                    (node.lineno, f"digest.{alias.name}" if _is_module(alias.name) else "digest")
                    for alias in node.names
                ]
            elif node.module.startswith("digest."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("digest.")]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_every_area_has_a_layer() -> None:
    areas = {_area(_module_name(path)) for path in _modules()}
    assert areas <= set(RANK), f"add to LAYERS: {sorted(areas - set(RANK))}"


def test_imports_flow_downward_only() -> None:
    upward = []
    for path in _modules():
        importer = _area(_module_name(path))
        for line, module in _digest_imports(path):
            imported = _area(module)
            if imported != importer and RANK[imported] >= RANK[importer]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not upward, "imports that do not flow downward:\n" + "\n".join(upward)


def _pure_modules() -> list[str]:
    return [
        _module_name(path)
        for area in ("content", "audience", "email")
        for path in sorted((PACKAGE / area).glob("*.py"))
    ]


@pytest.mark.timeout(60)
def test_pure_stages_import_no_database_scheduler_web_or_settings_loader() -> None:
    modules = _pure_modules()
    assert {"digest.email.render", "digest.email.message", "digest.content.loader"} <= set(modules)
    # A fresh interpreter: this test process has long since imported everything.
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=50
    )
    assert json.loads(out.stdout) == []


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The check above must be able to fail: an email module importing the store is caught.
    probe = tmp_path / "probe.py"
    probe.write_text("from digest.store import Store\nfrom digest import pipeline\n")
    imports = _digest_imports(probe)
    assert imports == [(1, "digest.store"), (2, "digest.pipeline")]
    assert all(RANK[_area(module)] > RANK["email"] for _, module in imports)
