"""Checkpoints written before URM moved onto rrcore.model.model_kit still load: its state-dict names
and shapes are those recorded from the code before that change (vocab 6, 5 positions,
3 puzzle identifiers)."""

from __future__ import annotations

import torch
from rr_urm.urm import URM, URMConfig

from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import ModelContext


def block(index: int) -> dict[str, tuple[int, ...]]:
    prefix = f"blocks.{index}"
    return {
        f"{prefix}.mixer.qkv_proj.weight": (48, 16),
        f"{prefix}.mixer.o_proj.weight": (16, 16),
        f"{prefix}.mlp.conv_weight": (256, 1, 2),
        f"{prefix}.mlp.conv_bias": (256,),
        f"{prefix}.mlp.gate_up_proj.weight": (512, 16),
        f"{prefix}.mlp.down_proj.weight": (16, 256),
    }


def test_state_dict_names_and_shapes_are_unchanged() -> None:
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
    config = URMConfig(hidden_size=16, num_heads=2, expansion=2.0, puzzle_emb_ndim=16, num_layers=2)
    model = URM(config, ModelContext(metadata, 4, torch.float32))
    layout = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert layout == {
        "init_hidden": (16,),
        "embed_input.embed_tokens.weight": (6, 16),
        "embed_input.puzzle_emb.weights": (3, 16),
        **block(0),
        **block(1),
        "heads.lm_head.weight": (6, 16),
        "heads.q_head.weight": (2, 16),
        "heads.q_head.bias": (2,),
    }
