"""A model that is not TRM-shaped, for the core's tests of ``base =`` composition.

Model ``onepass``: one post-norm block over the input embedding per ACT step, no cycles.
Its ``[model]`` keys are exactly the shared ones of :class:`rrcore.model.model_kit.ReasoningModelConfig`
(width, heads, puzzle embedding, positions, block), so a base file that any model can
compose with must hold no other.
"""

from __future__ import annotations

from rrcore import hookimpl
from rrcore.api import PostNormBlock, ReasoningHeads, ReasoningModel, ReasoningModelConfig
from rrcore.contracts.specs import ModelSpec


class OnePass(ReasoningModel):
    """One block per ACT step on the input embedding; the carry is its output (unused)."""

    def __init__(self, config: ReasoningModelConfig, context) -> None:
        super().__init__(config, context)
        self.block = PostNormBlock.from_config(config)
        self.heads = ReasoningHeads(config.hidden_size, context.metadata.vocab_size, self.embed_input.puzzle_emb_len)
        self.register_carry(z="z_init")

    def forward(self, carry, batch):
        rotary = self.embed_input.rotary()
        z = self.block(carry["z"] + self.embed_input(batch["inputs"], batch["puzzle_identifiers"]), rotary)
        return {"z": z.detach()}, self.heads(z)


@hookimpl
def rr_register_models():
    return [ModelSpec(name="onepass", factory=OnePass, config_class=ReasoningModelConfig, description="test model")]
