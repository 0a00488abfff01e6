"""Registration of the ``urm`` model and the ``muon`` optimizer (entry point ``urm = "rr_urm.plugin"``)."""

from __future__ import annotations

from rr_urm.muon import MuonConfig, make_muon
from rr_urm.urm import URM, URMConfig
from rrcore.api import ModelSpec, OptimizerSpec, hookimpl


@hookimpl
def rr_register_models() -> list[ModelSpec]:
    """The URM inner recurrence; ``[act] halt_max_steps`` is the paper's ``loops``."""
    return [
        ModelSpec(
            name="urm",
            factory=URM,
            config_class=URMConfig,
            description="Universal Reasoning Model: shared-weight transformer with ConvSwiGLU "
            "and truncated backpropagation through loops (arXiv 2512.14693)",
        )
    ]


@hookimpl
def rr_register_optimizers() -> list[OptimizerSpec]:
    """Muon on weight matrices with AdamW on the rest, the URM paper's optional optimizer."""
    return [
        OptimizerSpec(
            name="muon",
            factory=make_muon,
            config_class=MuonConfig,
            description="Muon (Newton-Schulz orthogonalised momentum) for 2-D weights, "
            "AdamW for vectors and embeddings",
        )
    ]
