"""Checkpoints written before the models moved onto rrcore.model.model_kit still load: the state-dict
names and shapes of TRM, ToTRM and the transformer baseline are those recorded from the
code before that change (same tiny configs: vocab 6, 5 positions, 3 puzzle identifiers)."""

from __future__ import annotations

import pytest
from rr_trm.totrm import ToTRM, ToTRMConfig
from rr_trm.transformer import Transformer, TransformerConfig
from rr_trm.trm import TRM, TRMConfig

from rrcore.api import model_context

TINY = dict(hidden_size=16, num_heads=2, expansion=2.0, puzzle_emb_ndim=16, puzzle_emb_len=2)
CYCLES = dict(L_layers=1, H_cycles=2, L_cycles=2)

ATTENTION_BLOCK = {
    "net.blocks.0.mixer.qkv_proj.weight": (48, 16),
    "net.blocks.0.mixer.o_proj.weight": (16, 16),
    "net.blocks.0.mlp.gate_up_proj.weight": (512, 16),
    "net.blocks.0.mlp.down_proj.weight": (16, 256),
}
TRM_KEYS = {
    "H_init": (16,),
    "L_init": (16,),
    "embed.embed_tokens.weight": (6, 16),
    "embed.puzzle_emb.weights": (3, 16),
    **ATTENTION_BLOCK,
    "heads.lm_head.weight": (6, 16),
    "heads.q_head.weight": (2, 16),
    "heads.q_head.bias": (2,),
}
RECORDED = {
    "trm": TRM_KEYS,
    "trm_mlp_t_learned": {
        **{k: v for k, v in TRM_KEYS.items() if "mixer" not in k},
        "embed.embed_pos.weight": (7, 16),
        "net.blocks.0.mixer.mlp.gate_up_proj.weight": (512, 7),
        "net.blocks.0.mixer.mlp.down_proj.weight": (7, 256),
    },
    "totrm": {**TRM_KEYS, "branch_emb": (1, 2, 16), "merge.score": (16,), "merge.branch_bias": (2,)},
    "transformer": {
        "embed.embed_tokens.weight": (6, 16),
        "embed.puzzle_emb.weights": (3, 16),
        **{key.replace("net.blocks.0", f"blocks.{i}"): shape for i in (0, 1) for key, shape in ATTENTION_BLOCK.items()},
        "heads.lm_head.weight": (6, 16),
        "heads.q_head.weight": (2, 16),
        "heads.q_head.bias": (2,),
    },
}


def build(name: str):
    context = model_context(6, 5, num_puzzle_identifiers=3, batch_size=4)
    if name == "trm":
        return TRM(TRMConfig(**TINY, **CYCLES), context)
    if name == "trm_mlp_t_learned":
        return TRM(TRMConfig(**TINY, **CYCLES, mlp_t=True, pos_encodings="learned"), context)
    if name == "totrm":
        return ToTRM(ToTRMConfig(**TINY, **CYCLES, tree_branching_steps=1, tree_merge="learned_weighted"), context)
    return Transformer(TransformerConfig(**TINY, num_layers=2), context)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_state_dict_names_and_shapes_are_unchanged(name: str) -> None:
    layout = {key: tuple(value.shape) for key, value in build(name).state_dict().items()}
    assert layout == RECORDED[name]
