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
                        torch, Python, the git commit (:mod:`rrcore.contracts.provenance`)
    README.md           the same, for people

``rr eval``, ``rr solve`` and ``[train] init_from`` accept such a folder wherever they
accept a checkpoint. Loading an export reads ``model.safetensors`` with safetensors only:
nothing in an export is unpickled, so a downloaded export cannot run code.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rrcore import __version__
from rrcore.base.files import reporting_full_disk
from rrcore.contracts.config import dump_experiment, load_experiment
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.provenance import INFO_FILE, record
from rrcore.contracts.registry import get_registry
from rrcore.data.format import RUN_METADATA_FILE, save_run_metadata
from rrcore.training.build import build_trained_model
from rrcore.training.checkpoint import hold_checkpoint, read_trainer_state
from rrcore.training.weights import WEIGHTS_FILE, unique_tensors

FORMAT = "rr-export"
FORMAT_VERSION = 1


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
    directory = Path(directory)
    check_destination(directory)
    partial = _clear_partial(directory)
    registry = registry or get_registry()
    with hold_checkpoint(reference) as checkpoint:
        experiment = load_experiment(checkpoint / "config.toml", [], registry)
        model, metadata, *_ = build_trained_model(checkpoint, experiment, registry, torch.device("cpu"))
        step = read_trainer_state(checkpoint)["step"]
    tensors = unique_tensors(model.state_dict())
    info = export_info(
        model,
        tensors,
        experiment,
        weights="ema" if experiment.train.ema else "trained",
        step=step,
        source=str(checkpoint.resolve()),
        provenance=record(experiment, registry),  # what to install to load it (rrcore.contracts.provenance)
    )
    _write(partial, directory, tensors, experiment, metadata, info)
    return info


def export_info(model: nn.Module, tensors: dict[str, torch.Tensor], experiment: Any, **fields: Any) -> dict[str, Any]:
    """``export.json`` of ``model`` (its ``tensors`` as written, from :func:`unique_tensors`):
    the keys every export has (format, names, sizes, rrcore version, time), with ``fields``
    (``weights``, ``step``, ``source``, ...) before the version."""
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
