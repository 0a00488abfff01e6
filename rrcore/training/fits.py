"""Whether a checkpoint fits this run: the same model and optimizers (:func:`check_fits`),
and, to resume, the same data (:func:`check_same_data`); each difference named in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rrcore.base.validators import show
from rrcore.contracts.errors import CheckpointError, ConfigError
from rrcore.contracts.experiment import Experiment
from rrcore.contracts.tomlfile import dumps_toml, read_toml, tomllib


def saved_config(checkpoint: Path) -> dict[str, Any]:
    """The experiment a checkpoint folder was saved with (its ``config.toml``), as plain
    data; empty when it has none (checkpoints of early versions)."""
    file = checkpoint / "config.toml"
    if not file.exists():
        return {}
    try:
        return read_toml(file, "saved experiment")
    except ConfigError as error:
        raise CheckpointError(f"{error}; the checkpoint is damaged") from None


def check_same_data(checkpoint: Path, experiment: Experiment, saved: dict[str, Any]) -> None:
    """Refuse (:class:`ConfigError`, naming each changed key with both values) to resume
    ``checkpoint`` on other data than it was trained on: ``experiment``'s ``[data]`` must
    match the checkpoint's (``saved``, its :func:`saved_config`), key by key (a key only one
    of them has, as after an upgrade of the data plugin, is not compared)."""
    was = saved.get("data", {})
    now = tomllib.loads(dumps_toml({"data": experiment.to_dict()["data"]}))["data"]  # as the file writes it
    keys = ["plugin"] if was.get("plugin", now["plugin"]) != now["plugin"] else [k for k in now if k in was]
    changed = [f"data.{key} = {show(was[key])} there, {show(now[key])} here" for key in keys if was[key] != now[key]]
    if changed:
        raise ConfigError(
            f"{checkpoint} was trained on other data ({'; '.join(changed)}); resume with the [data] it "
            f"was trained with, or start a new run from its weights with train.init_from = {str(checkpoint)!r}"
        )


def check_fits(
    path: Path, saved: dict[str, Any], config: dict[str, Any], experiment: Experiment, model: nn.Module, optimizers: Any
) -> None:
    """Raise :class:`ConfigError` saying what differs when a checkpoint's model or
    optimizer is not this experiment's (loading would fail later, deep in torch).
    ``saved``: its ``state.pt``; ``config``: its :func:`saved_config`; ``optimizers``: the
    run's :class:`~rrcore.training.optim.Optimizers`, None without them."""
    mine = experiment.to_dict()
    advice = "resume with the experiment it was trained with, or start a new run (another --run-dir)"
    for section in ("model", "optimizer") if optimizers is not None else ("model",):
        was, now = config.get(section, {}).get("plugin"), mine[section]["plugin"]
        if was is not None and was != now:
            raise ConfigError(f"{path} was trained with {section} {was!r}, this experiment uses {now!r}; {advice}")
    saved_groups = config.get("optimizer", {}).get("groups", {}) if optimizers is not None else {}
    for name, group in mine["optimizer"].get("groups", {}).items():
        was = saved_groups.get(name, {}).get("plugin")
        if was is not None and was != group["plugin"]:
            raise ConfigError(
                f"{path} was trained with optimizer.groups.{name}.plugin {was!r}, this experiment "
                f"uses {group['plugin']!r}; {advice}"
            )
    model_state, expected = saved.get("model"), model.state_dict()
    if (
        model_state is not None
        and model_state.keys() != expected.keys()
        or any(model_state[k].shape != expected[k].shape for k in expected)
    ):
        changed = [
            f"model.{k} = {config['model'][k]!r} there, {v!r} here"
            for k, v in mine["model"].items()
            if k in config.get("model", {}) and config["model"][k] != v
        ]
        what = "; ".join(changed) or _state_difference(model_state, expected)
        raise ConfigError(f"{path} does not fit this model ({what}); {advice}")
    if optimizers is not None and saved.get("optimizers") is not None:
        groups_saved = optimizers.group_sizes(saved["optimizers"])
        groups_now = optimizers.group_sizes()
        if groups_saved != groups_now:

            def sizes(groups: dict[str, list[int]]) -> str:
                return ", ".join(f"{name} {tensors}" for name, tensors in groups.items())

            raise ConfigError(
                f"{path}: the optimizer state has parameter groups of {sizes(groups_saved)} tensors, "
                f"this experiment {sizes(groups_now)}; {advice}"
            )


def _state_difference(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """The first difference between two state dicts, in words."""
    for key in expected:
        if key not in saved:
            return f"{key} is missing from the checkpoint"
        if saved[key].shape != expected[key].shape:
            return f"{key} has shape {tuple(saved[key].shape)} there, {tuple(expected[key].shape)} here"
    return f"{next(k for k in saved if k not in expected)} is not part of this model"
