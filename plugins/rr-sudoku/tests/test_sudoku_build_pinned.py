"""The builder writes exactly the bytes it wrote before it streamed through the core's writer.

The digests were recorded from the builder as it was before (``rrcore.testing.dataset_digest``);
a change to the arrays, their dtypes or ``dataset.json`` changes them.
"""

from __future__ import annotations

from rr_sudoku.builder import SudokuDataConfig, build_dataset

from rrcore.testing import dataset_digest

PUZZLES = """\
.......1.2..1..3  # guesses 0
.1....2.32......  # guesses 0
..4..2....3....1  # guesses 0
.1..2.....4..3..  # guesses 0
.2....4...1..1..  # guesses 0
.2...1.....4...2  # guesses 0
...2.....31.4...  # guesses 0
.3....2...1..1..  # guesses 0
......21..1.3...  # guesses 0
..2..4..4......1  # guesses 0
"""


def test_generated_set_is_unchanged(tmp_path):
    config = SudokuDataConfig(source="generate", size=4, train_size=12, test_size=4, num_aug=2, jobs=1)
    folder = build_dataset(config, tmp_path)
    assert folder.name == "sudoku4x4-e6a67d0baa7c"  # same cache key: old builds are found again
    assert dataset_digest(folder) == "faa2990d69d13066cc1b2afd516457a09565174f831b5eae0e2bbed3c584ab2a"


def test_set_from_a_puzzle_file_is_unchanged(tmp_path):
    (tmp_path / "p.txt").write_text(PUZZLES)
    config = SudokuDataConfig(train_path=str(tmp_path / "p.txt"), size=4, test_size=3, num_aug=1, jobs=1)
    folder = build_dataset(config, tmp_path / "cache")
    assert dataset_digest(folder) == "9b7777be73be3352902aeffdd6f90a41be042b07627565e907216dd03d1f03da"
