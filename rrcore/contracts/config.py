"""Experiment files: TOML read into an :class:`~rrcore.contracts.experiment.Experiment`,
validated once at load, and written back.

An experiment has core sections (``[run]``, ``[act]``, ``[train]``, ``[eval]``) and plugin
sections (``[data]``, ``[model]``, ``[loss]``, ``[optimizer]``, ``[[evaluators]]``,
``[[loggers]]``) whose ``plugin`` key names a registered component; the rest of a
plugin section is structured (:func:`rrcore.contracts.structure.structure`) into that
component's own config class. Every error names the file, the key path and what would be right.

A file may start from another: ``base = "other.toml"`` (top level, relative to the file)
reads that file first and lays this one's keys over it, table by table (:func:`merge`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import attrs

from rrcore.base.validators import show
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.experiment import (
    MAIN_PART,
    PUZZLE_EMB_PART,
    ACTConfig,
    EvalConfig,
    Experiment,
    OptimizerGroup,
    OptimizerGroupConfig,
    OptimizerSection,
    PluginSection,
    PuzzleEmbOptimizerConfig,
    RunConfig,
    TrainConfig,
)
from rrcore.contracts.provenance import install_hint
from rrcore.contracts.registry import Registry, UnknownPluginError, get_registry
from rrcore.contracts.specs import ModelSpec
from rrcore.contracts.structure import close_hint, structure
from rrcore.contracts.tomlfile import dumps_toml, read_toml, tomllib

CORE_SECTIONS: dict[str, type] = {"run": RunConfig, "act": ACTConfig, "train": TrainConfig, "eval": EvalConfig}
PLUGIN_SECTIONS: dict[str, str] = {"data": "dataset", "model": "model", "loss": "loss_head", "optimizer": "optimizer"}
LIST_SECTIONS: dict[str, str] = {"evaluators": "evaluator", "loggers": "logger"}
DEFAULTS: dict[str, Any] = {
    "loss": {"plugin": "act"},
    "optimizer": {"plugin": "adam_atan2"},
    "evaluators": [{"plugin": "exact"}],
    "loggers": [],
}
ALL_SECTIONS = (*CORE_SECTIONS, *PLUGIN_SECTIONS, *LIST_SECTIONS)

# Keys that moved: old experiment files (and the config.toml of older runs) still load.
MOVED_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("train", "puzzle_emb_lr"): ("optimizer.puzzle_emb", "lr"),
    ("train", "puzzle_emb_weight_decay"): ("optimizer.puzzle_emb", "weight_decay"),
}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` → (["train", "lr"], 3e-4); values are TOML, bare words strings."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    except ValueError as error:  # an integer of thousands of digits (Python's conversion limit)
        raise ConfigError(f"--set {key}: {str(error).split(';')[0]}") from None
    except RecursionError:
        raise ConfigError(f"--set {key}: the value nests arrays or tables too deeply") from None
    return key.split("."), value


def apply_override(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    node: Any = raw
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if key.isdigit() and int(key) == len(node) and all(isinstance(e, dict) for e in node):
                node.append({})  # the next entry of an array of tables: --set loggers.0.plugin=wandb
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(
                    f"--set {'.'.join(keys)}: {'.'.join(keys[:i])} has {len(node)} entries; "
                    f"{key!r} is not an index among them (nor {len(node)}, which adds one)"
                )
            node = node[int(key)]
        else:
            if i == 0 and key not in node and key in LIST_SECTIONS:
                node[key] = [dict(d) for d in DEFAULTS[key]]
            elif i == 0 and key not in node and key in DEFAULTS:  # e.g. --set loss.q_loss_weight=1
                node[key] = dict(DEFAULTS[key])
            node = node.setdefault(key, {})
        if not isinstance(node, dict | list):  # --set train.lr.x=1: lr is a number
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is {show(node)}, not a table of keys")
    last = keys[-1]
    if isinstance(node, list):
        raise ConfigError(f"--set {'.'.join(keys)}: name an entry index, e.g. {'.'.join(keys[:-1])}.0.{last}")
    node[last] = value


def _plugin_section(raw: Any, kind: str, where: str, path: str, registry: Registry) -> PluginSection:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {path}: expected a table with a 'plugin' key, got {raw!r}")
    raw = dict(raw)
    name = raw.pop("plugin", None)
    if name is None:
        available = ", ".join(sorted(registry.components[kind]))
        raise ConfigError(f"{where}: {path}.plugin: required; available: {available}")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: {path}.plugin: expected str, got {name!r}")
    try:
        spec = registry.get(kind, name)
    except UnknownPluginError as error:
        raise ConfigError(f"{where}: {path}.plugin: {error}") from None
    if spec.config_class is None:
        if raw:
            raise ConfigError(f"{where}: {path}.{next(iter(raw))}: unknown key; plugin {name!r} takes no options")
        return PluginSection(name, None)
    return PluginSection(name, structure(raw, spec.config_class, where, path))


def _move_keys(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """``raw`` with keys of :data:`MOVED_KEYS` at their new place, saying so on stderr;
    a key given at both places is a :class:`ConfigError`."""
    raw = {name: dict(value) if isinstance(value, dict) else value for name, value in raw.items()}
    for (section, key), (new_table, new_key) in MOVED_KEYS.items():
        if not isinstance(raw.get(section), dict) or key not in raw[section]:
            continue
        table = raw
        for name in new_table.split("."):
            if not isinstance(table.get(name, {}), dict):
                raise ConfigError(f"{where}: {name}: expected a table, got {table[name]!r}")
            table[name] = table = dict(table.get(name, DEFAULTS.get(name, {})))
        if new_key in table:
            raise ConfigError(
                f"{where}: {section}.{key}: moved to {new_table}.{new_key}, which is also set; "
                f"keep only {new_table}.{new_key}"
            )
        table[new_key] = raw[section].pop(key)
        print(f"rr: note: {where}: {section}.{key} is now {new_table}.{new_key} (read as such)", file=sys.stderr)
    return raw


def resolve(raw: dict[str, Any], registry: Registry, where: str = "<experiment>") -> Experiment:
    """Validate a raw experiment dict (after overrides) into an :class:`Experiment`."""
    for key in raw:
        if key not in ALL_SECTIONS:
            raise ConfigError(f"{where}: {key}: unknown section; {close_hint(key, ALL_SECTIONS, 'valid sections')}")
    for required in ("data", "model"):
        if required not in raw:
            raise ConfigError(f"{where}: [{required}] section is missing (it needs at least a 'plugin' key)")
    raw = _move_keys(raw, where)
    values: dict[str, Any] = {}
    for name, cls in CORE_SECTIONS.items():
        values[name] = structure(raw.get(name, {}), cls, where, name)
    optimizer = raw.get("optimizer", DEFAULTS["optimizer"])
    puzzle_emb, groups = {}, {}
    if isinstance(optimizer, dict):
        optimizer = dict(optimizer)
        puzzle_emb = optimizer.pop("puzzle_emb", {})
        groups = optimizer.pop("groups", {})
        raw = {**raw, "optimizer": optimizer}
    puzzle_emb = structure(puzzle_emb, PuzzleEmbOptimizerConfig, where, "optimizer.puzzle_emb")
    for name, kind in PLUGIN_SECTIONS.items():
        values[name] = _plugin_section(raw.get(name, DEFAULTS.get(name)), kind, where, name, registry)
    groups = _optimizer_groups(groups, optimizer, values["train"], registry, where)
    values["optimizer"] = OptimizerSection(values["optimizer"].plugin, values["optimizer"].config, puzzle_emb, groups)
    for name, kind in LIST_SECTIONS.items():
        entries = raw.get(name, DEFAULTS[name])
        if not isinstance(entries, list):
            raise ConfigError(f"{where}: {name}: expected an array of tables ([[{name}]]), got {entries!r}")
        values[name] = [_plugin_section(e, kind, where, f"{name}.{i}", registry) for i, e in enumerate(entries)]
    _match_q_continue(values["act"], raw.get("act", {}), registry.get("model", values["model"].plugin), where)
    _check_curriculum(values["train"], values["model"], where)
    return Experiment(**values, source=where)


def _check_curriculum(train: TrainConfig, model: PluginSection, where: str) -> None:
    """Every ``[[train.curriculum]]`` phase must name integer keys of the model's config,
    with values its validators accept."""
    fields = {f.name: f for f in attrs.fields(type(model.config))} if model.config is not None else {}
    for index, phase in enumerate(train.curriculum):
        for key in phase.model:
            path = f"train.curriculum.{index}.model.{key}"
            if key not in fields:
                raise ConfigError(f"{where}: {path}: model {model.plugin!r} has no key {key!r}")
            if fields[key].type not in (int, "int"):
                raise ConfigError(f"{where}: {path}: only integer model keys can change by step")
        try:
            attrs.evolve(model.config, **phase.model)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: train.curriculum.{index}.model: {error}") from None


def _optimizer_groups(
    raw: Any, main: dict[str, Any], train: TrainConfig, registry: Registry, where: str
) -> dict[str, OptimizerGroup]:
    """The ``[optimizer.groups.NAME]`` tables: each one's core keys
    (:class:`~rrcore.contracts.experiment.OptimizerGroupConfig`, ``weight_decay`` and ``betas`` from
    ``[train]`` when left out) and its plugin section (``main``, the ``[optimizer]`` table,
    under the group's keys when the group names no plugin)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: optimizer.groups: expected tables [optimizer.groups.NAME], got {raw!r}")
    core_keys = [field.name for field in attrs.fields(OptimizerGroupConfig)]
    groups = {}
    for name, table in raw.items():
        path = f"optimizer.groups.{name}"
        if name in (MAIN_PART, PUZZLE_EMB_PART) or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"{where}: {path}: a group needs a name of letters, digits, '_' or '-' other than "
                f"{MAIN_PART!r} and {PUZZLE_EMB_PART!r} (the optimizer state's other parts)"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {path}: expected a table with params and lr, got {table!r}")
        table = dict(table) if "plugin" in table else {**main, **table}
        plugin = table.get("plugin")
        spec = registry.components["optimizer"].get(plugin) if isinstance(plugin, str) else None
        if spec is not None:  # else _plugin_section says what is wrong with the plugin
            options = [f.name for f in attrs.fields(spec.config_class)] if spec.config_class is not None else []
            valid = ["plugin", *core_keys, *options]
            for key in table:
                if key not in valid:
                    raise ConfigError(f"{where}: {path}.{key}: unknown key; {close_hint(key, valid)}")
        core = {key: table.pop(key) for key in core_keys if key in table}
        if isinstance(core.get("params"), str):
            core["params"] = [core["params"]]
        keys = structure(core, OptimizerGroupConfig, where, path)
        if keys.weight_decay is None:
            keys.weight_decay = train.weight_decay
        if keys.betas is None:
            keys.betas = list(train.betas)
        section = _plugin_section(table, "optimizer", where, path, registry)
        groups[name] = OptimizerGroup(section.plugin, section.config, keys=keys)
    return groups


def _match_q_continue(act: ACTConfig, raw_act: dict[str, Any], model: ModelSpec, where: str) -> None:
    """``[act] q_continue`` follows the model's ``predicts_q_continue`` when left out; a value
    that contradicts it is refused (a model without a declaration takes either, default false)."""
    declared = model.predicts_q_continue
    if declared is None:
        return
    if "q_continue" not in raw_act:
        act.q_continue = declared
    elif act.q_continue != declared:
        does = (
            "predicts Q-continue (it halts on q_halt > q_continue)"
            if declared
            else "does not predict Q-continue (it halts on q_halt > 0)"
        )
        raise ConfigError(
            f"{where}: act.q_continue = {str(act.q_continue).lower()}: model {model.name!r} "
            f"{does}; leave the key out or set it to {str(declared).lower()}"
        )


BASE_KEY = "base"
SAVED_EXPERIMENT_FILE = "config.toml"  # the resolved experiment a run or export folder keeps


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``, table by table (neither is changed).

    A table merges key by key, recursively; any other value — a number, a string, a list,
    an array of tables such as ``[[evaluators]]`` — replaces the base's value whole. A
    table that names another ``plugin`` than its base's (``[model] plugin = "hrm"`` over
    a base's ``"trm"``) replaces the base's table whole too: those keys belong to the other
    component's config. A base table without ``plugin`` (shared sizes) always merges.
    """
    merged = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            changes_plugin = "plugin" in value and below.get("plugin", value["plugin"]) != value["plugin"]
            merged[key] = dict(value) if changes_plugin else merge(below, value)
        else:
            merged[key] = value
    return merged


def load_raw(
    path: str | Path, _chain: tuple[Path, ...] = (), files: list[tuple[Path, dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """The experiment file at ``path`` as a dict, its ``base = "other.toml"`` chain merged in.

    ``base`` names another experiment file, relative to the file that names it; that file
    is read first (and may have a base of its own) and this file's keys are merged over it
    (see :func:`merge`). A missing base file or a cycle is a :class:`ConfigError` naming it.
    ``files``, when given, receives each file of the chain with its own keys, ``path``
    first and its bases after it (what :func:`set_by` reads).
    """
    path = Path(path)
    raw = read_toml(path, "experiment file" if not _chain else "base experiment file")
    if files is not None:
        files.append((path, raw))
    if BASE_KEY not in raw:
        return raw
    base = raw.pop(BASE_KEY)
    if not isinstance(base, str) or not base:
        raise ConfigError(
            f"{path}: base: expected the path of another experiment file (relative to this "
            f'one), e.g. base = "sudoku4x4.toml", got {base!r}'
        )
    base_path = path.parent / base
    chain = (*_chain, path)
    if base_path.resolve() in {p.resolve() for p in chain}:
        loop = " -> ".join(str(p) for p in (*chain, base_path))
        raise ConfigError(f"{path}: base = {base!r} makes a cycle ({loop}); one file of it must not name a base")
    if not base_path.exists():
        raise ConfigError(f"{path}: base = {base!r}: no such file {base_path} (the path is relative to {path})")
    return merge(load_raw(base_path, chain, files), raw)


def set_by(files: list[tuple[Path, dict[str, Any]]], keys: list[str]) -> Path | None:
    """The file of ``files`` (from :func:`load_raw`, the experiment file first) whose own
    keys set the key path ``keys`` (``["model", "H_cycles"]``), or None when none does (a
    default). A list such as ``[[evaluators]]`` is set whole by one file, entries and all."""
    for path, raw in files:
        node: Any = raw
        for key in keys:
            if not isinstance(node, dict):
                break  # a list or a value: this file set it, and what is below it
            if key not in node:
                node = None
                break
            node = node[key]
        if node is not None:
            return path
    return None


def _name_base_files(
    error: ConfigError, where: str, files: list[tuple[Path, dict[str, Any]]], keys_set: list[list[str]]
) -> str:
    """``error``'s lines (``WHERE: KEY...``), each naming instead the base file that set
    ``KEY`` when one did and no ``--set`` (``keys_set``) changed it or a table above it."""
    lines = []
    for line in str(error).split("\n"):
        rest = line[len(where) + 2 :] if line.startswith(f"{where}: ") else ""
        key = re.match(r"[\w.-]+", rest)
        keys = key.group().split(".") if key else []
        source = set_by(files, keys) if keys else None
        overridden = any(keys[: len(set_)] == set_ or set_[: len(keys)] == keys for set_ in keys_set)
        if source is not None and source != files[0][0] and not overridden:
            line = f"{source} (a base of {where}): {rest}"
        lines.append(line)
    return "\n".join(lines)


def load_experiment(path: str | Path, overrides: list[str] = (), registry: Registry | None = None) -> Experiment:
    """Read (with its ``base`` files), override and validate an experiment file.

    An error about a key names the file that set it (a base file, when it came from one).
    When ``path`` is an experiment saved in a run or export folder (``config.toml``) and a
    plugin it was made with is not loaded, the error ends with which package and version
    to install (:func:`rrcore.contracts.provenance.install_hint`)."""
    path = Path(path)
    files: list[tuple[Path, dict[str, Any]]] = []
    raw = load_raw(path, files=files)
    keys_set: list[list[str]] = []
    for override in overrides:
        keys, value = parse_override(override)
        apply_override(raw, keys, value)
        keys_set.append(keys)
    registry = registry or get_registry()
    try:
        return resolve(raw, registry, str(path))
    except ConfigError as error:
        message = _name_base_files(error, str(path), files, keys_set)
        hint = install_hint(path.parent, registry) if path.name == SAVED_EXPERIMENT_FILE else None
        raise ConfigError(f"{message}; {hint}" if hint else message) from None


def dump_experiment(experiment: Experiment) -> str:
    """The resolved ``experiment`` as TOML (what a run folder's ``config.toml`` holds)."""
    return dumps_toml(experiment.to_dict())
