"""Registration: ``urm`` and ``muon`` are found and build from their specs."""

from __future__ import annotations

import rr_urm.plugin
import torch
from rr_urm.muon import MuonWithAdamW
from rr_urm.urm import URM

from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import ModelContext
from rrcore.contracts.registry import load_registry


def test_registry_lists_model_and_optimizer():
    registry = load_registry(extra_modules=[rr_urm.plugin], entry_point_group=None)
    assert "urm" in registry.components["model"]
    assert "muon" in registry.components["optimizer"]


def test_specs_build_a_model_and_its_optimizer():
    registry = load_registry(extra_modules=[rr_urm.plugin], entry_point_group=None)
    model_spec = registry.get("model", "urm")
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
    model = model_spec.factory(model_spec.make_config(), ModelContext(metadata=metadata, batch_size=1))
    assert isinstance(model, URM)
    # The paper's ARC configuration (4 layers, 512 wide, ConvSwiGLU kernel 2; puzzle embeddings are a buffer).
    assert sum(p.numel() for p in model.parameters()) == 13_663_234

    optimizer_spec = registry.get("optimizer", "muon")
    optimizer = optimizer_spec.factory(
        [{"params": list(model.parameters()), "lr": 1e-4, "weight_decay": 0.1, "betas": (0.9, 0.95)}],
        optimizer_spec.make_config(),
    )
    assert isinstance(optimizer, MuonWithAdamW) and isinstance(optimizer, torch.optim.Optimizer)
    matrices = [p for p in model.parameters() if p.ndim == 2]
    assert sum(len(g["params"]) for g in optimizer.param_groups if g["use_muon"]) == len(matrices)
