"""Atomic checkpoints: a folder per save, a ``latest`` pointer, keep-last-K.

A save writes every file into ``checkpoints/.tmp-step_N`` and renames the folder
to ``checkpoints/step_N`` only when all ranks have finished writing, then
rewrites ``latest`` (itself atomically). A crash at any point leaves the previous
checkpoint and the pointer to it intact; so does a full disk, which removes the partial
folder and raises :class:`rrcore.base.files.DiskFullError` naming the file it could not write.

Readers (``rr eval``, ``rr solve``, ``rr report``, ``rr export``) open a checkpoint with
:func:`hold_checkpoint`, a shared ``flock`` on its folder; rotation removes only
checkpoints no reader holds (a held one goes at a later save), so a reader never finds
the checkpoint it resolved half removed, even with ``keep_checkpoints = 1``.

The ``.pt`` files hold named parts, each the ``state_dict()`` of a :class:`Stateful`
part of the run; restoring calls each part's ``load_state_dict`` and names any part
the checkpoint lacks. Files::

    state.pt        parts kept once (written by rank 0): ``model`` (weights and buffers,
                    the puzzle-embedding tables included), ``ema`` (with ``train.ema``) and
                    ``optimizers`` (each optimizer's state by name: ``model``, one per
                    ``[optimizer.groups.NAME]`` under ``NAME``, ``puzzle_emb``)
    rank<R>.pt      that rank's parts: ``rng`` (torch, CUDA and ACT exploration generator
                    states) and ``carries`` (the ACT carry of each micro-batch)
    trainer.json    step, data stream position, world size, accumulation steps, total steps
    config.toml     the resolved experiment

``rr export`` turns a checkpoint into a folder to share (:mod:`rrcore.tools.export`): the
evaluation weights as safetensors, loaded without unpickling.

A checkpoint resumes with another number of ranks (or accumulation steps): each rank
then takes its rows of every saved rank's ACT carries (:func:`rank_state_for_layout`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import pickle
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from rrcore.base.distributed import barrier, regroup_rows
from rrcore.base.files import atomic_write_text, reporting_full_disk
from rrcore.base.validators import INT64_MAX, show
from rrcore.contracts.errors import CheckpointError

STEP_DIR = re.compile(r"^step_(\d+)$")


class Stateful(Protocol):
    """A part of a run that a checkpoint saves: a module, an optimizer, the EMA..."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


def state_of(parts: Mapping[str, Stateful]) -> dict[str, Any]:
    """What a checkpoint file holds for ``parts``: each part's state by name."""
    return {name: part.state_dict() for name, part in parts.items()}


def load_parts(parts: Mapping[str, Stateful], saved: Mapping[str, Any], where: Path) -> None:
    """Restore every part from ``saved`` (a checkpoint file's dict of part states);
    a part the file lacks is a :class:`CheckpointError` naming it and the file."""
    missing = [name for name in parts if saved.get(name) is None]
    if missing:
        held = ", ".join(name for name, state in saved.items() if state is not None) or "nothing"
        hint = " (its run kept no EMA: resume with train.ema = false)" if missing[0] == "ema" else ""
        raise CheckpointError(f"{where}: no {missing[0]!r} state to restore; the file holds {held}{hint}")
    for name, part in parts.items():
        part.load_state_dict(saved[name])


def upgrade_rank_state(state: dict[str, Any]) -> dict[str, Any]:
    """A rank file in the current layout (``rng``, ``carries``); rank files written before
    named parts held ``torch_rng``, ``cuda_rng``, ``exploration_rng`` and ``carries``."""
    if "torch_rng" not in state:
        return state
    return {
        "rng": {"torch": state["torch_rng"], "cuda": state.get("cuda_rng"), "exploration": state["exploration_rng"]},
        "carries": state.get("carries") or [],
    }


