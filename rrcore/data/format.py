"""The on-disk format of built data sets: layout, metadata, reading and validation.

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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rrcore.base.files import atomic_write_text
from rrcore.contracts.metadata import DataFormatError, DatasetMetadata

ARRAY_NAMES = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")

IGNORE_LABEL = -100
"""Label value that contributes neither loss nor accuracy (the reader maps ``ignore_label_id`` to it)."""


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
