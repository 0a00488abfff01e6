"""What every plugin knows of a built data set: :class:`DatasetMetadata`, read from the
``dataset.json`` of each split (the on-disk format is :mod:`rrcore.data.format`'s), and
:class:`DataFormatError`, raised for a data set that does not follow the format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs


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
