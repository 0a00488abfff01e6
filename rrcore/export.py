"""Weights to share: ``rr export`` writes a trained model as a folder anyone can load.

An export folder holds::

    model.safetensors   the weights evaluation uses (the EMA's when the run kept one), the
                        model's persistent buffers included (the sparse puzzle-embedding
                        table); a tensor the model registers under two names is stored once
    config.toml         the resolved experiment the model was trained with
    dataset.json        the training split's metadata (vocabulary, sequence length, puzzle
                        identifiers): what rebuilds the model without the data set
    export.json         what it is: model plugin, parameter count, step, source checkpoint, and
                        its provenance: rrcore's and each plugin's distribution and version,
                        torch, Python, the git commit (:mod:`rrcore.provenance`)
    README.md           the same, for people

``rr eval``, ``rr solve`` and ``[train] init_from`` accept such a folder wherever they
accept a checkpoint. Loading an export reads ``model.safetensors`` with safetensors only:
nothing in an export is unpickled, so a downloaded export cannot run code.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rrcore.checkpoint import CheckpointError, hold_checkpoint, load_file, read_trainer_state, resolve_checkpoint
from rrcore.config import ConfigError
from rrcore.files import reporting_full_disk

WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "export.json"
FORMAT = "rr-export"
FORMAT_VERSION = 1


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``rr export``."""
    path = Path(path)
    return (path / INFO_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def resolve_source(reference: str | Path) -> Path:
    """An export folder as it is, else the checkpoint folder ``reference`` names (a run
    folder, a checkpoints folder or a checkpoint; see :func:`rrcore.checkpoint.resolve_checkpoint`)."""
    return Path(reference) if is_export(reference) else resolve_checkpoint(reference)


@contextlib.contextmanager
def hold_source(reference: str | Path) -> Iterator[Path]:
    """:func:`resolve_source`, the checkpoint kept from rotation while the ``with`` body
    reads it (:func:`rrcore.checkpoint.hold_checkpoint`; an export folder is never rotated)."""
    if is_export(reference):
        yield Path(reference)
        return
    with hold_checkpoint(reference) as path:
        yield path


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an export's ``model.safetensors`` (read by safetensors, never unpickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file as load_safetensors

    try:
        return load_safetensors(path / WEIGHTS_FILE, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path / WEIGHTS_FILE}: cannot be read ({error}); the file is corrupt or truncated — export it again"
        ) from None


def load_weights(model: nn.Module, source: Path, where: str | None = None) -> None:
    """Load into ``model`` the weights evaluation uses from ``source``: an export's
    ``model.safetensors``, or a checkpoint's model with its EMA's parameters over it.

    A missing, extra or differently shaped tensor is a :class:`ConfigError` that names it,
    prefixed by ``where`` (default: the file read).
    """
    if is_export(source):
        fit(model, read_weights(source), where or str(source / WEIGHTS_FILE))
        return
    shared = load_file(source / "state.pt")
    fit(model, shared["model"], where or str(source / "state.pt"))
    ema = shared.get("ema")
    if ema:
        # By the parameters' own names: a tied parameter appears once in the EMA, under the
        # first name named_parameters() gives it, and copying there reaches every alias.
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter.copy_(ema[name])


def fit(model: nn.Module, weights: dict[str, torch.Tensor], where: str) -> None:
    """``model.load_state_dict(weights)`` after checking every tensor's name and shape;
    a tensor ``weights`` holds once for several names of the model (tied) fills them all."""
    expected = model.state_dict()
    aliases = _alias_groups(expected)
    advice = (
        "weights fit only a model of the same [model] sizes, on a data set of the same vocabulary, "
        "sequence length and number of puzzle identifiers"
    )
    for name in weights:
        if name not in expected:
            raise ConfigError(f"{where}: holds tensor {name!r}, which this model does not have; {advice}")
    full = {}
    for name, tensor in expected.items():
        present = [other for other in aliases.get(name, [name]) if other in weights]
        if not present:
            raise ConfigError(f"{where}: parameter {name!r} is missing; {advice}")
        saved = weights[present[0]]
        if saved.shape != tensor.shape:
            raise ConfigError(
                f"{where}: parameter {name!r} has shape {tuple(saved.shape)} there, "
                f"{tuple(tensor.shape)} in this model; {advice}"
            )
        full[name] = saved
    model.load_state_dict(full)


