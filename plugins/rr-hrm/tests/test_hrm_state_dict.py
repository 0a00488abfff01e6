"""Checkpoints written before HRM moved onto rrcore.model.model_kit still load: its state-dict names
and shapes are those recorded from the code before that change (vocab 6, 5 positions,
3 puzzle identifiers)."""

from __future__ import annotations

import torch
from rr_hrm import HRM, HRMConfig

from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import ModelContext


def level(name: str) -> dict[str, tuple[int, ...]]:
    return {
        f"{name}.blocks.0.mixer.qkv_proj.weight": (48, 16),
        f"{name}.blocks.0.mixer.o_proj.weight": (16, 16),
        f"{name}.blocks.0.mlp.gate_up_proj.weight": (512, 16),
        f"{name}.blocks.0.mlp.down_proj.weight": (16, 256),
    }


HEADS = {"heads.lm_head.weight": (6, 16), "heads.q_head.weight": (2, 16), "heads.q_head.bias": (2,)}


def layout(**overrides) -> dict[str, tuple[int, ...]]:
    metadata = DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=6,
        seq_len=5,
        num_puzzle_identifiers=3,
        total_groups=3,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )
    config = HRMConfig(
        **{**dict(hidden_size=16, num_heads=2, expansion=2.0, puzzle_emb_ndim=16, H_layers=1, L_layers=1), **overrides}
    )
    model = HRM(config, ModelContext(metadata, 4, torch.float32))
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def test_state_dict_names_and_shapes_are_unchanged() -> None:
    assert layout() == {
        "H_init": (16,),
        "L_init": (16,),
        "embed_input.embed_tokens.weight": (6, 16),
        "embed_input.puzzle_emb.weights": (3, 16),
        **level("H_level"),
        **level("L_level"),
        **HEADS,
    }
    assert layout(puzzle_emb_ndim=0, pos_encodings="learned") == {
        "H_init": (16,),
        "L_init": (16,),
        "embed_input.embed_tokens.weight": (6, 16),
        "embed_input.embed_pos.weight": (5, 16),
        **level("H_level"),
        **level("L_level"),
        **HEADS,
    }
