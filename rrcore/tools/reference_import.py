"""``rr import``: a reference repository's checkpoint as an rr export folder.

The HRM (sapientinc/HRM), TRM (SamsungSAILMontreal/TinyRecursiveModels) and URM
(zitian-gao/URM, UbiquantAI/URM) trainers save ``torch.save(model.state_dict())`` of their
loss head: every name starts with ``model.inner.`` (``_orig_mod.model.inner.`` when the
model was compiled), and URM wraps the dict as ``{"step", "model_state_dict", ...}``.
Beside the checkpoints they write ``all_config.yaml`` (URM: ``config.yaml``), whose
``arch`` table holds the model's keys. This module reads them;
:mod:`rrcore.tools.reference_layouts` maps them onto rr's model, and
:func:`import_reference` writes the result in the layout of :mod:`rrcore.tools.export`,
which ``rr eval``, ``rr solve`` and ``[train] init_from`` read.

The checkpoint is read with ``torch.load(weights_only=True)`` (or safetensors): nothing in
it is unpickled beyond tensors and plain values, so a file that carries code is refused
without running it. A missing, extra or differently shaped tensor is a
:class:`~rrcore.contracts.errors.ConfigError` naming it as the checkpoint spells it.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import attrs
import torch

from rrcore.contracts.config import apply_override, load_raw, merge, parse_override, resolve
from rrcore.contracts.errors import CheckpointError, ConfigError
from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.registry import get_registry
from rrcore.tools.export import check_destination, export_info, write_export
from rrcore.tools.reference_layouts import (
    COMPILE_PREFIX,
    LAYOUTS,
    REFERENCE_PREFIX,
    act_keys,
    map_weights,
    model_keys,
    plugin_of,
)
from rrcore.training.build import build_model
from rrcore.training.checkpoint import refused_global
from rrcore.training.weights import unique_tensors

CONFIG_NAMES = ("all_config.yaml", "config.yaml", ".hydra/config.yaml")
"""Where the references write their config, relative to the checkpoint's folder."""


def find_checkpoint(path: Path) -> Path:
    """``path`` itself, or for a folder its latest ``step_N`` (``step_N.pt``) file."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder; expected a reference checkpoint (step_N)")
    if path.is_file():
        return path
    steps = [(int(m.group(1)), p) for p in path.iterdir() if (m := re.fullmatch(r"step_(\d+)(\.pt)?", p.name))]
    if not steps:
        raise ConfigError(f"{path}: a folder without step_N checkpoint files; name the checkpoint file")
    return max(steps)[1]


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The tensors of a reference checkpoint (names as saved) and its step (0 when unknown).

    ``.safetensors`` is read by safetensors, anything else by ``torch.load(weights_only=True)``:
    a file holding code (any global beyond tensors and plain values) is refused, unrun.
    """
    step = int(m.group(1)) if (m := re.fullmatch(r"step_(\d+)(\.\w+)?", path.name)) else 0
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu"), step
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{path}: cannot be read as safetensors ({error})") from None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: it holds what torch.load(weights_only=True) does not unpickle ({refused_global(error)}); "
            f"a reference checkpoint holds tensors only, so this file is not one or was altered (nothing in it was run)"
        ) from None
    except Exception as error:  # not a torch file, truncated
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(f"{path}: cannot be read ({type(error).__name__}: {first})") from None
    if isinstance(saved, dict) and isinstance(saved.get("model_state_dict"), dict):  # URM's checkpoints
        if isinstance(saved.get("step"), int):
            step = saved["step"]
        saved = saved["model_state_dict"]
    if not isinstance(saved, dict) or not saved or not all(isinstance(t, torch.Tensor) for t in saved.values()):
        raise ConfigError(f"{path}: not a state dict of tensors (what the reference trainers save)")
    return saved, step


def strip_prefixes(names: list[str], where: str) -> dict[str, str]:
    """Each saved name to its name below ``model.inner.``: torch.compile's ``_orig_mod.``
    removed wherever it wraps a module; a name outside ``model.inner.`` is an error."""
    stripped = {}
    for name in names:
        short = ".".join(part for part in name.split(".") if part != COMPILE_PREFIX[:-1])
        if not short.startswith(REFERENCE_PREFIX):
            raise ConfigError(
                f"{where}: holds tensor {name!r}, outside {REFERENCE_PREFIX!r} (a reference HRM, TRM or URM "
                f"checkpoint names every tensor model.inner.*, or _orig_mod.model.inner.* when compiled)"
            )
        short = short.removeprefix(REFERENCE_PREFIX)
        if short in stripped:
            raise ConfigError(
                f"{where}: holds tensor {REFERENCE_PREFIX + short!r} twice ({stripped[short]!r}, {name!r})"
            )
        stripped[short] = name
    return stripped


