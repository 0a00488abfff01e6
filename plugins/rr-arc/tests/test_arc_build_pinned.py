"""The ARC builder writes exactly the bytes (and augmentation tables) it wrote with its own
.npy writer, before it streamed through the core's (digest recorded from the earlier
builder with ``rrcore.testing.dataset_digest``)."""

from __future__ import annotations

from rr_arc.builder import ArcDataConfig, build_dataset

from rrcore.testing import dataset_digest


def test_small_set_is_unchanged(arc_dir, tmp_path):
    config = ArcDataConfig(path=str(arc_dir), train_subsets=["training", "evaluation"], num_aug=3)
    folder = build_dataset(config, tmp_path / "cache")
    assert dataset_digest(folder) == "3ea6ed813340a35777fc71c338e14e424dc9c190df3aa15dd4348d2c057058ca"