def _save(state: Any, path: Path) -> None:
    # Through a Python file object: a full disk is then an OSError (ENOSPC) that names the
    # file, where torch.save(state, path) reports "unexpected pos".
    with reporting_full_disk(path), open(path, "wb") as handle:
        torch.save(state, handle)


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    directory: Path,
    step: int,
    shared: dict[str, Any],
    per_rank: dict[str, Any],
    trainer_state: dict[str, Any],
    config_toml: str,
    *,
    rank: int = 0,
    keep: int = 3,
) -> Path:
    """Write a checkpoint for ``step`` (called on every rank) and return its folder."""
    directory = Path(directory)
    final = directory / f"step_{step}"
    tmp = directory / f".tmp-step_{step}"
    if rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier()
    try:
        _save(per_rank, tmp / f"rank{rank}.pt")
        if rank == 0:
            _save(shared, tmp / "state.pt")
            for name, text in (("config.toml", config_toml), ("trainer.json", json.dumps(trainer_state, indent=2))):
                with reporting_full_disk(tmp / name):
                    (tmp / name).write_text(text)
    except BaseException:
        # A full disk leaves the previous checkpoint and ``latest`` as they were; the
        # partial folder goes, giving back the space it took.
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    barrier()
    if rank == 0:
        if final.exists():  # re-saving the same step (e.g. signal right after a periodic save)
            _remove(final, wait=True)
        os.replace(tmp, final)
        atomic_write_text(directory / "latest", final.name + "\n")
        _rotate(directory, final, keep)
    barrier()
    return final


def _rotate(directory: Path, newest: Path, keep: int) -> None:
    """Keep ``newest`` (the one just written, which ``latest`` names) and the ``keep - 1``
    highest-step others. Steps alone would not do: a folder may hold higher steps than the
    one just written (resumed from an earlier checkpoint), and those must not push it out."""
    others = [p for p in list_checkpoints(directory) if p != newest]
    for old in others[: max(0, len(others) - (keep - 1))]:
        _remove(old, wait=False)


