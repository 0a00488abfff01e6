"""Reading maze CSV files in the layout of the hub data set (``source,question,answer,rating``)."""

from __future__ import annotations

import csv
from pathlib import Path

import attrs
import numpy as np

from rr_maze.maze import CHARSET, PAD
from rrcore.api import DataSourceError


class MazeDataError(DataSourceError):
    """Maze input rejected; the message names the file and row."""


@attrs.define
class MazeFile:
    """Mazes read from a CSV file: ``inputs`` and ``labels`` (N, H, W) tokens,
    ``sources`` and ``ratings`` (N,) as given in the file."""

    inputs: np.ndarray
    labels: np.ndarray
    sources: list[str]
    ratings: np.ndarray


def read_maze_csv(path: Path, width: int | None = None) -> MazeFile:
    """Read a CSV with the header ``source,question,answer,rating`` (the hub data set's).

    ``question`` and ``answer`` are the grids as strings of ``# SGo`` characters,
    rows concatenated; square grids unless ``width`` is given.
    """
    path = Path(path)
    lookup = np.zeros(256, dtype=np.uint8)  # 0 marks a character outside the charset
    lookup[[ord(c) for c in CHARSET]] = np.arange(1, len(CHARSET) + 1)
    inputs, labels, sources, ratings = [], [], [], []
    shape: tuple[int, int] | None = None
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            raise MazeDataError(
                f"{path}: the file is empty; expected the header source,question,answer,rating and one maze a row"
            )
        if header is None or [h.strip() for h in header[:4]] != ["source", "question", "answer", "rating"]:
            raise MazeDataError(f"{path}:1: expected the header source,question,answer,rating, got {header}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 4:
                raise MazeDataError(f"{path}:{line}: expected 4 fields, got {len(row)}")
            source, question, answer, rating = row
            if shape is None:
                cells = len(question)
                cols = width or int(round(cells**0.5))
                if cols * (cells // cols) != cells:
                    raise MazeDataError(f"{path}:{line}: {cells} characters do not make a grid of width {cols}")
                shape = (cells // cols, cols)
            for name, text in (("question", question), ("answer", answer)):
                if len(text) != shape[0] * shape[1]:
                    raise MazeDataError(
                        f"{path}:{line}: {name} has {len(text)} characters, expected "
                        f"{shape[0] * shape[1]} ({shape[0]}x{shape[1]})"
                    )
                tokens = lookup[np.frombuffer(text.encode("latin-1", "replace"), dtype=np.uint8)]
                if (tokens == PAD).any():
                    bad = text[int(np.argmax(tokens == PAD))]
                    raise MazeDataError(f"{path}:{line}: {name} has {bad!r}, not one of {CHARSET!r}")
                (inputs if name == "question" else labels).append(tokens.reshape(shape))
            sources.append(source)
            try:
                ratings.append(float(rating))
            except ValueError:
                raise MazeDataError(f"{path}:{line}: rating {rating!r} is not a number") from None
    if shape is None:
        raise MazeDataError(f"{path}: no mazes")
    return MazeFile(np.stack(inputs), np.stack(labels), sources, np.asarray(ratings))
