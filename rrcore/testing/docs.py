"""A plugin's README held to its config classes: every key in a table, with its default."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs

from rrcore.contracts.registry import Registry, get_registry


def documented_default(value: Any) -> str:
    """A config default as a README's key table writes it: as in TOML (``4.0``, ``1e-05``,
    ``"rope"``, ``true``, ``[1, 2]``), ``required`` for a key without default, ``unset`` for None."""
    if value is attrs.NOTHING:
        return "required"
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        value = value.factory()
    if value is None:
        return "unset"
    return json.dumps(list(value) if isinstance(value, tuple) else value, default=str)


def _table_rows(text: str) -> dict[str, list[dict[str, str]]]:
    """The rows of every Markdown table in ``text`` whose first cell is a `key`, by key, each
    row a dict from its table's lower-case column names to its cells (backticks removed)."""
    rows: dict[str, list[dict[str, str]]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))]
        if header is None:
            header = [cell.lower() for cell in cells]
        elif not set("".join(cells)) <= set("-: "):  # not the separator line
            key = re.fullmatch(r"`([^`]+)`", cells[0])
            if key:
                row = {name: cell.replace("`", "").strip() for name, cell in zip(header, cells)}
                rows.setdefault(key.group(1), []).append(row)
    return rows


def check_documented_keys(readme: str | Path, distribution: str, *, registry: Registry | None = None) -> None:
    """Every key of every config class that the plugins of ``distribution`` register (model,
    data set, evaluator, loss head, optimizer, logger) has a row in a Markdown table of
    ``readme`` whose first cell is the key in backticks, ``| `hidden_size` | int | 512 | ... |``;
    where that table has a ``default`` column, one of the key's rows shows the default as
    :func:`documented_default` writes it. So a README cannot drift from the code: a key added,
    renamed or given another default fails the plugin's tests until the README follows."""
    readme = Path(readme)
    registry = registry or get_registry()
    specs = [
        spec for kind in registry.components.values() for spec in kind.values() if spec.distribution == distribution
    ]
    if not specs:
        raise AssertionError(
            f"distribution {distribution!r} registers no rr component; the kit expects "
            f"the distribution name of an installed plugin (as rr list-plugins shows it)"
        )
    rows = _table_rows(readme.read_text(encoding="utf-8"))
    for spec in specs:
        if spec.config_class is None or not attrs.has(spec.config_class):
            continue
        where = f"{spec.kind.replace('_', ' ')} {spec.name!r} ({spec.config_class.__name__})"
        for field in attrs.fields(spec.config_class):
            if field.name not in rows:
                raise AssertionError(
                    f"{readme}: the key {field.name!r} of {where} has no table row; the kit "
                    f"expects a row | `{field.name}` | type | default | meaning |"
                )
            default = documented_default(field.default)
            shown = [row["default"] for row in rows[field.name] if "default" in row]
            if shown and default not in shown:
                raise AssertionError(
                    f"{readme}: the key {field.name!r} of {where} shows default "
                    f"{' or '.join(shown)}; the kit expects {default}, the config class's"
                )
