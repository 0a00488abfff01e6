"""The 2x2x2 builder writes exactly the bytes it wrote before it streamed through the core's
writer (digest recorded from the earlier builder with ``rrcore.testing.dataset_digest``)."""

from __future__ import annotations

from rr_rubik.builder import RubikDataConfig, build_dataset

from rrcore.testing import dataset_digest


def test_set_is_unchanged(tmp_path):
    folder = build_dataset(RubikDataConfig(train_size=40, test_size=12), tmp_path)
    assert folder.name == "rubik2x2-ce071af95256"  # same cache key: old builds are found again
    assert dataset_digest(folder) == "fe8fc1e0fa4acc93089647433ea5e8166501c11284ec55d0c7192b7fe3d6594f"