def _sharing_key(tensor: torch.Tensor) -> tuple[Any, ...] | None:
    """Equal for two names of one tensor (same storage, offset, shape and strides)."""
    if tensor.numel() == 0:
        return None
    return (
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tensor.stride(),
        tensor.dtype,
    )


def _alias_groups(state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Each name of ``state`` to every name of the same tensor (itself first)."""
    by_key: dict[Any, list[str]] = {}
    for name, tensor in state.items():
        key = _sharing_key(tensor)
        by_key.setdefault(key if key is not None else name, []).append(name)
    return {name: [name, *(other for other in group if other != name)] for group in by_key.values() for name in group}


def unique_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` as safetensors can store it: each tensor once (under its first name),
    contiguous, none sharing memory with another (safetensors refuses shared storage)."""
    kept: dict[str, torch.Tensor] = {}
    seen: set[Any] = set()
    for name, tensor in state.items():
        key = _sharing_key(tensor)
        if key is not None and key in seen:
            continue
        seen.add(key)
        kept[name] = tensor.detach()
    storages = Counter(t.untyped_storage().data_ptr() for t in kept.values() if t.numel())
    # Only tensors that still share memory (views of one another) or are not contiguous are
    # copied: the puzzle-embedding table may be gigabytes.
    return {
        name: t.clone(memory_format=torch.contiguous_format)
        if t.numel() and (storages[t.untyped_storage().data_ptr()] > 1 or not t.is_contiguous())
        else t
        for name, t in kept.items()
    }


def check_destination(directory: Path) -> None:
    """``rr export``'s DIR must be new or an empty folder."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: is a file; rr export writes a folder (give a new or empty folder)")
    if directory.is_dir() and any(directory.iterdir()):
        raise ConfigError(f"{directory}: not empty; rr export writes into a new or empty folder")


def _clear_partial(directory: Path) -> Path:
    """The folder ``rr export`` writes before renaming it to ``directory``: ``.NAME.partial``
    beside it. One left by an export that did not finish (killed; any other failure removes
    its own) holds export files only and is removed, saying so on stderr; a folder holding
    anything else is not rr's to remove, and is refused."""
    from rrcore.data import RUN_METADATA_FILE

    partial = directory.with_name(f".{directory.name}.partial")
    if not partial.exists() and not partial.is_symlink():
        return partial
    ours = {WEIGHTS_FILE, "config.toml", RUN_METADATA_FILE, f".{RUN_METADATA_FILE}.tmp", INFO_FILE, "README.md"}
    if partial.is_symlink() or not partial.is_dir() or any(p.name not in ours for p in partial.iterdir()):
        raise ConfigError(
            f"{partial}: in the way (rr export writes {directory.name} there first) and holds "
            f"what rr export does not write; move it away or export to another DIR"
        )
    print(f"rr: removing {partial}, left by an export that did not finish", file=sys.stderr)
    shutil.rmtree(partial)
    return partial


def export(reference: str | Path, directory: str | Path, registry: Any = None) -> dict[str, Any]:
    """Write the model of ``reference`` (a run folder or checkpoint) to ``directory`` as an
    export folder (see the module doc) and return what ``export.json`` says. The folder is
    written as ``.NAME.partial`` beside ``directory`` and renamed into place when complete
    (see :func:`_clear_partial`); a failure, a full disk included, removes it."""
    from rrcore.config import load_experiment
    from rrcore.provenance import record
    from rrcore.registry import get_registry
    from rrcore.solve import load_model, run_metadata

    directory = Path(directory)
    check_destination(directory)
    partial = _clear_partial(directory)
    registry = registry or get_registry()
    with hold_checkpoint(reference) as checkpoint:
        experiment = load_experiment(checkpoint / "config.toml", [], registry)
        metadata, _ = run_metadata(checkpoint.parent.parent, experiment, registry)
        model = load_model(checkpoint, experiment, metadata, registry, torch.device("cpu"))
        step = read_trainer_state(checkpoint)["step"]
    tensors = unique_tensors(model.state_dict())
    info = export_info(
        model,
        tensors,
        experiment,
        weights="ema" if experiment.train.ema else "trained",
        step=step,
        source=str(checkpoint.resolve()),
        provenance=record(experiment, registry),  # what to install to load it (rrcore.provenance)
    )
    _write(partial, directory, tensors, experiment, metadata, info)
    return info


def export_info(model: nn.Module, tensors: dict[str, torch.Tensor], experiment: Any, **fields: Any) -> dict[str, Any]:
    """``export.json`` of ``model`` (its ``tensors`` as written, from :func:`unique_tensors`):
    the keys every export has (format, names, sizes, rrcore version, time), with ``fields``
    (``weights``, ``step``, ``source``, ...) before the version."""
    from rrcore import __version__

    parameters = sum(p.numel() for p in model.parameters())
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": experiment.run.name,
        "model": experiment.model.plugin,
        "data": experiment.data.plugin,
        "parameters": parameters,
        "buffer_elements": sum(t.numel() for t in tensors.values()) - parameters,
        **fields,
        "rrcore_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_export(
    directory: Path, tensors: dict[str, torch.Tensor], experiment: Any, metadata: Any, info: dict[str, Any]
) -> None:
    """Write an export folder (see the module doc) through ``.NAME.partial``, which a
    failure removes; ``info`` is its ``export.json`` (:func:`export_info`)."""
    _write(_clear_partial(directory), directory, tensors, experiment, metadata, info)