def _remove(checkpoint: Path, wait: bool) -> None:
    """Delete a checkpoint folder unless a reader holds it (:func:`hold_checkpoint`);
    ``wait``: until the readers are done, else leave it for a later rotation."""
    try:
        fd = os.open(checkpoint, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        except OSError:  # a file system without locks: nobody can hold it
            pass
        shutil.rmtree(checkpoint, ignore_errors=True)
    finally:
        os.close(fd)  # readers blocked on it find it gone and resolve again


def _hold(path: Path) -> int | None:
    """A file descriptor of ``path`` with a shared lock on it, or None when the folder is
    gone or no longer a complete checkpoint (rotated away since it was resolved)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with contextlib.suppress(OSError):  # a file system without locks: read unheld
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a save removes this very folder
    try:
        still_there = os.stat(path).st_ino == os.fstat(fd).st_ino and (path / "state.pt").is_file()
    except FileNotFoundError:
        still_there = False
    if not still_there:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def hold_checkpoint(reference: str | Path, run_checkpoints: Path | None = None) -> Iterator[Path]:
    """The checkpoint folder ``reference`` names (as :func:`resolve_checkpoint`), kept from
    rotation while the ``with`` body reads it. A checkpoint rotated away between finding
    and holding it is found again: ``latest`` then names a newer one."""
    for attempt in range(3):
        try:
            path = resolve_checkpoint(reference, run_checkpoints)
        except CheckpointError:  # ``latest`` named one just rotated away: read it again
            if attempt == 2:
                raise
            continue
        fd = _hold(path)
        if fd is not None:
            break
    else:
        raise CheckpointError(f"{path}: removed while being opened (a run is saving here); try again")
    try:
        yield path
    finally:
        os.close(fd)


def resolve_checkpoint(reference: str | Path, run_checkpoints: Path | None = None) -> Path:
    """A checkpoint folder from ``latest``, ``step_N``, a run folder or a checkpoint path."""
    reference = str(reference)
    if reference == "latest" or STEP_DIR.match(reference):
        if run_checkpoints is None:
            raise CheckpointError(f"--resume {reference}: no run folder to look in")
        if reference == "latest":
            pointer = run_checkpoints / "latest"
            if not pointer.exists():
                raise CheckpointError(f"{pointer}: no checkpoint saved yet in this run folder")
            reference = pointer.read_text().strip()
        path = run_checkpoints / reference
    else:
        path = Path(reference)
        if (path / "checkpoints" / "latest").exists():  # a run folder
            path = path / "checkpoints" / (path / "checkpoints" / "latest").read_text().strip()
        elif (path / "latest").exists():  # a checkpoints folder
            path = path / (path / "latest").read_text().strip()
    if not (path / "state.pt").exists():
        raise CheckpointError(f"{path}: not a checkpoint (no state.pt); expected a folder written by rr")
    return path


def refused_global(error: pickle.UnpicklingError) -> str:
    """What torch.load(weights_only=True) refused, from its several-line message: the line
    naming it, without torch's advice to allow-list the global (that is how a payload would run)."""
    lines = str(error).splitlines()
    refused = next((line for line in lines if "WeightsUnpickler error: " in line), None)
    if refused is None:
        refused = lines[0] if lines else type(error).__name__
    return refused.split("WeightsUnpickler error: ")[-1].split(" Please use")[0].strip().rstrip(".")


def load_file(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with an error naming the file when it is damaged."""
    if not path.exists():
        raise CheckpointError(f"{path}: missing from the checkpoint (incomplete or copied partially?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: cannot be read: it holds what torch.load(weights_only=True) refuses to "
            f"unpickle ({refused_global(error)}); rr writes tensors and plain values only, so the file is not "
            f"an rr checkpoint or was altered (nothing in it was run)"
        ) from None
    except Exception as error:  # truncated zip, wrong format
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path}: cannot be read ({type(error).__name__}: {first}); the file is "
            f"corrupt or truncated — resume from an earlier checkpoint"
        ) from None


def load_checkpoint(path: Path, rank: int = 0) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """(shared state, this rank's state or None, trainer state) of a checkpoint folder."""
    shared = load_file(path / "state.pt")
    rank_file = path / f"rank{rank}.pt"
    per_rank = upgrade_rank_state(load_file(rank_file)) if rank_file.exists() else None
    return shared, per_rank, read_trainer_state(path, required=("step", "position"))


def read_trainer_state(path: Path, required: tuple[str, ...] = ("step",)) -> dict[str, Any]:
    """The ``trainer.json`` of the checkpoint folder ``path``, checked before anything trusts
    it: ``step`` (the N of a ``step_N`` folder) and ``position`` (epoch, offset) integers
    >= 0; ``world_size``, ``grad_accum_steps`` and ``total_steps`` integers >= 1 and
    ``train_seconds`` a number >= 0. Keys other than ``required`` may be missing (older
    checkpoints lack some). A damaged or edited file is a :class:`CheckpointError` naming
    it and the key."""
    file = path / "trainer.json"
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{file}: unreadable ({error})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: unreadable (a JSON {type(state).__name__}, not an object)")

    def refuse(key: str, expected: str) -> None:
        value = show(state[key]) if key in state else "missing"
        raise CheckpointError(f"{file}: {key} = {value}: must be {expected} (the file is damaged or was edited)")

    def count(value: Any, least: int) -> bool:
        return type(value) is int and least <= value <= INT64_MAX

    for key, least in (("step", 0), ("world_size", 1), ("grad_accum_steps", 1), ("total_steps", 1)):
        if (key in required or key in state) and not count(state.get(key), least):
            refuse(key, f"an integer >= {least}")
    position = state.get("position", [0, 0] if "position" not in required else None)
    if not (isinstance(position, list) and len(position) == 2 and all(count(value, 0) for value in position)):
        refuse("position", "[epoch, offset], two integers >= 0")
    seconds = state.get("train_seconds", 0.0)
    if type(seconds) not in (int, float) or not (math.isfinite(seconds) and seconds >= 0):
        refuse("train_seconds", "a number >= 0")
    folder = STEP_DIR.match(path.name)
    if folder and int(folder.group(1)) != state["step"]:
        refuse("step", f"{folder.group(1)}, the step of its folder {path.name}")
    return state


def rank_state_for_layout(
    path: Path, trainer_state: dict[str, Any], rank: int, world_size: int, grad_accum_steps: int, global_batch_size: int
) -> dict[str, Any]:
    """This rank's state from a checkpoint saved by another layout of ranks x accumulation steps.

    The ACT carries of every saved rank, in global row order, are cut anew for this
    layout, so each row goes on with the example and latent state it had. The RNG states
    are rank 0's: every rank draws exploration noise (and batch augmentations) for the
    whole global batch from the same seed, so all ranks' generators for them are equal.
    ``carries`` is empty when the saved carries do not cover ``global_batch_size`` rows
    (the batch size changed).
    """
    saved_world = int(trainer_state.get("world_size", 1))
    saved_accum = int(trainer_state.get("grad_accum_steps", 1))
    states = [upgrade_rank_state(load_file(path / f"rank{r}.pt")) for r in range(saved_world)]
    state = dict(states[0])
    carries = [carry for saved in states for carry in (saved.get("carries") or [])]
    state["carries"] = []
    if len(carries) == saved_world * saved_accum:
        rows = sum(int(carry["steps"].shape[0]) for carry in carries)
        if rows == global_batch_size:
            parts = regroup_rows(carries, world_size * grad_accum_steps)
            state["carries"] = parts[rank * grad_accum_steps : (rank + 1) * grad_accum_steps]
    return state
