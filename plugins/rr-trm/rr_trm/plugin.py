"""rr-trm's hook implementations: registers the ``trm``, ``totrm`` and ``transformer`` models."""

from __future__ import annotations

from rr_trm.totrm import ToTRM, ToTRMConfig
from rr_trm.transformer import Transformer, TransformerConfig
from rr_trm.trm import TRM, TRMConfig
from rrcore.api import ModelSpec, hookimpl


@hookimpl
def rr_register_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            name="trm",
            factory=TRM,
            config_class=TRMConfig,
            description="Tiny Recursive Model (attention or mlp_t), arXiv 2510.04871",
        ),
        ModelSpec(
            name="totrm",
            factory=ToTRM,
            config_class=ToTRMConfig,
            description="tree-of-thought TRM: latents branch on the first L-cycles, then merge",
        ),
        ModelSpec(
            name="transformer",
            factory=Transformer,
            config_class=TransformerConfig,
            description="baseline: TRM's blocks once per ACT step, no recursion",
        ),
    ]
