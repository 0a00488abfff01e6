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

import copy
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

from rrcore.files import DiskFullError, atomic_write_text, is_disk_full
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
    atomic_write_text(Path(run_dir) / RUN_METADATA_FILE, json.dumps(metadata.to_dict(), indent=2) + "\n")


@attrs.define
class PuzzleArrays:
    """The five arrays of one set of a split."""

    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray


class DataSourceError(ValueError):
    """A data set that cannot be built as configured: a missing or malformed input file, or
    settings the builder cannot satisfy. Data plugins raise it (or a subclass) with a message
    naming the file or key; ``rr data build`` prints it as one line and exits 2."""


_FLUSH_BYTES = 1 << 24  # rows buffered in memory before they are appended to the files


class _NpyStream:
    """A 2-D .npy file grown row by row. numpy leaves room in the header for the row count to
    grow, so the header is rewritten in place on close and the file equals ``np.save`` of
    the whole array."""

    def __init__(self, path: Path, width: int, dtype: np.dtype) -> None:
        self.path, self.width, self.dtype = path, width, np.dtype(dtype)
        self.rows = 0
        self._file = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._header(0)
        self._header_size = self._file.tell()

    def _header(self, rows: int) -> None:
        np.lib.format.write_array_header_1_0(
            self._file,
            {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (rows, self.width)},
        )

    def append(self, chunk: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(chunk, dtype=self.dtype).tobytes())
        self.rows += chunk.shape[0]

    def close(self) -> None:
        self._file.seek(0)
        self._header(self.rows)
        if self._file.tell() != self._header_size:  # more than numpy's 21 digits of rows
            raise DataFormatError(f"{self.path}: {self.rows} rows do not fit the .npy header")
        self._file.close()


class SplitWriter:
    """Streams one split of a data set to disk, puzzle by puzzle, in bounded memory.

    ``add_puzzle(identifier, inputs, labels)`` appends one puzzle (its examples as
    (n, seq_len) arrays); ``add_group(identifiers, inputs, labels, sizes)`` appends the
    puzzles of a whole group at once; ``end_group()`` closes the group of puzzles added
    since the last call. ``finish(...)`` writes the index arrays and ``dataset.json``
    (the counts filled in), validates the split and moves it into ``directory``; until
    then the files live in a temporary folder beside it, removed if the build fails
    (use the writer as a context manager). Every split holds one set, ``set_name``.
    """

    def __init__(self, directory: Path, seq_len: int, dtype: np.dtype = np.int32, set_name: str = "all") -> None:
        self.directory = Path(directory)
        self.seq_len, self.dtype, self.set_name = seq_len, np.dtype(dtype), set_name
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.directory.name}.", dir=self.directory.parent))
        self._inputs = _NpyStream(self._tmp / f"{set_name}__inputs.npy", seq_len, self.dtype)
        self._labels = _NpyStream(self._tmp / f"{set_name}__labels.npy", seq_len, self.dtype)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_bytes = 0
        self._identifiers: list[np.ndarray] = []
        self._puzzle_indices: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self._group_indices = [0]
        self.num_examples = self.num_puzzles = 0

    def add_puzzle(self, identifier: int, inputs: np.ndarray, labels: np.ndarray) -> None:
        inputs = np.asarray(inputs, dtype=self.dtype).reshape(-1, self.seq_len)
        self._add(np.asarray([identifier]), inputs, labels, np.asarray([inputs.shape[0]]))

    def add_group(
        self, identifiers: np.ndarray, inputs: np.ndarray, labels: np.ndarray, sizes: np.ndarray | None = None
    ) -> None:
        """Puzzles ``identifiers`` (P,) with ``sizes`` (P,) examples each (default one),
        their rows of ``inputs``/``labels`` in order, as one group."""
        identifiers = np.asarray(identifiers).reshape(-1)
        self._add(identifiers, inputs, labels, np.ones(len(identifiers), np.int64) if sizes is None else sizes)
        self.end_group()

    def _add(self, identifiers: np.ndarray, inputs: np.ndarray, labels: np.ndarray, sizes: np.ndarray) -> None:
        inputs = np.asarray(inputs, dtype=self.dtype).reshape(-1, self.seq_len)
        labels = np.asarray(labels, dtype=self.dtype).reshape(-1, self.seq_len)
        if inputs.shape != labels.shape:
            raise ValueError(f"inputs {inputs.shape} and labels {labels.shape} differ")
        sizes = np.asarray(sizes, dtype=np.int64)
        if sizes.sum() != inputs.shape[0]:
            raise ValueError(f"{inputs.shape[0]} rows for puzzles of {sizes.sum()} examples")
        self._pending.append((inputs, labels))
        self._pending_bytes += 2 * inputs.nbytes
        self._identifiers.append(np.asarray(identifiers, dtype=np.int64))
        self._puzzle_indices.append(self.num_examples + np.cumsum(sizes))
        self.num_examples += inputs.shape[0]
        self.num_puzzles += len(identifiers)
        if self._pending_bytes >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._inputs.append(np.concatenate([inputs for inputs, _ in self._pending]))
            self._labels.append(np.concatenate([labels for _, labels in self._pending]))
        self._pending, self._pending_bytes = [], 0

    def end_group(self) -> None:
        if self.num_puzzles > self._group_indices[-1]:
            self._group_indices.append(self.num_puzzles)

    @property
    def num_groups(self) -> int:
        return len(self._group_indices) - 1

    def finish(
        self,
        *,
        pad_id: int,
        ignore_label_id: int | None,
        vocab_size: int,
        num_puzzle_identifiers: int,
        blank_identifier_id: int = 0,
        extra: dict[str, Any] | None = None,
        check_tokens: bool = True,
    ) -> DatasetMetadata:
        """Write the rest of the split, validate it and move it into place; returns its metadata.

        ``check_tokens=False`` skips the scan of every token (builders whose tokens are in
        range by construction, on sets too large to read again)."""
        self.end_group()
        self._flush()
        self._inputs.close()
        self._labels.close()
        empty = np.zeros(0, dtype=np.int64)
        index_arrays = {
            "puzzle_identifiers": np.concatenate(self._identifiers or [empty]),
            "puzzle_indices": np.concatenate(self._puzzle_indices),
            "group_indices": np.asarray(self._group_indices),
        }
        for name, array in index_arrays.items():
            np.save(self._tmp / f"{self.set_name}__{name}.npy", array.astype(np.int32))
        metadata = DatasetMetadata(
            pad_id=pad_id,
            ignore_label_id=ignore_label_id,
            blank_identifier_id=blank_identifier_id,
            vocab_size=vocab_size,
            seq_len=self.seq_len,
            num_puzzle_identifiers=num_puzzle_identifiers,
            total_groups=self.num_groups,
            mean_puzzle_examples=self.num_examples / max(self.num_puzzles, 1),
            sets=[self.set_name],
            extra=dict(extra or {}),
        )
        (self._tmp / "dataset.json").write_text(json.dumps(metadata.to_dict(), indent=2))
        validate_split(self._tmp, check_tokens=check_tokens)
        if self.directory.exists():
            shutil.rmtree(self.directory)
        os.replace(self._tmp, self.directory)
        return metadata

    def abort(self) -> None:
        """Remove the partly written split."""
        for stream in (self._inputs, self._labels):
            if not stream._file.closed:
                stream._file.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is not None or self._tmp.exists():
            self.abort()


