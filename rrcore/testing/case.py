"""A model plugin under test: how the kit builds it and a batch for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from rrcore.contracts.protocols import ModelContext
from rrcore.contracts.registry import Registry, get_registry
from rrcore.contracts.specs import Spec
from rrcore.data.format import IGNORE_LABEL
from rrcore.model.model_kit import model_context


@attrs.define
class ModelCase:
    """A model plugin under test: how to build it and a batch for it.

    ``build(seed)`` makes a fresh model with ``torch.manual_seed(seed)`` on ``device``;
    ``batch(seed)`` a random training batch of ``batch_size`` rows shaped as the core's
    reader gives them.
    """

    name: str
    spec: Spec
    config: Any
    context: ModelContext
    device: torch.device
    registry: Registry

    def build(self, seed: int = 0, config: Any = None) -> nn.Module:
        torch.manual_seed(seed)
        model = self.spec.factory(self.config if config is None else config, self.context)
        if not isinstance(model, nn.Module):
            raise AssertionError(
                f"model {self.name!r}: the factory returned {type(model).__name__}; "
                f"the core expects a torch.nn.Module (rrcore.contracts.protocols.Model)"
            )
        return model.to(self.device)

    def batch(self, seed: int = 0) -> dict[str, Tensor]:
        metadata = self.context.metadata
        rows, length = self.context.batch_size, metadata.seq_len
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, metadata.vocab_size, (rows, length), generator=generator)
        labels[:, -1] = IGNORE_LABEL  # as padding positions are
        batch = {
            "inputs": torch.randint(0, metadata.vocab_size, (rows, length), generator=generator, dtype=torch.int32),
            "labels": labels,
            "puzzle_identifiers": torch.randint(
                0, metadata.num_puzzle_identifiers, (rows,), generator=generator, dtype=torch.int32
            ),
        }
        return {key: value.to(self.device) for key, value in batch.items()}

    def fail(self, problem: str, expected: str) -> AssertionError:
        return AssertionError(f"model {self.name!r}: {problem}; the core expects {expected}")

    @property
    def predicts_q_continue(self) -> bool:
        """The model's declaration (``predicts_q_continue``, read as experiment validation
        reads it: from the registered factory), False when it declares nothing, as
        ``[act] q_continue`` then defaults to false."""
        return bool(self.spec.predicts_q_continue)


def model_case(
    plugin: str,
    config: Mapping[str, Any] | Any = None,
    *,
    registry: Registry | None = None,
    vocab_size: int = 7,
    seq_len: int = 6,
    num_puzzle_identifiers: int = 3,
    batch_size: int = 4,
    device: str | torch.device | None = None,
) -> ModelCase:
    """The model ``plugin`` with ``config`` (a dict of ``[model]`` keys, or a config instance) for
    a synthetic data set of this shape. ``device``: default CUDA when present, else CPU."""
    registry = registry or get_registry()
    spec = registry.get("model", plugin)
    if config is None or isinstance(config, Mapping):
        config = spec.make_config(**dict(config or {}))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # as the trainer chooses
    context = model_context(
        vocab_size, seq_len, num_puzzle_identifiers=num_puzzle_identifiers, batch_size=batch_size, forward_dtype=dtype
    )
    return ModelCase(plugin, spec, config, context, device, registry)
