"""Built data sets on disk: the format, a writer for builders and the reader.

The layout is the one the HRM/TRM/URM reference builders write, so their data
sets load unchanged. A built data set is a folder with one sub-folder per split
(``train/``, ``test/``), each holding::

    dataset.json                     metadata (:class:`DatasetMetadata`)
    <set>__inputs.npy                (N, seq_len) token ids of every example
    <set>__labels.npy                (N, seq_len) target ids (ignore_label_id where not scored)
    <set>__puzzle_identifiers.npy    (P,) embedding id of every puzzle
    <set>__puzzle_indices.npy        (P + 1,) example offsets of each puzzle
    <set>__group_indices.npy         (G + 1,) puzzle offsets of each group

An *example* is one input/label pair, a *puzzle* a set of examples sharing an
identifier (e.g. an augmented ARC task's demonstration pairs), and a *group*
the puzzles that are versions of one original puzzle (its augmentations).
Training samples one random puzzle per group per epoch; evaluation goes through
every example in order.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from rrcore.nn import IGNORE_LABEL

ARRAY_NAMES = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")


class DataFormatError(ValueError):
    """A built data set that does not follow the format; names the file and the problem."""


@attrs.define
class DatasetMetadata:
    """What a model needs to know about a data set (``dataset.json``).

    ``ignore_label_id`` is the label value (e.g. the pad id 0) that the reader turns
    into ``-100``; ``blank_identifier_id`` is the puzzle identifier of padding rows.
    Keys the references write beyond these are kept in ``extra``.
    """

    pad_id: int
    ignore_label_id: int | None
    blank_identifier_id: int
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    total_groups: int
    mean_puzzle_examples: float
    sets: list[str]
    extra: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_json(cls, path: Path) -> DatasetMetadata:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise DataFormatError(f"{path}: missing; a built split needs dataset.json") from None
        except json.JSONDecodeError as error:
            raise DataFormatError(f"{path}: not valid JSON ({error})") from None
        names = [f.name for f in attrs.fields(cls) if f.name != "extra"]
        missing = [name for name in names if name not in raw]
        if missing:
            raise DataFormatError(f"{path}: missing keys {missing}")
        values = {name: raw.pop(name) for name in names}
        return cls(**values, extra=raw)

    def to_dict(self) -> dict[str, Any]:
        values = attrs.asdict(self)
        extra = values.pop("extra")
        return {**values, **extra}


RUN_METADATA_FILE = "dataset.json"
"""The training split's ``dataset.json``, copied into the run folder when training starts,
so that ``rr solve`` can rebuild the model without the data set."""


def save_run_metadata(run_dir: Path, metadata: DatasetMetadata) -> None:
    """Write ``metadata`` to the run folder's :data:`RUN_METADATA_FILE`."""
    (Path(run_dir) / RUN_METADATA_FILE).write_text(json.dumps(metadata.to_dict(), indent=2) + "\n")


@attrs.define
class PuzzleArrays:
    """The five arrays of one set of a split."""

    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray


class SplitWriter:
    """Accumulates groups of puzzles of examples and returns :class:`PuzzleArrays`.

    ``add_puzzle(identifier, inputs, labels)`` appends one puzzle (its examples as
    (n, seq_len) arrays); ``end_group()`` closes the group of puzzles added since
    the last call.
    """

    def __init__(self, seq_len: int, dtype: np.dtype = np.int32) -> None:
        self.seq_len = seq_len
        self.dtype = dtype
        self._inputs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._identifiers: list[int] = []
        self._puzzle_indices = [0]
        self._group_indices = [0]

    def add_puzzle(self, identifier: int, inputs: np.ndarray, labels: np.ndarray) -> None:
        inputs = np.asarray(inputs, dtype=self.dtype).reshape(-1, self.seq_len)
        labels = np.asarray(labels, dtype=self.dtype).reshape(-1, self.seq_len)
        if inputs.shape != labels.shape:
            raise ValueError(f"inputs {inputs.shape} and labels {labels.shape} differ")
        self._inputs.append(inputs)
        self._labels.append(labels)
        self._identifiers.append(int(identifier))
        self._puzzle_indices.append(self._puzzle_indices[-1] + inputs.shape[0])

    def end_group(self) -> None:
        if len(self._identifiers) > self._group_indices[-1]:
            self._group_indices.append(len(self._identifiers))

    def arrays(self) -> PuzzleArrays:
        self.end_group()
        empty = np.zeros((0, self.seq_len), dtype=self.dtype)
        return PuzzleArrays(
            inputs=np.concatenate(self._inputs) if self._inputs else empty,
            labels=np.concatenate(self._labels) if self._labels else empty,
            puzzle_identifiers=np.asarray(self._identifiers, dtype=np.int32),
            puzzle_indices=np.asarray(self._puzzle_indices, dtype=np.int32),
            group_indices=np.asarray(self._group_indices, dtype=np.int32),
        )


