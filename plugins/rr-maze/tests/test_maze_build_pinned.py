"""The maze builder writes exactly the bytes it wrote before it streamed through the core's
writer (digest recorded from the earlier builder with ``rrcore.testing.dataset_digest``)."""

from __future__ import annotations

from rr_maze.builder import MazeDataConfig, build_dataset

from rrcore.testing import dataset_digest


def test_generated_set_is_unchanged(tmp_path):
    config = MazeDataConfig(width=12, height=12, hard_threshold=20, train_size=4, test_size=2)
    folder = build_dataset(config, tmp_path)
    assert folder.name == "maze-24dfb7285568"  # same cache key: old builds are found again
    assert dataset_digest(folder) == "bc069e4d061865682393e7e85ac961134b35c78acb9f89f61e9f63f5142bd615"
