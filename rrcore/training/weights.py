"""Weights in and out of a model: reading an export folder's ``model.safetensors`` or a
checkpoint's evaluation weights (:func:`load_weights`), and a state dict laid out as
safetensors stores it (:func:`unique_tensors`). ``rr export`` (:mod:`rrcore.tools.export`)
writes export folders; ``rr eval``, ``rr solve`` and ``[train] init_from`` read them here.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rrcore.contracts.errors import CheckpointError, ConfigError
from rrcore.contracts.provenance import INFO_FILE
from rrcore.training.checkpoint import hold_checkpoint, load_file, resolve_checkpoint

WEIGHTS_FILE = "model.safetensors"


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``rr export``."""
    path = Path(path)
    return (path / INFO_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def resolve_source(reference: str | Path) -> Path:
    """An export folder as it is, else the checkpoint folder ``reference`` names (a run
    folder, a checkpoints folder or a checkpoint; see :func:`rrcore.training.checkpoint.resolve_checkpoint`)."""
    return Path(reference) if is_export(reference) else resolve_checkpoint(reference)


@contextlib.contextmanager
def hold_source(reference: str | Path) -> Iterator[Path]:
    """:func:`resolve_source`, the checkpoint kept from rotation while the ``with`` body
    reads it (:func:`rrcore.training.checkpoint.hold_checkpoint`; an export folder is never rotated)."""
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