def write_split(directory: Path, metadata: DatasetMetadata, sets: dict[str, PuzzleArrays]) -> None:
    """Validate and write a split folder atomically (a temporary folder renamed into place)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        (tmp / "dataset.json").write_text(json.dumps(metadata.to_dict(), indent=2))
        for set_name, arrays in sets.items():
            for array_name in ARRAY_NAMES:
                np.save(tmp / f"{set_name}__{array_name}.npy", getattr(arrays, array_name))
        validate_split(tmp, check_tokens=True)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load(path: Path, mmap: bool) -> np.ndarray:
    if not path.exists():
        raise DataFormatError(f"{path}: missing array (each set needs {', '.join(ARRAY_NAMES)})")
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as error:
        raise DataFormatError(f"{path}: not a readable .npy array ({error})") from None


def load_set(directory: Path, set_name: str, mmap: bool = True) -> PuzzleArrays:
    """Load one set's arrays (memory-mapped by default) without validation."""
    return PuzzleArrays(*(_load(Path(directory) / f"{set_name}__{name}.npy", mmap) for name in ARRAY_NAMES))


def validate_split(directory: Path, check_tokens: bool = True) -> tuple[DatasetMetadata, dict[str, PuzzleArrays]]:
    """Load a split's metadata and arrays, raising :class:`DataFormatError` on any inconsistency."""
    directory = Path(directory)
    metadata = DatasetMetadata.from_json(directory / "dataset.json")
    sets = {}
    for set_name in metadata.sets:
        arrays = load_set(directory, set_name)

        def where(name: str, set_name: str = set_name) -> Path:
            return directory / f"{set_name}__{name}.npy"

        if arrays.inputs.ndim != 2 or arrays.inputs.shape[1] != metadata.seq_len:
            raise DataFormatError(f"{where('inputs')}: shape {arrays.inputs.shape}, expected (N, {metadata.seq_len}) "
                                  f"(seq_len in dataset.json)")
        if arrays.labels.shape != arrays.inputs.shape:
            raise DataFormatError(f"{where('labels')}: shape {arrays.labels.shape} differs from inputs "
                                  f"{arrays.inputs.shape}")
        num_puzzles = arrays.puzzle_identifiers.shape[0]
        if arrays.puzzle_indices.shape != (num_puzzles + 1,):
            raise DataFormatError(f"{where('puzzle_indices')}: shape {arrays.puzzle_indices.shape}, expected "
                                  f"({num_puzzles + 1},) (one more than puzzle_identifiers)")
        indices = np.asarray(arrays.puzzle_indices)
        if indices[0] != 0 or indices[-1] != arrays.inputs.shape[0] or np.any(np.diff(indices) < 0):
            raise DataFormatError(f"{where('puzzle_indices')}: must rise from 0 to the number of examples "
                                  f"({arrays.inputs.shape[0]})")
        groups = np.asarray(arrays.group_indices)
        if groups.ndim != 1 or groups[0] != 0 or groups[-1] != num_puzzles or np.any(np.diff(groups) <= 0):
            raise DataFormatError(f"{where('group_indices')}: must rise strictly from 0 to the number of "
                                  f"puzzles ({num_puzzles})")
        if num_puzzles and (arrays.puzzle_identifiers.min() < 0
                            or arrays.puzzle_identifiers.max() >= metadata.num_puzzle_identifiers):
            raise DataFormatError(f"{where('puzzle_identifiers')}: identifiers must lie in "
                                  f"[0, {metadata.num_puzzle_identifiers}) (num_puzzle_identifiers)")
        if check_tokens and arrays.inputs.size:
            _check_tokens(arrays, metadata, where)
        sets[set_name] = arrays
    return metadata, sets


