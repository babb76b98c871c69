"""The documentation keeps up with the code: commands explained, each module's exports named.

- Every ``digest`` command, group and subcommand has help text and a short help, and
  every command has a row in the README's command table (a group is covered by its
  subcommands' rows); every row names a command that exists.
- Every module under ``digest/`` has an ``__all__`` that names exactly its public
  definitions (the rule is :func:`public_definitions`). It is read from the source with
  :mod:`ast`: nothing is imported.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from digest.cli import cli
from digest.cli.root import every_command

from .conftest import REPO

PACKAGE = REPO / "digest"
README = REPO / "README.md"

# Modules that are run or loaded by path, never imported, so have nothing to export:
# ``python -m digest``, and Alembic's environment and revision scripts.
NOT_IMPORTED = ("digest/__main__.py", "digest/store/migrations/env.py")
NOT_IMPORTED_DIRS = ("digest/store/migrations/versions",)


# -- commands -------------------------------------------------------------------------------


def commands(
    command: click.Command = cli, path: tuple[str, ...] = ("digest",)
) -> Iterator[tuple[str, click.Command]]:
    """Every command under ``command``, itself first, as ("digest subscribers add", command)."""
    yield " ".join(path), command
    if isinstance(command, click.Group):
        # The top level's modules load when asked for (digest/cli/root.py): every one here.
        found = every_command() if command is cli else command.commands
        for name, sub in sorted(found.items()):
            if not sub.hidden:
                yield from commands(sub, (*path, name))


def leaf_commands() -> list[str]:
    return [name for name, command in commands() if not isinstance(command, click.Group)]


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def readme_command_rows() -> dict[str, str]:
    """The commands the README's command table has a row for: {command: the row}.

    The first cell's code spans name them: `digest subscribers add EMAIL` is the command
    "digest subscribers add"; a span that does not start with "digest" in the same cell
    (`remove EMAIL` after `digest subscribers unsubscribe EMAIL`) is a sibling of the
    command before it.
    """
    known = {name for name, _ in commands()} - {"digest"}  # a row is for a command under it
    rows: dict[str, str] = {}
    for line in readme_section("Commands").splitlines():
        cells = line.split(" | ")
        if not line.startswith("| `"):
            continue
        parent: list[str] = []
        for span in re.findall(r"`([^`]+)`", cells[0]):
            words = span.split()
            relative = words[0] != "digest"
            if relative:
                words = [*parent, *words]
            # The command is the longest run of leading words that names one.
            prefixes = (" ".join(words[:end]) for end in range(len(words), 0, -1))
            name = next((prefix for prefix in prefixes if prefix in known), span)
            rows.setdefault(name, line)
            if not relative:
                parent = name.split()[:-1]
    return rows


@pytest.mark.parametrize("name", [name for name, _ in commands()])
def test_every_command_has_help_and_a_short_help(name: str) -> None:
    command = dict(commands())[name]

    assert (command.help or "").strip(), f"{name}: no help text (docstring or help=)"
    assert command.get_short_help_str().strip(), f"{name}: no short help"


def test_every_command_has_a_row_in_the_readme() -> None:
    rows = readme_command_rows()

    missing = [name for name in leaf_commands() if name not in rows]
    assert not missing, "README.md, section Commands: no row for " + ", ".join(missing)


def test_every_row_of_the_readme_table_names_a_command() -> None:
    known = {name for name, _ in commands()}

    unknown = [name for name in readme_command_rows() if name not in known]
    assert not unknown, "README.md, section Commands: rows for no command: " + ", ".join(unknown)


# -- __all__ -------------------------------------------------------------------------------


def modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if (relative := path.relative_to(REPO).as_posix()) not in NOT_IMPORTED
        and not any(
            relative.startswith(f"{folder}/") and path.name != "__init__.py"
            for folder in NOT_IMPORTED_DIRS
        )
    )


def package_of(path: Path) -> str | None:
    """The package a ``__init__.py`` under the repository makes ("digest.store"); else None."""
    if path.name != "__init__.py":
        return None
    return ".".join(path.parent.relative_to(REPO).parts)


def top_level(statements: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The module's top-level statements, with those inside top-level if/try/with/for."""
    for statement in statements:
        yield statement
        if isinstance(statement, ast.If | ast.For | ast.While | ast.With):
            yield from top_level(statement.body)
            yield from top_level(getattr(statement, "orelse", []))
        elif isinstance(statement, ast.Try):
            yield from top_level(statement.body)
            for handler in statement.handlers:
                yield from top_level(handler.body)
            yield from top_level(statement.orelse)
            yield from top_level(statement.finalbody)


def assigned_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from assigned_names(element)
    elif isinstance(target, ast.Starred):
        yield from assigned_names(target.value)


def is_plumbing(value: ast.expr | None) -> bool:
    """A module's logger or a type variable: bound at the top, yet nobody's to import.

    A logger is reached through :mod:`logging` by its name; a type variable only spells
    the signatures it appears in.
    """
    if not isinstance(value, ast.Call):
        return False
    called = value.func
    name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
    return name in {"getLogger", "TypeVar", "ParamSpec", "TypeVarTuple"}