def write_split(directory: Path, metadata: DatasetMetadata, sets: dict[str, PuzzleArrays]) -> None:
    """Validate and write a split of arrays already in memory, atomically (a temporary folder
    renamed into place); for hand-made splits of several sets. Builders stream with
    :class:`SplitWriter`."""
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
            raise DataFormatError(
                f"{where('inputs')}: shape {arrays.inputs.shape}, expected (N, {metadata.seq_len}) "
                f"(seq_len in dataset.json)"
            )
        if arrays.labels.shape != arrays.inputs.shape:
            raise DataFormatError(
                f"{where('labels')}: shape {arrays.labels.shape} differs from inputs {arrays.inputs.shape}"
            )
        num_puzzles = arrays.puzzle_identifiers.shape[0]
        if arrays.puzzle_indices.shape != (num_puzzles + 1,):
            raise DataFormatError(
                f"{where('puzzle_indices')}: shape {arrays.puzzle_indices.shape}, expected "
                f"({num_puzzles + 1},) (one more than puzzle_identifiers)"
            )
        indices = np.asarray(arrays.puzzle_indices)
        if indices[0] != 0 or indices[-1] != arrays.inputs.shape[0] or np.any(np.diff(indices) < 0):
            raise DataFormatError(
                f"{where('puzzle_indices')}: must rise from 0 to the number of examples ({arrays.inputs.shape[0]})"
            )
        groups = np.asarray(arrays.group_indices)
        if groups.ndim != 1 or groups[0] != 0 or groups[-1] != num_puzzles or np.any(np.diff(groups) <= 0):
            raise DataFormatError(
                f"{where('group_indices')}: must rise strictly from 0 to the number of puzzles ({num_puzzles})"
            )
        if num_puzzles and (
            arrays.puzzle_identifiers.min() < 0 or arrays.puzzle_identifiers.max() >= metadata.num_puzzle_identifiers
        ):
            raise DataFormatError(
                f"{where('puzzle_identifiers')}: identifiers must lie in "
                f"[0, {metadata.num_puzzle_identifiers}) (num_puzzle_identifiers)"
            )
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
        inputs = np.asarray(arrays.inputs[start : start + rows])
        low, high = int(inputs.min()), int(inputs.max())
        if low < 0 or high >= metadata.vocab_size:
            raise DataFormatError(
                f"{where('inputs')}: token {high if high >= metadata.vocab_size else low} "
                f"outside the vocabulary [0, {metadata.vocab_size})"
            )
        labels = np.asarray(arrays.labels[start : start + rows]).astype(np.int64)
        scored = labels[~np.isin(labels, ignored)]
        if scored.size and (scored.min() < 0 or scored.max() >= metadata.vocab_size):
            bad = int(scored.max() if scored.max() >= metadata.vocab_size else scored.min())
            raise DataFormatError(f"{where('labels')}: label {bad} outside the vocabulary [0, {metadata.vocab_size})")


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

    def __init__(
        self,
        directory: Path,
        *,
        global_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        device: torch.device | str = "cpu",
        on_device: bool | str = "auto",
    ) -> None:
        self.directory = Path(directory)
        if global_batch_size % world_size:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by the {world_size} ranks")
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
        inputs, labels, identifiers, puzzle_indices, group_indices = (
            [],
            [],
            [],
            [np.zeros(1, np.int64)],
            [np.zeros(1, np.int64)],
        )
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
            return {
                "inputs": self._inputs[index].to(torch.int32),
                "labels": self._convert_labels(self._labels[index]),
                "puzzle_identifiers": self._identifiers[index],
            }
        order = np.argsort(indices, kind="stable")  # sorted reads are kinder to memory maps
        rows = np.empty_like(order)
        rows[order] = np.arange(len(order))
        inputs = np.asarray(self._host_inputs[indices[order]], dtype=np.int32)[rows]
        labels = np.asarray(self._host_labels[indices[order]], dtype=np.int64)[rows]
        batch = {
            "inputs": torch.from_numpy(inputs),
            "labels": self._convert_labels(torch.from_numpy(labels)),
            "puzzle_identifiers": torch.from_numpy(self._example_identifiers[indices]),
        }
        if self.device.type == "cuda":
            return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in batch.items()}
        return batch

    def train_batches(
        self, start: StreamPosition = StreamPosition()
    ) -> Iterator[tuple[StreamPosition, dict[str, torch.Tensor]]]:
        """Endless ``(position_after, batch)`` pairs from ``start``; resume from ``position_after``."""
        if self.num_examples == 0:
            raise DataFormatError(f"{self.directory}: no training examples")
        epoch, offset = start.epoch, start.offset
        stream = self.epoch_stream(epoch)
        rows = slice(self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size)
        while True:
            parts, needed = [], self.global_batch_size
            while needed:
                part = stream[offset : offset + needed]
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
            batch["puzzle_identifiers"] = torch.where(
                valid_t, batch["puzzle_identifiers"], self.metadata.blank_identifier_id
            )
            batch["index"] = torch.from_numpy(indices).to(self.device)
            batch["valid"] = valid_t
            yield batch

    def num_eval_batches(self) -> int:
        return -(-self.num_examples // self.global_batch_size)

    def rebatched(self, global_batch_size: int) -> PuzzleDataset:
        """This split in global batches of ``global_batch_size`` (the arrays shared, not copied)."""
        if global_batch_size % self.world_size:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by the {self.world_size} ranks")
        split = copy.copy(self)
        split.global_batch_size, split.local_batch_size = global_batch_size, global_batch_size // self.world_size
        return split


# ---------------------------------------------------------------------------------------
# Build cache
# ---------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$RR_CACHE_DIR``, else ``$XDG_CACHE_HOME/rr``, else ``~/.cache/rr``."""
    if os.environ.get("RR_CACHE_DIR"):
        return Path(os.environ["RR_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rr"


def data_cache_dir(setting: str = "") -> Path:
    """Where data sets are built: ``[run] cache_dir`` when set, else :func:`default_cache_dir`."""
    return Path(setting).expanduser() if setting else default_cache_dir()


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
    returns, so an interrupted build never leaves a half-written data set behind (the
    temporary folder goes on any exception, ``KeyboardInterrupt`` and the ``rr`` command
    line's SIGTERM included; a full disk is a :class:`~rrcore.files.DiskFullError`).
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
        (tmp / "build.json").write_text(
            json.dumps(
                {"name": name, "key": key},
                indent=2,
                sort_keys=True,
                default=lambda v: attrs.asdict(v) if attrs.has(type(v)) else str(v),
            )
        )
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(error) and not isinstance(error, DiskFullError):
            raise DiskFullError(error.filename or target, "the partial data set was removed") from None
        raise
    return target
