"""TOML files: read one into plain data with errors that name it, write plain data back."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from rrcore.contracts.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML file ``path`` (a ``what``, for the messages) as plain data; a
    :class:`ConfigError` naming the file when it is missing or not valid TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not {what}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a TOML text file (byte {error.start} is not UTF-8)") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {what} ({error.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except ValueError as error:  # an integer of thousands of digits (Python's conversion limit)
        raise ConfigError(f"{path}: not valid TOML: {str(error).split(';')[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def _toml_table(values: dict[str, Any], prefix: str, lines: list[str]) -> None:
    tables = {}
    for key, value in values.items():
        if value is None:
            continue  # TOML has no null: an absent key means the default (None)
        if isinstance(value, dict):
            tables[key] = value
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables[key] = value
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in tables.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            lines.append(f"\n[{name}]")
            _toml_table(value, name, lines)
        else:
            for entry in value:
                lines.append(f"\n[[{name}]]")
                _toml_table(entry, name, lines)


def dumps_toml(values: dict[str, Any]) -> str:
    """A small TOML writer for resolved configs (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []
    _toml_table(values, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"
