"""Writing a split in the format of :mod:`rrcore.data.format`: streamed puzzle by puzzle
(:class:`SplitWriter`, for builders) or from arrays in memory (:func:`write_split`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rrcore.contracts.metadata import DataFormatError, DatasetMetadata
from rrcore.data.format import ARRAY_NAMES, PuzzleArrays, validate_split

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
        self._tmp = _temporary_folder(self.directory)
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
        _publish(self._tmp, self.directory, metadata, check_tokens)
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
    tmp = _temporary_folder(directory)
    try:
        for set_name, arrays in sets.items():
            for array_name in ARRAY_NAMES:
                np.save(tmp / f"{set_name}__{array_name}.npy", getattr(arrays, array_name))
        _publish(tmp, directory, metadata, check_tokens=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _temporary_folder(directory: Path) -> Path:
    """A fresh folder beside ``directory``, renamed onto it once the split is complete."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))


def _publish(tmp: Path, directory: Path, metadata: DatasetMetadata, check_tokens: bool) -> None:
    """Write ``metadata`` into ``tmp``, validate the split there and move it onto ``directory``."""
    (tmp / "dataset.json").write_text(json.dumps(metadata.to_dict(), indent=2))
    validate_split(tmp, check_tokens=check_tokens)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