_DEVICE_DTYPES = (np.uint8, np.int16, np.int32, np.int64)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A copy of ``array`` on ``device`` in its own dtype when torch supports it, else int32."""
    dtype = array.dtype if array.dtype in _DEVICE_DTYPES else np.int32
    return torch.from_numpy(np.array(array, dtype=dtype)).to(device)


def _check_tokens(arrays: PuzzleArrays, metadata: DatasetMetadata, where: Any) -> None:
    """Every input token and scored label inside the vocabulary, in chunks (bounded memory)."""
    ignored = [IGNORE_LABEL] + ([metadata.ignore_label_id] if metadata.ignore_label_id is not None else [])
    rows = max(1, (1 << 22) // max(1, metadata.seq_len))
    for start in range(0, arrays.inputs.shape[0], rows):
        inputs = np.asarray(arrays.inputs[start: start + rows])
        low, high = int(inputs.min()), int(inputs.max())
        if low < 0 or high >= metadata.vocab_size:
            raise DataFormatError(f"{where('inputs')}: token {high if high >= metadata.vocab_size else low} "
                                  f"outside the vocabulary [0, {metadata.vocab_size})")
        labels = np.asarray(arrays.labels[start: start + rows]).astype(np.int64)
        scored = labels[~np.isin(labels, ignored)]
        if scored.size and (scored.min() < 0 or scored.max() >= metadata.vocab_size):
            bad = int(scored.max() if scored.max() >= metadata.vocab_size else scored.min())
            raise DataFormatError(f"{where('labels')}: label {bad} outside the vocabulary "
                                  f"[0, {metadata.vocab_size})")


# ---------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------

@attrs.frozen
class StreamPosition:
    """Where the training stream stands: the epoch and the offset within it."""

    epoch: int = 0
    offset: int = 0


class PuzzleDataset:
    """One split of a built data set, batched for one rank.

    Training: an endless stream where each epoch visits every group once in a
    seeded random order, takes one seeded random puzzle of it and all that
    puzzle's examples; consecutive ``global_batch_size`` windows of the stream are
    the global batches, and rank ``r`` takes rows ``[r*B, (r+1)*B)`` of each. The
    stream depends only on the seed, never on the number of ranks.

    Evaluation: every example once, in order, in global batches of
    ``global_batch_size`` with the last one padded (``valid`` False).

    With ``on_device`` the arrays are copied to the device once (``auto``: on CUDA
    when they take under a quarter of free memory); otherwise batches are gathered
    from the memory-mapped files.
    """

    def __init__(self, directory: Path, *, global_batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, device: torch.device | str = "cpu", on_device: bool | str = "auto") -> None:
        self.directory = Path(directory)
        if global_batch_size % world_size:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                             f"{world_size} ranks")
        self.metadata, sets = validate_split(self.directory)
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.device = torch.device(device)
        self._merge_sets(sets)
        self.on_device = self._decide_on_device(on_device)
        if self.on_device:
            # Kept in the files' (often uint8) dtype; batches are widened as they are gathered.
            self._inputs = _to_device(self._host_inputs, self.device)
            self._labels = _to_device(self._host_labels, self.device)
            self._identifiers = torch.from_numpy(self._example_identifiers).to(self.device)

    def _merge_sets(self, sets: dict[str, PuzzleArrays]) -> None:
        inputs, labels, identifiers, puzzle_indices, group_indices = [], [], [], [np.zeros(1, np.int64)], [np.zeros(1, np.int64)]
        examples = puzzles = 0
        for arrays in sets.values():
            inputs.append(arrays.inputs)
            labels.append(arrays.labels)
            identifiers.append(np.asarray(arrays.puzzle_identifiers, dtype=np.int32))
            puzzle_indices.append(np.asarray(arrays.puzzle_indices[1:], dtype=np.int64) + examples)
            group_indices.append(np.asarray(arrays.group_indices[1:], dtype=np.int64) + puzzles)
            examples += arrays.inputs.shape[0]
            puzzles += arrays.puzzle_identifiers.shape[0]
        self._host_inputs = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        self._host_labels = labels[0] if len(labels) == 1 else np.concatenate(labels)
        self.puzzle_identifiers = np.concatenate(identifiers)
        self.puzzle_indices = np.concatenate(puzzle_indices)
        self.group_indices = np.concatenate(group_indices)
        self.num_examples = examples
        # Identifier of every example, for gathering by example index.
        self._example_identifiers = np.repeat(self.puzzle_identifiers, np.diff(self.puzzle_indices)).astype(np.int32)

    def _decide_on_device(self, on_device: bool | str) -> bool:
        if on_device != "auto":
            return bool(on_device)
        if self.device.type != "cuda":
            return False
        size = self._host_inputs.nbytes + self._host_labels.nbytes
        free, _ = torch.cuda.mem_get_info(self.device)
        return size < free // 4

    def _convert_labels(self, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(torch.int64)
        if self.metadata.ignore_label_id is not None:
            labels = torch.where(labels == self.metadata.ignore_label_id, IGNORE_LABEL, labels)
        return labels

    # -- sampling ----------------------------------------------------------------------

    def epoch_stream(self, epoch: int) -> np.ndarray:
        """Example indices of training epoch ``epoch`` (seeded by the run seed and the epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        num_groups = len(self.group_indices) - 1
        groups = rng.permutation(num_groups)
        first = self.group_indices[groups]
        sizes = self.group_indices[groups + 1] - first
        puzzles = first + np.floor(rng.random(num_groups) * sizes).astype(np.int64)
        starts = self.puzzle_indices[puzzles]
        lengths = self.puzzle_indices[puzzles + 1] - starts
        # Concatenate the ranges [start, start + length) without a Python loop.
        ends = np.cumsum(lengths)
        return np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)

    @property
    def examples_per_epoch(self) -> int:
        """Expected examples in one training epoch (one puzzle of every group)."""
        return round(self.metadata.total_groups * self.metadata.mean_puzzle_examples)

    @property
    def steps_per_epoch(self) -> float:
        """Expected optimizer steps per epoch (groups x mean examples / global batch)."""
        return self.metadata.total_groups * self.metadata.mean_puzzle_examples / self.global_batch_size

    def _gather(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        if self.on_device:
            index = torch.from_numpy(indices)
            if self.device.type == "cuda":
                index = index.pin_memory().to(self.device, non_blocking=True)
            return {"inputs": self._inputs[index].to(torch.int32), "labels": self._convert_labels(self._labels[index]),
                    "puzzle_identifiers": self._identifiers[index]}
        order = np.argsort(indices, kind="stable")  # sorted reads are kinder to memory maps
        rows = np.empty_like(order)
        rows[order] = np.arange(len(order))
        inputs = np.asarray(self._host_inputs[indices[order]], dtype=np.int32)[rows]
        labels = np.asarray(self._host_labels[indices[order]], dtype=np.int64)[rows]
        batch = {"inputs": torch.from_numpy(inputs), "labels": self._convert_labels(torch.from_numpy(labels)),
                 "puzzle_identifiers": torch.from_numpy(self._example_identifiers[indices])}
        if self.device.type == "cuda":
            return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
        return batch

    def train_batches(self, start: StreamPosition = StreamPosition()) -> Iterator[tuple[StreamPosition, dict[str, torch.Tensor]]]:
        """Endless ``(position_after, batch)`` pairs from ``start``; resume from ``position_after``."""
        if self.num_examples == 0:
            raise DataFormatError(f"{self.directory}: no training examples")
        epoch, offset = start.epoch, start.offset
        stream = self.epoch_stream(epoch)
        rows = slice(self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size)
        while True:
            parts, needed = [], self.global_batch_size
            while needed:
                part = stream[offset: offset + needed]
                parts.append(part)
                needed -= len(part)
                offset += len(part)
                if offset >= len(stream):
                    epoch, offset = epoch + 1, 0
                    stream = self.epoch_stream(epoch)
            indices = np.concatenate(parts)[rows]
            yield StreamPosition(epoch, offset), self._gather(indices)

    def eval_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Each example once, in order; this rank's rows of each padded global batch."""
        for begin in range(0, self.num_examples, self.global_batch_size):
            start = begin + self.rank * self.local_batch_size
            indices = np.arange(start, start + self.local_batch_size, dtype=np.int64)
            valid = indices < self.num_examples
            batch = self._gather(np.where(valid, indices, 0))
            valid_t = torch.from_numpy(valid).to(self.device)
            batch["inputs"] = torch.where(valid_t[:, None], batch["inputs"], self.metadata.pad_id)
            batch["labels"] = torch.where(valid_t[:, None], batch["labels"], IGNORE_LABEL)
            batch["puzzle_identifiers"] = torch.where(valid_t, batch["puzzle_identifiers"],
                                                      self.metadata.blank_identifier_id)
            batch["index"] = torch.from_numpy(indices).to(self.device)
            batch["valid"] = valid_t
            yield batch

    def num_eval_batches(self) -> int:
        return -(-self.num_examples // self.global_batch_size)


# ---------------------------------------------------------------------------------------
# Build cache
# ---------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$RR_CACHE_DIR``, else ``$XDG_CACHE_HOME/rr``, else ``~/.cache/rr``."""
    if os.environ.get("RR_CACHE_DIR"):
        return Path(os.environ["RR_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rr"


def config_hash(*parts: Any) -> str:
    """A short stable hash of JSON-able values or attrs instances (for cache folder names)."""
    import hashlib

    def plain(value: Any) -> Any:
        return attrs.asdict(value) if attrs.has(type(value)) else value

    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached_build(cache_dir: Path, name: str, key: Any, build: Any) -> Path:
    """Return ``cache_dir/<name>-<hash(key)>``, building it first if absent.

    ``build(folder)`` must write the ``train/`` and ``test/`` splits into ``folder``
    (a fresh temporary folder); it is renamed into place only when ``build``
    returns, so an interrupted build never leaves a half-written data set behind.
    ``key`` must capture everything the result depends on (config, builder version,
    input file sizes and times).
    """
    target = Path(cache_dir) / f"{name}-{config_hash(key)}"
    if (target / "train" / "dataset.json").exists() and (target / "test" / "dataset.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        (tmp / "build.json").write_text(json.dumps({"name": name, "key": key}, indent=2, sort_keys=True,
                                                   default=lambda v: attrs.asdict(v) if attrs.has(type(v)) else str(v)))
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
