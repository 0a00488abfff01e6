"""Experiment files: TOML → typed attrs configs, validated once at load.

An experiment has core sections (``[run]``, ``[act]``, ``[train]``, ``[eval]``) and plugin
sections (``[data]``, ``[model]``, ``[loss]``, ``[optimizer]``, ``[[evaluators]]``,
``[[loggers]]``) whose ``plugin`` key names a registered component; the rest of a
plugin section is structured by cattrs into that component's own config class.
Every error names the file, the key path and what would be right.

A file may start from another: ``base = "other.toml"`` (top level, relative to the file)
reads that file first and lays this one's keys over it, table by table (:func:`merge`).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
import typing
from collections.abc import MutableSequence
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from rrcore.act import ACTConfig
from rrcore.inference import EvalConfig
from rrcore.optim import MAIN_PART, PUZZLE_EMB_PART, OptimizerGroupConfig, PuzzleEmbOptimizerConfig
from rrcore.registry import ModelSpec, Registry, UnknownPluginError
from rrcore.validators import (
    INT64_MAX,
    RATE_MAX,
    Each,
    OutOfRange,
    at_least,
    folder_name,
    fraction,
    in_range,
    non_negative,
    positive,
    show,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConfigError(ValueError):
    """An experiment that cannot be used as asked: its file or values, or how they meet the
    data, the device, the run folder or a checkpoint. The message says where and why; the
    ``rr`` commands print it as one line and exit 2."""


@attrs.define
class RunConfig:
    """``[run]``: naming, seeding and placement of a run.

    ``name``: the run folder's name in ``out_dir``, one folder name (:func:`~rrcore.validators.folder_name`).
    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    ``cache_dir``: where data sets are built and compiled code is cached, in ``compile/``
    (empty: ``$RR_CACHE_DIR`` or ``~/.cache/rr``; ``$TORCHINDUCTOR_CACHE_DIR`` overrides
    the compile cache's place).
    ``cpu_threads``: torch threads per process on CPU (0: torch's default). Tiny models
    run fastest on 1: several threads on a few busy cores spend their time waiting. At
    most 1024, beyond any machine's cores (tens of thousands cannot even be started).
    """

    name: str = attrs.field(default="rr-run", validator=folder_name)
    seed: int = attrs.field(default=0, validator=non_negative)
    out_dir: str = "runs"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: str = ""
    cpu_threads: int = attrs.field(default=0, validator=in_range(0, 1024))


@attrs.define
class CurriculumPhase:
    """One entry of ``[[train.curriculum]]``: until optimizer step ``until_step`` (and from
    the previous entry's), train with these ``[model]`` keys replaced (integers, e.g.
    ``{ H_cycles = 2, L_cycles = 1 }``). From the last ``until_step`` on, ``[model]`` holds
    as written: the model that evaluation after training, ``rr eval`` and ``rr export`` use."""

    until_step: int = attrs.field(validator=at_least(1))
    model: dict[str, int] = attrs.field(factory=dict)


@attrs.define
class TrainConfig:
    """``[train]``: optimisation, schedule, evaluation and checkpoint cadence.

    Intervals in epochs may be fractions; an epoch is every puzzle group once
    (``total_groups * mean_puzzle_examples / global_batch_size`` steps). ``lr``,
    ``weight_decay`` and ``betas`` are the ``[optimizer]`` plugin's; the puzzle
    embedding's sign-SGD has its own in ``[optimizer.puzzle_emb]``.
    ``init_from``: an export folder (``rr export``) or a checkpoint whose evaluation
    weights a new run starts from (fine-tuning: fresh optimizer state, step 0; checked
    when the run starts, by :func:`rrcore.export.check_init_from`; a resumed run ignores it).
    ``ema_start_step``: the EMA copies the weights until this step and averages from it on
    (0: from the start). ``curriculum``: model keys for early steps (:class:`CurriculumPhase`;
    a depth curriculum sets ``H_cycles``/``L_cycles``), in increasing ``until_step`` order;
    an evaluation during training uses the phase in force, and each phase compiles once. ``time_budget_minutes``: stop
    (finished, with the final evaluation and checkpoint) once training has run this long,
    compilation counted, evaluation not (0: no budget). ``eval_at_minutes``: also evaluate
    when the training clock passes each of these minutes (the time-to-accuracy curve). Under
    ``torchrun`` rank 0's clock decides both, at ``log_interval`` steps, so all ranks agree.
    """

    global_batch_size: int = attrs.field(default=768, validator=at_least(1))
    epochs: float = attrs.field(default=1.0, validator=positive)
    max_steps: int = attrs.field(default=0, validator=non_negative)  # 0 = no cap
    grad_accum_steps: int = attrs.field(default=1, validator=at_least(1))
    lr: float = attrs.field(default=1e-4, validator=in_range(0, RATE_MAX, low_open=True))
    lr_min_ratio: float = attrs.field(default=1.0, validator=fraction)
    lr_warmup_steps: int = attrs.field(default=0, validator=non_negative)
    weight_decay: float = attrs.field(default=0.1, validator=in_range(0, RATE_MAX))
    betas: list[float] = attrs.field(factory=lambda: [0.9, 0.95], validator=Each(in_range(0, 1, high_open=True)))
    grad_clip: float = attrs.field(default=0.0, validator=non_negative)  # 0 = off
    ema: bool = False
    ema_rate: float = attrs.field(default=0.999, validator=in_range(0, 1, high_open=True))
    eval_interval: float = attrs.field(default=0.0, validator=non_negative)  # epochs; 0 = at the end
    eval_global_batch_size: int = attrs.field(default=0, validator=non_negative)  # 0 = global
    checkpoint_interval: float = attrs.field(default=0.0, validator=non_negative)  # 0 = with evals
    checkpoint_every_steps: int = attrs.field(default=0, validator=non_negative)  # 0 = off
    keep_checkpoints: int = attrs.field(default=3, validator=at_least(1))
    log_interval: int = attrs.field(default=10, validator=at_least(1))  # steps
    compile: Literal["auto", "on", "off"] = "auto"
    cuda_graphs: bool = True  # with compile on CUDA: replay the step as CUDA graphs
    autotune_pointwise: bool = False  # with compile on CUDA: time launch configs of element-wise kernels
    data_on_device: Literal["auto", "on", "off"] = "auto"
    init_from: str = ""  # empty: the model's own initialisation
    ema_start_step: int = attrs.field(default=0, validator=non_negative)
    curriculum: list[CurriculumPhase] = attrs.field(factory=list)
    time_budget_minutes: float = attrs.field(default=0.0, validator=non_negative)  # 0 = none
    eval_at_minutes: list[float] = attrs.field(factory=list, validator=Each(positive))

    def __attrs_post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        steps = [phase.until_step for phase in self.curriculum]
        if steps != sorted(set(steps)):
            raise ValueError(f"curriculum until_step values must increase, got {steps}")
        if self.eval_at_minutes != sorted(set(self.eval_at_minutes)):
            raise ValueError(f"eval_at_minutes must increase, got {self.eval_at_minutes}")
        if self.global_batch_size % self.grad_accum_steps:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not divisible by "
                f"grad_accum_steps {self.grad_accum_steps}"
            )


@attrs.define
class PluginSection:
    """A plugin section after resolution: the component's name and its typed config."""

    plugin: str
    config: Any = None


@attrs.define
class OptimizerGroup(PluginSection):
    """One ``[optimizer.groups.NAME]``, resolved: its optimizer ``plugin`` and that plugin's
    ``config``, as any plugin section, and the group's own ``keys``
    (:class:`rrcore.optim.OptimizerGroupConfig`: ``params``, ``lr``, and ``weight_decay``
    and ``betas`` filled in from ``[train]`` when left out)."""

    keys: OptimizerGroupConfig = attrs.field(kw_only=True)


@attrs.define
class OptimizerSection(PluginSection):
    """``[optimizer]``: the plugin that trains the model's parameters (``lr``,
    ``weight_decay`` and ``betas`` from ``[train]``); ``[optimizer.groups.NAME]`` tables,
    each a part of the parameters trained by an optimizer, learning rate and weight decay
    of its own (:class:`rrcore.optim.OptimizerGroupConfig`; ``[optimizer]`` keeps what no
    group claims); and ``[optimizer.puzzle_emb]``, the sign-SGD that trains sparse puzzle
    embeddings."""

    puzzle_emb: PuzzleEmbOptimizerConfig = attrs.field(factory=PuzzleEmbOptimizerConfig)
    groups: dict[str, OptimizerGroup] = attrs.field(factory=dict)


# Keys that moved: old experiment files (and the config.toml of older runs) still load.
MOVED_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("train", "puzzle_emb_lr"): ("optimizer.puzzle_emb", "lr"),
    ("train", "puzzle_emb_weight_decay"): ("optimizer.puzzle_emb", "weight_decay"),
}


@attrs.define
class Experiment:
    """A whole experiment, resolved and validated."""

    run: RunConfig
    data: PluginSection
    model: PluginSection
    act: ACTConfig
    loss: PluginSection
    optimizer: OptimizerSection
    train: TrainConfig
    evaluators: list[PluginSection]
    loggers: list[PluginSection]
    eval: EvalConfig = attrs.field(factory=EvalConfig)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (TOML-able) for the resolved config."""

        def section(s: PluginSection) -> dict[str, Any]:
            values = attrs.asdict(s.config) if s.config is not None else {}
            return {"plugin": s.plugin, **values}

        def group_dict(g: OptimizerGroup) -> dict[str, Any]:
            options = attrs.asdict(g.config) if g.config is not None else {}
            return {"plugin": g.plugin, **attrs.asdict(g.keys), **options}

        groups = self.optimizer.groups
        return {
            "run": attrs.asdict(self.run),
            "data": section(self.data),
            "model": section(self.model),
            "act": attrs.asdict(self.act),
            "loss": section(self.loss),
            "optimizer": {
                **section(self.optimizer),
                "puzzle_emb": attrs.asdict(self.optimizer.puzzle_emb),
                # Left out when empty: the config.toml of runs without groups stays as it was.
                **({"groups": {name: group_dict(g) for name, g in groups.items()}} if groups else {}),
            },
            "train": attrs.asdict(self.train),
            "evaluators": [section(s) for s in self.evaluators],
            "loggers": [section(s) for s in self.loggers],
            "eval": attrs.asdict(self.eval),
        }


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


# ---------------------------------------------------------------------------------------
# Strict structuring (TOML has types: do not silently turn 3.7 into 3 or "1" into True)
# ---------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None and typing.get_args(tp):
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]" if name != "UnionType" and origin is not typing.Union else args.replace(", ", " | ")
    return getattr(tp, "__name__", str(tp))


def _strict(expected: type, accept: tuple[type, ...], convert: Any = None) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and expected is not bool or not isinstance(value, accept):
            raise TypeError(f"expected {expected.__name__}, got {type(value).__name__} {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise OutOfRange("", value, "a 64-bit integer, in [-2**63, 2**63 - 1]")
        return convert(value) if convert else value

    return hook


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float), float))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    converter.register_structure_hook(str, _strict(str, (str,)))

    def structure_list(value: Any, tp: Any) -> list[Any]:
        # A string or table where a list belongs is refused whole: structured, each of its
        # characters (or keys) would be an error of its own, one line each.
        if not isinstance(value, list):
            raise TypeError(f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        (element,) = typing.get_args(tp) or (Any,)
        return converter.structure(value, MutableSequence[element])  # cattrs' own list hook

    converter.register_structure_hook_func(lambda tp: typing.get_origin(tp) is list, structure_list)
    return converter


_converter = make_converter()


def _describe(error: BaseException, path: list[str], expected: Any) -> list[tuple[str, str]]:
    """Flatten cattrs' exception groups into (key path, message) pairs."""
    if isinstance(error, ForbiddenExtraKeysError):
        valid = [f.name for f in attrs.fields(error.cl)]
        out = []
        for key in sorted(error.extra_fields):
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
            out.append((".".join([*path, key]), f"unknown key; {hint}"))
        return out
    if isinstance(error, ClassValidationError):
        with_notes, without = error.group_exceptions()
        out = []
        for sub, note in with_notes:
            out += _describe(sub, [*path, note.name], note.type)
        for sub in without:
            out += _describe(sub, path, expected)
        return out
    if isinstance(error, IterableValidationError):
        with_notes, without = error.group_exceptions()
        out = []
        for sub, note in with_notes:
            out += _describe(sub, [*path, str(note.index)], note.type)
        for sub in without:
            out += _describe(sub, path, expected)
        return out
    if isinstance(error, KeyError):
        return [(".".join(path), "required key is missing")]
    if isinstance(error, OutOfRange):  # from a validator (naming its key) or a structure hook
        key = ".".join([*path, error.key] if error.key else path)
        return [(f"{key} = {show(error.value)}", f"must be {error.requirement}")]
    message = str(error)
    if expected is not None and "expected" not in message:
        message = f"expected {_type_name(expected)} ({message})"
    return [(".".join(path), message)]


MAX_PROBLEMS = 3  # lines of a ConfigError listing several problems, then a count of the rest


def structure(values: dict[str, Any], cls: type, where: str, path: str) -> Any:
    """Structure ``values`` into attrs class ``cls`` or raise :class:`ConfigError`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {path}: expected a table, got {type(values).__name__} {values!r}")
    try:
        return _converter.structure(values, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as error:
        problems = _describe(error, [path] if path else [], None)
        lines = [f"{where}: {key}: {message}" for key, message in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            lines.append(f"{where}: and {len(problems) - MAX_PROBLEMS} more problems")
        raise ConfigError("\n".join(lines)) from None
    except (TypeError, ValueError) as error:  # validators and __attrs_post_init__ checks
        raise ConfigError(f"{where}: {path}: {error}") from None


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


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
            close = difflib.get_close_matches(key, ALL_SECTIONS, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"valid sections: {', '.join(ALL_SECTIONS)}"
            raise ConfigError(f"{where}: {key}: unknown section; {hint}")
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
    (:class:`rrcore.optim.OptimizerGroupConfig`, ``weight_decay`` and ``betas`` from
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
                    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
                    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
                    raise ConfigError(f"{where}: {path}.{key}: unknown key; {hint}")
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
    to install (:func:`rrcore.provenance.install_hint`)."""
    from rrcore.provenance import install_hint
    from rrcore.registry import get_registry

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


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


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


def dump_experiment(experiment: Experiment) -> str:
    return dumps_toml(experiment.to_dict())
