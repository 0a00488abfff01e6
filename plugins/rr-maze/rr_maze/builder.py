"""The ``maze`` data set builder: generated mazes or the hub CSV files (:mod:`rr_maze.reader`).

Built splits follow the Maze-Hard layout of the reference builders (one set
``all``, seq_len H*W, vocabulary of 6 with pad 0 ignored, one puzzle identifier),
so a model trained on rr's mazes reads the references' data and back. Training
mazes are augmented by the symmetries of the square, each maze's versions forming
one group (training draws one version per maze per epoch). Beside the arrays,
``all__ratings.npy`` holds each maze's rating (the CSV ``rating`` column, or the
shortest path length for generated mazes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
import numpy as np

from rr_maze.maze import (
    CHARSET,
    PAD,
    VOCAB_SIZE,
    MazeSettings,
    generate_mazes,
    shortest_path_lengths,
)
from rr_maze.reader import MazeDataError, read_maze_csv
from rrcore.api import SplitWriter, cached_build, dihedral, shape_preserving_transforms, source_stamp

BUILDER_VERSION = 1


@attrs.define
class MazeDataConfig:
    """``[data] plugin = "maze"``.

    ``source = "generate"``: ``train_size`` and ``test_size`` new ``height`` x ``width``
    mazes whose shortest path is longer than ``hard_threshold`` moves, with a
    fraction ``loop_fraction`` of inner walls removed (see :mod:`rr_maze.maze`).
    ``source = "csv"``: ``train.csv`` and ``test.csv`` of ``csv_dir`` (the hub data
    set's layout); ``train_size``/``test_size`` then subsample (seeded; 0 = all).
    ``dihedral_augmentation`` adds the 8 symmetries of every training maze (4 when
    the grid is not square).
    """

    source: Literal["generate", "csv"] = "generate"
    csv_dir: str = ""
    width: int = 30
    height: int = 30
    hard_threshold: int = 110
    loop_fraction: float = 0.02
    train_size: int = 1000
    test_size: int = 1000
    dihedral_augmentation: bool = True
    seed: int = 0


def _write(folder: Path, inputs: np.ndarray, labels: np.ndarray, ratings: np.ndarray, augment: bool) -> None:
    count, height, width = inputs.shape
    transforms = shape_preserving_transforms(height, width) if augment else [0]
    versions = [(dihedral(inputs, t).reshape(count, -1), dihedral(labels, t).reshape(count, -1)) for t in transforms]
    with SplitWriter(folder, height * width, dtype=np.uint8) as writer:
        for row in range(count):  # each maze's versions form one group
            writer.add_group(
                np.zeros(len(versions), dtype=np.int32), [v[0][row] for v in versions], [v[1][row] for v in versions]
            )
        writer.finish(
            pad_id=PAD,
            ignore_label_id=PAD,
            vocab_size=VOCAB_SIZE,
            num_puzzle_identifiers=1,
            extra={"task": "maze", "grid_height": height, "grid_width": width, "charset": CHARSET},
        )
    np.save(folder / "all__ratings.npy", np.repeat(ratings, len(transforms)).astype(np.float32))


def _subsample(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(count, size=size, replace=False)) if 0 < size < count else np.arange(count)


def build_dataset(config: MazeDataConfig, cache_dir: Path) -> Path:
    """The ``maze`` data set factory: build (or find in the cache) the train/test splits."""
    key: dict = {"config": attrs.asdict(config), "version": BUILDER_VERSION}
    least = 0 if config.source == "csv" else 1  # 0 takes a whole CSV file
    for name in ("train_size", "test_size"):
        if getattr(config, name) < least:
            raise MazeDataError(
                f"[data] {name} must be at least {least} with source = {config.source!r}, got {getattr(config, name)}"
            )
    if config.source == "csv":
        if not config.csv_dir:
            raise MazeDataError('source = "csv" needs csv_dir, the folder holding train.csv and test.csv')
        csv_dir = Path(config.csv_dir).expanduser()
        if not csv_dir.is_dir():
            problem = "is a file, not a maze CSV folder" if csv_dir.exists() else "no such maze CSV folder"
            raise MazeDataError(f"{csv_dir}: {problem} (csv_dir must hold train.csv and test.csv)")
        files = {split: csv_dir / f"{split}.csv" for split in ("train", "test")}
        for path in files.values():
            if not path.is_file():
                problem = "is a folder" if path.is_dir() else "missing"
                raise MazeDataError(f"{path}: {problem} (csv_dir must hold train.csv and test.csv)")
        # Lists: the keys of sets built before.
        key["files"] = {split: list(source_stamp(path).values()) for split, path in files.items()}

    def write(folder: Path) -> None:
        rng = np.random.default_rng(config.seed)
        for split, size in (("train", config.train_size), ("test", config.test_size)):
            if config.source == "csv":
                mazes = read_maze_csv(files[split])
                keep = _subsample(len(mazes.inputs), size, rng)
                inputs, labels, ratings = mazes.inputs[keep], mazes.labels[keep], mazes.ratings[keep]
            else:
                settings = MazeSettings(
                    width=config.width,
                    height=config.height,
                    hard_threshold=config.hard_threshold,
                    loop_fraction=config.loop_fraction,
                )
                try:
                    inputs, labels = generate_mazes(size, settings, rng)
                except ValueError as error:
                    raise MazeDataError(f"[data] {error}") from None
                ratings = shortest_path_lengths(inputs)
            _write(folder / split, inputs, labels, ratings, augment=config.dihedral_augmentation and split == "train")

    return cached_build(cache_dir, "maze", key, write)