def is_public(name: str) -> bool:
    """Not _private; a dunder such as __version__ is public (__all__ itself excepted)."""
    if name == "__all__":
        return False
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def from_own_package(statement: ast.ImportFrom, package: str) -> bool:
    """Whether ``statement``, in the package ``package``'s __init__, imports from its own modules."""
    if statement.level:
        return True  # from . import x, from .sub import y
    module = statement.module or ""
    return module == package or module.startswith(f"{package}.")


def public_definitions(tree: ast.Module, package: str | None = None) -> set[str]:
    """The public names the module defines, which its ``__all__`` must name, and no others.

    - a top-level ``def``, ``async def`` or ``class``, or a name bound by a top-level
      assignment (constants, module variables, type aliases), that does not start with
      an underscore (a dunder such as ``__version__`` is public);
    - except a logger (``logging.getLogger(...)``) or a type variable (``TypeVar(...)``);
    - in a package's ``__init__``, also every public name it imports from its own
      modules: a package's face is what it gathers from them.

    A name an ordinary module imports is never its definition, even if re-exported: it
    is exported by the module that defines it (or by its package's ``__init__``).
    ``package`` is the package's name when the module is its ``__init__``.
    """
    names: set[str] = set()
    for statement in top_level(tree.body):
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(statement.name)
        elif isinstance(statement, ast.Assign) and not is_plumbing(statement.value):
            for target in statement.targets:
                names.update(assigned_names(target))
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            if not is_plumbing(statement.value):
                names.update(assigned_names(statement.target))
        elif (
            isinstance(statement, ast.ImportFrom)
            and package is not None
            and from_own_package(statement, package)
        ):
            names.update(alias.asname or alias.name for alias in statement.names)
    return {name for name in names if is_public(name)}


def declared_all(tree: ast.Module) -> list[str] | str:
    """The module's ``__all__``, or why it has none that can be read."""
    found: list[str] | str = "no __all__"
    for statement in top_level(tree.body):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
            targets, value = [statement.target], statement.value
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            continue
        if isinstance(statement, ast.AugAssign) or value is None:
            return "__all__ is not one literal list of names"
        try:
            literal = ast.literal_eval(value)
        except ValueError:
            return "__all__ is not one literal list of names"
        if not isinstance(literal, list | tuple) or not all(isinstance(n, str) for n in literal):
            return "__all__ is not one literal list of names"
        found = list(literal)
    return found


def all_mismatch(path: Path) -> str | None:
    """What is wrong with the module's ``__all__``, in one line; None when nothing is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    declared = declared_all(tree)
    defined = public_definitions(tree, package_of(path))
    where = path.relative_to(REPO).as_posix()
    if isinstance(declared, str):
        return f"{where}: {declared} (public definitions: {sorted(defined)})"
    problems = []
    if missing := sorted(defined - set(declared)):
        problems.append(f"missing {missing}")
    if extra := sorted(set(declared) - defined):
        problems.append(f"not defined here {extra}")
    if repeated := sorted({name for name in declared if declared.count(name) > 1}):
        problems.append(f"listed twice {repeated}")
    return f"{where}: {'; '.join(problems)}" if problems else None


def test_the_modules_checked_include_every_kind() -> None:
    checked = {path.relative_to(PACKAGE).as_posix() for path in modules()}

    assert {"__init__.py", "pipeline.py", "store/__init__.py", "cli/root.py"} <= checked
    assert "store/migrations/versions/__init__.py" in checked
    assert not any(name.startswith("store/migrations/versions/0") for name in checked)


def test_every_module_lists_exactly_its_public_definitions_in_all() -> None:
    mismatches = [problem for path in modules() if (problem := all_mismatch(path))]

    assert not mismatches, (
        f"{len(mismatches)} modules whose __all__ is not exactly their public definitions "
        "(see public_definitions in tests/test_docs.py for the rule):\n" + "\n".join(mismatches)
    )


def test_the_rule_for_all() -> None:
    source = """
import logging
from typing import TypeVar
from digest.errors import DigestError
from digest.store.database import Store
from . import sibling
log = logging.getLogger(__name__)
T = TypeVar("T")
LIMIT = 3
Alias = list[int]
__version__ = "1"
_private = 1
first, (second, *rest) = 1, (2, 3)
typed: int = 4
declared_only: int
try:
    import fast
except ImportError:
    FAST = False
def function() -> None: ...
async def coroutine() -> None: ...
class Thing: ...
def _helper() -> None: ...
"""
    tree = ast.parse(source)
    own = {"LIMIT", "Alias", "__version__", "first", "second", "rest", "typed", "FAST"}
    own |= {"function", "coroutine", "Thing"}

    assert public_definitions(tree) == own
    assert public_definitions(tree, "digest.store") == own | {"Store", "sibling"}
    assert package_of(PACKAGE / "store" / "__init__.py") == "digest.store"
    assert package_of(PACKAGE / "pipeline.py") is None
    assert declared_all(ast.parse("__all__ = ['a', 'b']")) == ["a", "b"]
    assert declared_all(ast.parse("__all__: list[str] = []")) == []
    assert declared_all(tree) == "no __all__"
    assert declared_all(ast.parse("__all__ = ['a']\n__all__ += ['b']")) == (
        "__all__ is not one literal list of names"
    )
