"""``rr data build``: build a data set exactly as ``rr run`` would, from an experiment or a data plugin.

Every data plugin registers one factory, ``build_dataset(config, cache_dir) -> Path``
(see :mod:`rrcore.contracts.hookspecs`), whose config is an attrs class; the keys of that class
are what ``--set KEY=VALUE`` accepts, checked and typed by the same strict rules as
an experiment's ``[data]`` section. Given an experiment, its ``[data]`` section and
``[run] cache_dir`` are used, so the folder printed is the one ``rr run`` trains on; both
build it with :func:`rrcore.training.build.build_dataset`.
"""

from __future__ import annotations

import difflib
import json
import time
import typing
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rrcore.base.cli_input import InputError, output_folder
from rrcore.contracts.config import load_experiment, parse_override
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.experiment import Experiment
from rrcore.contracts.registry import Registry
from rrcore.contracts.specs import DatasetSpec
from rrcore.contracts.structure import close_hint, structure, type_name
from rrcore.data.cache import data_cache_dir


@attrs.frozen
class DataRequest:
    """What to build: the data plugin, its config and the cache folder; ``where`` names the
    source in messages (the experiment file or ``rr data build PLUGIN``)."""

    spec: DatasetSpec
    config: Any
    cache_dir: Path
    where: str


def config_keys(config_class: type | None) -> list[tuple[str, str, Any]]:
    """(key, type, default) of every field of a data plugin's config class."""
    if config_class is None:
        return []
    hints = typing.get_type_hints(config_class)
    rows = []
    for field in attrs.fields(config_class):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        rows.append(
            (field.name, type_name(hints.get(field.name, Any)), "required" if default is attrs.NOTHING else default)
        )
    return rows


def describe_plugins(registry: Registry) -> str:
    """The keys of every data plugin, for ``rr data build --help``."""
    blocks = []
    for name, spec in sorted(registry.components["dataset"].items()):
        doc = (spec.config_class.__doc__ or "").strip().splitlines() if spec.config_class else []
        lines = [f"{name} ({spec.distribution}): {spec.description}"]
        lines += [f"    {line.strip()}" for line in doc if line.strip()]
        for key, kind, default in config_keys(spec.config_class):
            shown = default if default == "required" else f"default {json.dumps(default, default=str)}"
            lines.append(f"  {key:<22} {kind}, {shown}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _settings(settings: tuple[str, ...], spec: DatasetSpec) -> dict[str, Any]:
    """``KEY=VALUE`` (or ``data.KEY=VALUE``) settings as a dict of values parsed as TOML, every
    key checked against the plugin's config class."""
    valid = [key for key, _, _ in config_keys(spec.config_class)]
    values: dict[str, Any] = {}
    for text in settings:
        try:
            keys, value = parse_override(text)
        except ConfigError as error:
            raise InputError(str(error)) from None
        if keys[0] == "data" and len(keys) > 1:
            keys = keys[1:]
        key = ".".join(keys)
        if key not in valid:
            raise InputError(f"--set {key}: not a key of data plugin {spec.name!r}; {close_hint(key, valid)}")
        values[key] = value
    return values


def _is_experiment(source: str, plugins: dict[str, Any]) -> bool:
    """A ``.toml`` name, or a file that is not also a data plugin's name."""
    return source.endswith(".toml") or (source not in plugins and Path(source).expanduser().is_file())


def resolve_request(source: str, settings: tuple[str, ...], cache_dir: str | None, registry: Registry) -> DataRequest:
    """The data set ``rr data build SOURCE --set ... [--cache-dir DIR]`` asks for."""
    cache = output_folder(cache_dir, "cache folder") if cache_dir else None
    datasets = registry.components["dataset"]
    if _is_experiment(source, datasets):
        path = Path(source).expanduser()
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not an experiment file")
        experiment: Experiment = load_experiment(path, [], registry)
        spec = registry.get("dataset", experiment.data.plugin)
        values = _settings(settings, spec)
        if values:  # through the experiment's own override path, as `rr run --set data.KEY=...`
            overrides = [f"data.{text.strip().removeprefix('data.')}" for text in settings]
            experiment = load_experiment(path, overrides, registry)
        return DataRequest(spec, experiment.data.config, cache or data_cache_dir(experiment.run.cache_dir), str(path))
    if source not in datasets:
        registry.find("dataset", source)  # a name two plugins register: says so
        close = difflib.get_close_matches(source, datasets, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(
            f"{source}: neither an experiment file nor a data plugin{hint}; data plugins: {', '.join(sorted(datasets))}"
        )
    spec = datasets[source]
    values = _settings(settings, spec)
    where = f"rr data build {source}"
    config = structure(values, spec.config_class, where, "data") if spec.config_class else None
    return DataRequest(spec, config, cache or data_cache_dir(), where)


def existing(request: DataRequest) -> set[Path]:
    """The folders in the cache before a build (to tell a new build from a cached one)."""
    return set(request.cache_dir.iterdir()) if request.cache_dir.is_dir() else set()


def summary(folder: Path, started: float, before: set[Path]) -> list[str]:
    """Lines for stderr: the size of each split, the bytes on disk and the time taken."""
    lines = []
    for split in ("train", "test"):
        path = folder / split / "dataset.json"
        if not path.exists():
            continue
        meta = json.loads(path.read_text())
        counts = {"puzzles": 0, "examples": 0}
        for set_name in meta.get("sets", []):
            indices = np.load(folder / split / f"{set_name}__puzzle_indices.npy", mmap_mode="r")
            counts["puzzles"] += len(indices) - 1
            counts["examples"] += int(indices[-1])
        lines.append(
            f"{split}: {meta['total_groups']} groups, {counts['puzzles']} puzzles, "
            f"{counts['examples']} examples of {meta['seq_len']} tokens"
        )
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    when = "already built" if folder in before else f"built in {time.time() - started:.1f} s"
    lines.append(f"{size / 1e6:.1f} MB on disk, {when}")
    return lines
