"""The ``hrm`` model registers through the plugin hooks and builds from its spec."""

from __future__ import annotations

import rr_hrm.plugin
import torch
from rr_hrm import HRM, HRMConfig

from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import Model, ModelContext
from rrcore.contracts.registry import load_registry


def test_hrm_registers_and_builds_from_its_spec() -> None:
    registry = load_registry(extra_modules=[rr_hrm.plugin], entry_point_group=None)
    spec = registry.get("model", "hrm")
    assert spec.config_class is HRMConfig

    config = spec.make_config(hidden_size=32, num_heads=2, H_layers=1, L_layers=1, puzzle_emb_ndim=16)
    metadata = DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=5,
        seq_len=6,
        num_puzzle_identifiers=2,
        total_groups=2,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )
    model = spec.factory(config, ModelContext(metadata, 2, torch.float32))
    assert isinstance(model, HRM) and isinstance(model, Model)
    # The trainer routes this table to sign-SGD.
    assert model.puzzle_emb is model.embed_input.puzzle_emb
    assert model.puzzle_emb.weights.shape == (2, 16)


def test_paper_arc_config_has_27m_parameters() -> None:
    """The paper reports ~27M; puzzle embeddings are a buffer and not counted."""
    metadata = DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=12,
        seq_len=900,
        num_puzzle_identifiers=1,
        total_groups=1,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )
    model = HRM(HRMConfig(), ModelContext(metadata, 1, torch.float32))  # defaults = paper's ARC config
    assert sum(p.numel() for p in model.parameters()) == 27_276_290
