"""Reading a built split in batches for training (an endless seeded stream) and evaluation."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
import torch

from rrcore.contracts.metadata import DataFormatError
from rrcore.data.format import IGNORE_LABEL, PuzzleArrays, validate_split

_DEVICE_DTYPES = (np.uint8, np.int16, np.int32, np.int64)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A copy of ``array`` on ``device`` in its own dtype when torch supports it, else int32."""
    dtype = array.dtype if array.dtype in _DEVICE_DTYPES else np.int32
    return torch.from_numpy(np.array(array, dtype=dtype)).to(device)


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
        inputs, labels, identifiers = [], [], []
        puzzle_indices, group_indices = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)]
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