def find_config(checkpoint: Path, given: str | None) -> Path | None:
    """``given``, else the reference's config file beside ``checkpoint`` (:data:`CONFIG_NAMES`)."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise ConfigError(f"--config {given}: no such file")
        return path
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return next((folder / name for name in CONFIG_NAMES if (folder / name).is_file()), None)


def read_config(path: Path) -> dict[str, Any]:
    """The reference config's ``arch`` table (``${.key}`` references resolved) and its data
    path under ``data_path``; a bare arch file (``config/arch/trm.yaml``) is its own arch."""
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{path}: reading a reference config needs PyYAML (pip install pyyaml)") from None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{path}: cannot be read as YAML ({first})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table of keys (the reference's all_config.yaml)")
    arch = raw.get("arch", raw)
    if not isinstance(arch, dict) or "name" not in arch:
        raise ConfigError(f"{path}: no arch.name (expected the reference's all_config.yaml or a config/arch file)")
    resolved = {}
    for key, value in arch.items():
        if isinstance(value, str) and (m := re.fullmatch(r"\$\{\.(\w+)\}", value.strip())):
            value = arch.get(m.group(1), value)
        resolved[key] = value
    data = raw.get("data_path") or (raw.get("data_paths") or [None])[0]
    return {"arch": resolved, "data_path": data}


@attrs.frozen
class ReferenceCheckpoint:
    """A reference checkpoint as read: its file, step, tensors (names below ``model.inner.``),
    the names as saved, its config file (or None) and that config's ``arch`` and data path."""

    path: Path
    step: int
    tensors: dict[str, torch.Tensor]
    saved_names: dict[str, str]
    config_path: Path | None
    arch: dict[str, Any] | None
    data_path: str | None

    def export_fields(self) -> dict[str, Any]:
        """What the import's ``export.json`` says of its source (:func:`rrcore.tools.export.export_info`)."""
        return {
            "weights": "imported",
            "step": self.step,
            "source": str(self.path.resolve()),
            "reference_config": str(self.config_path.resolve()) if self.config_path is not None else None,
        }


def read_reference(checkpoint: str | Path, config: str | None = None) -> ReferenceCheckpoint:
    """Read ``checkpoint`` (a file, or a folder's latest ``step_N``) and its config
    (``config``, else :data:`CONFIG_NAMES` beside it)."""
    path = find_checkpoint(Path(checkpoint))
    saved, step = read_checkpoint(path)
    saved_names = strip_prefixes(list(saved), str(path))
    config_path = find_config(Path(checkpoint), config)
    reference = read_config(config_path) if config_path is not None else {"arch": None, "data_path": None}
    return ReferenceCheckpoint(
        path=path,
        step=step,
        tensors={short: saved[full] for short, full in saved_names.items()},
        saved_names=saved_names,
        config_path=config_path,
        arch=reference["arch"],
        data_path=reference["data_path"],
    )


def read_metadata(data_dir: Path) -> DatasetMetadata:
    """The ``train/dataset.json`` of a built data set (the reference builders' layout)."""
    path = data_dir / "train" / "dataset.json"
    if not path.is_file():
        raise ConfigError(f"{data_dir}: no train/dataset.json; expected a data set folder built by the reference")
    return DatasetMetadata.from_json(path)


def metadata_from_tensors(
    tensors: dict[str, torch.Tensor], prefix: int, seq_len: int | None, where: str
) -> DatasetMetadata:
    """The data set's shape as the checkpoint shows it: vocabulary (token embedding rows),
    puzzle identifiers (puzzle-embedding rows), sequence length (``seq_len``, else the
    positions of mlp_t or learned positions less the ``prefix``); pad, ignored
    label and blank identifier 0, as every reference builder writes them."""
    embedding = tensors.get("embed_tokens.embedding_weight")
    if embedding is None or embedding.ndim != 2:
        raise ConfigError(f"{where}: tensor {REFERENCE_PREFIX}embed_tokens.embedding_weight is missing")
    puzzle = tensors.get("puzzle_emb.weights")
    if seq_len is None:
        positions = tensors.get("embed_pos.embedding_weight")
        mlp_t = tensors.get("L_level.layers.0.mlp_t.gate_up_proj.weight")
        if positions is not None:
            seq_len = int(positions.shape[0]) - prefix
        elif mlp_t is not None:
            seq_len = int(mlp_t.shape[1]) - prefix
        else:
            raise ConfigError(
                f"{where}: the sequence length is not in the checkpoint (rotary positions): give --data, the "
                f"data set folder the reference trained on, or --seq-len N"
            )
    identifiers = int(puzzle.shape[0]) if puzzle is not None else 1
    return DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=int(embedding.shape[0]),
        seq_len=seq_len,
        num_puzzle_identifiers=identifiers,
        total_groups=identifiers,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )


def build_experiment(
    plugin: str,
    model: dict[str, Any],
    act: dict[str, Any],
    arch: dict[str, Any] | None,
    experiment_path: str | None,
    data_dir: str | None,
    name: str,
    overrides: list[str],
    registry: Any,
) -> Any:
    """The export's experiment: ``experiment_path``'s (its [data] task is what ``rr solve``
    reads puzzles with), else one training on the reference's data folder (``built``), with
    the reference's [model] in place of its own, its [act] and loss type, then ``overrides``."""
    if experiment_path:
        raw = load_raw(experiment_path)
    elif data_dir:
        raw = {"data": {"plugin": "built", "path": str(data_dir)}}
    else:
        raise ConfigError(
            "no data set for the import: give --experiment EXP.toml (an rr experiment on the same data, whose "
            "task rr solve uses) or --data DIR (the data set folder the reference trained on)"
        )
    raw["model"] = {"plugin": plugin, **model}
    raw["act"] = merge(raw.get("act", {}), act)
    if arch is not None and isinstance(arch.get("loss"), dict) and "loss_type" in arch["loss"]:
        loss = raw.get("loss", {"plugin": "act"})
        if loss.get("plugin", "act") == "act":
            raw["loss"] = {**loss, "plugin": "act", "loss_type": arch["loss"]["loss_type"]}
    raw["run"] = {**raw.get("run", {}), "name": name}
    for override in overrides:
        keys, value = parse_override(override)
        apply_override(raw, keys, value)
    return resolve(raw, registry, experiment_path or "rr import")


def import_reference(
    checkpoint: str | Path,
    directory: str | Path,
    *,
    config: str | None = None,
    experiment: str | None = None,
    data: str | None = None,
    seq_len: int | None = None,
    overrides: list[str] = (),
    registry: Any = None,
) -> dict[str, Any]:
    """Write the reference checkpoint ``checkpoint`` (a file, or a folder's latest
    ``step_N``) to ``directory`` as an rr export folder and return its ``export.json``.

    ``config``: the reference's config (default: :data:`CONFIG_NAMES` beside the
    checkpoint; without one the sizes come from the tensors, the rest from rr's defaults
    and ``overrides``). ``experiment``: an rr experiment whose other sections (data, task,
    evaluators, loss) the export keeps. ``data``: the data set folder the reference trained
    on, whose ``train/dataset.json`` gives the vocabulary, sequence length and puzzle
    identifiers (default: the config's ``data_path`` when it exists here; else the
    checkpoint's shapes and ``seq_len``).
    """
    directory = Path(directory)
    check_destination(directory)
    registry = registry or get_registry()
    reference = read_reference(checkpoint, config)
    where = str(reference.path)
    plugin = plugin_of(reference.arch, list(reference.tensors), str(reference.config_path or where))
    if data is None and reference.data_path and (Path(reference.data_path) / "train" / "dataset.json").is_file():
        data = reference.data_path
    model_config = model_keys(plugin, reference.arch, reference.tensors)
    act = act_keys(plugin, reference.arch)
    data_dir = data or reference.data_path
    resolved = build_experiment(
        plugin, model_config, act, reference.arch, experiment, data_dir, directory.name, list(overrides), registry
    )
    if resolved.model.plugin != plugin:
        raise ConfigError(f"--set model.plugin: the checkpoint is a {plugin.upper()}; it imports into {plugin!r} only")
    if data:
        metadata = read_metadata(Path(data))
    else:
        metadata = metadata_from_tensors(reference.tensors, prefix_positions(resolved.model.config), seq_len, where)
    if seq_len is not None:
        metadata.seq_len = seq_len
    model = build_model(resolved, registry, metadata, torch.device("cpu"))
    model.load_state_dict(map_weights(model, LAYOUTS[plugin], reference.tensors, reference.saved_names, where))
    tensors = unique_tensors(model.state_dict())
    info = export_info(model, tensors, resolved, **reference.export_fields())
    write_export(directory, tensors, resolved, metadata, info)
    return info


def prefix_positions(config: Any) -> int:
    """Puzzle-prefix positions of a model config (``puzzle_emb_len``, 0 = derived)."""
    return config.puzzle_emb_len or math.ceil(config.puzzle_emb_ndim / config.hidden_size)