def _write(
    partial: Path, directory: Path, tensors: dict[str, torch.Tensor], experiment: Any, metadata: Any, info: dict
) -> None:
    """Write the export into ``partial`` and rename it to ``directory`` (new or empty);
    any failure, a full disk included, removes ``partial``."""
    from safetensors.torch import save

    from rrcore.config import dump_experiment
    from rrcore.data import save_run_metadata

    partial.mkdir(parents=True)
    try:
        with reporting_full_disk(directory):
            # Bytes written by Python: a full disk is an OSError (safetensors' save_file
            # reports it in a message only).
            weights = save(tensors, metadata={"format": FORMAT, "model": info["model"], "step": str(info["step"])})
            (partial / WEIGHTS_FILE).write_bytes(weights)
            (partial / "config.toml").write_text(dump_experiment(experiment))
            save_run_metadata(partial, metadata)
            (partial / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
            (partial / "README.md").write_text(describe(info))
        if directory.exists():
            directory.rmdir()  # empty, checked above
        os.replace(partial, directory)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def describe(info: dict[str, Any]) -> str:
    """The export's README.md: what the folder holds and how to use it."""
    weights = (
        "the exponential moving average of the weights (train.ema)"
        if info["weights"] == "ema"
        else "the trained weights"
    )
    return f"""# {info["name"]}: an rr model export

A {info["model"]!r} model ({info["parameters"]:,} parameters, {info["buffer_elements"]:,} buffer elements such
as the puzzle-embedding table) trained on the {info["data"]!r} data set for {info["step"]} steps, exported
by rrcore {info["rrcore_version"]} on {info["created"]} from `{info["source"]}`.
`model.safetensors` holds {weights}.

| file | what it is |
|---|---|
| `model.safetensors` | the weights and persistent buffers (safetensors: loading runs no code) |
| `config.toml` | the resolved experiment it was trained with |
| `dataset.json` | the training data set's metadata (vocabulary, sequence length, puzzle identifiers) |
| `export.json` | this description, for programs, with the packages and versions that made it (`provenance`) |

With rr and the plugins named in `config.toml` installed:

```bash
rr eval THIS_FOLDER                 # its test split, built from config.toml's [data]
rr solve THIS_FOLDER PUZZLE         # one puzzle; no data set needed
rr run EXP.toml --set train.init_from=THIS_FOLDER   # fine-tune from these weights
```
"""


def check_init_from(experiment: Any) -> Path | None:
    """The folder ``[train] init_from`` names (None when unset); a :class:`ConfigError`
    naming the key when it is neither an export folder nor a checkpoint."""
    value = experiment.train.init_from
    if not value:
        return None
    where = f"{experiment.source}: train.init_from = {value!r}"
    expected = "expected an export folder (rr export) or a checkpoint (a run folder or its checkpoints/step_N)"
    if not Path(value).exists():
        raise ConfigError(f"{where}: no such file or folder; {expected}")
    try:
        return resolve_source(value)
    except CheckpointError:
        raise ConfigError(
            f"{where}: neither an export (no {INFO_FILE} and {WEIGHTS_FILE}) nor a checkpoint (no state.pt); {expected}"
        ) from None
