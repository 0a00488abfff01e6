"""Registration of the ``hrm`` model (entry point ``hrm = "rr_hrm.plugin"``)."""

from __future__ import annotations

from rr_hrm.hrm import HRM, HRMConfig
from rrcore.api import ModelSpec, hookimpl


@hookimpl
def rr_register_models() -> list[ModelSpec]:
    """The HRM inner recurrence; pair it with ``[act] q_continue = true`` as the paper does."""
    return [
        ModelSpec(
            name="hrm",
            factory=HRM,
            config_class=HRMConfig,
            description="Hierarchical Reasoning Model: slow H and fast L modules, one-step gradient (arXiv 2506.21734)",
        )
    ]
