"""A setting that cannot be read, in one line: which, from where, the value, what is wanted.

Secrets never show, nor a password inside a URL; a misspelt name gets the nearest real one.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path

from pydantic import (
    BaseModel,
    SecretStr,
)
from pydantic_core import ErrorDetails
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["ENV_PREFIX", "describe", "keys_in", "setting_names"]

# Every environment variable digest reads starts so.
ENV_PREFIX = "DIGEST_"


def keys_in(config_file: Path) -> frozenset[str]:
    """The settings the config file sets, dotted for its tables ("smtp.port")."""
    try:
        document = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return frozenset()
    keys = set()
    for key, value in document.items():
        keys.add(key)
        if isinstance(value, dict):
            keys.update(f"{key}.{inner}" for inner in value)
    return frozenset(keys)


def setting_names(model: type[BaseModel]) -> list[str]:
    """Every setting's name in ``model``, dotted for the sections ("smtp.port")."""
    names = []
    for name, field in model.model_fields.items():
        names.append(name)
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names += [f"{name}.{inner}" for inner in section.model_fields]
    return names


def _did_you_mean(name: str, names: Sequence[str], *, as_variable: bool) -> str:
    """ "did you mean max_articles?" for a near miss, else "misspelt?"."""
    if as_variable:
        variables = {ENV_PREFIX + known.upper().replace(".", "__"): known for known in names}
        close = difflib.get_close_matches(name.upper(), list(variables), n=1, cutoff=0.75)
    else:
        close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.75)
    return f"did you mean {close[0]}?" if close else "misspelt?"


def describe(
    error: ErrorDetails, config_file: Path, in_file: frozenset[str], model: type[BaseModel]
) -> str:
    """One line naming the setting, where it came from, the bad value and what is expected.

    ``in_file`` are the settings the config file sets (:func:`keys_in`); ``model`` is the
    settings model, for the names a misspelt one is compared with.
    """
    names = setting_names(model)
    path = [str(part) for part in error["loc"] if isinstance(part, str)]
    name = ".".join(path)
    env_name = ENV_PREFIX + "__".join(part.upper() for part in path)
    in_environment = {key.upper() for key in os.environ}
    if error["type"] == "extra_forbidden":
        if name.upper().startswith(ENV_PREFIX):
            suggestion = _did_you_mean(name, names, as_variable=True)
            return f"unknown setting {name.upper()} in .env ({suggestion})"
        # Nested environment variables arrive as keys like the file's: say which it was.
        if env_name in in_environment:
            suggestion = _did_you_mean(env_name, names, as_variable=True)
            return f"unknown setting {env_name} in the environment ({suggestion})"
        suggestion = _did_you_mean(name, names, as_variable=False)
        return f"unknown setting {name!r} in {config_file} ({suggestion})"
    value = error.get("input")
    if _is_secret(path, model):
        shown = "'**********'"
    elif isinstance(value, str):
        # A URL or "user:password@host" in any setting (the database, a relay) shows no password.
        shown = repr(_hide_password(value) if path == ["database_url"] else _hide_userinfo(value))
    else:
        shown = repr(value)
    if env_name not in in_environment and name in in_file:
        # The file's value, unless the environment overrode it.
        return f"{config_file}: invalid setting {name} = {shown}: {error['msg']}"
    return f"invalid setting {name} ({env_name}) = {shown}: {error['msg']}"


def _hide_userinfo(value: str) -> str:
    """``value`` with everything between the first ":" of its user part and the last "@" starred.

    A password may hold any character, "@", ":" and "/" included, so nothing in it can
    mark where it ends but the last "@"; hiding a port with it is the lesser harm.
    """
    scheme, separator, rest = value.partition("://")
    if not separator:
        scheme, rest = "", value
    userinfo, at, host = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not at or not colon:
        return value
    return f"{scheme}{separator}{user}:***@{host}"


def _hide_password(url: str) -> str:
    """``url`` with the password of its user part replaced by stars, however malformed."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Not a URL SQLAlchemy reads.
        return _hide_userinfo(url)


def _is_secret(path: list[str], model: type[BaseModel]) -> bool:
    for part in path:
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if annotation is SecretStr or SecretStr in typing.get_args(annotation):
            return True
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return False
    return False
