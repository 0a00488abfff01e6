"""What each rank checkpoints of its own (``rank<N>.pt``): its ACT carries and random generators."""

from __future__ import annotations

from typing import Any

import torch

from rrcore.model.carry import Carry


class Carries(list):
    """The ACT carry of each micro-batch on this rank (empty before the first step); a
    checkpoint part of each rank."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device

    def state_dict(self) -> list[dict[str, Any]]:
        return [carry._asdict() for carry in self]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        self[:] = [Carry(**carry).to(self.device) for carry in state]


class RandomState:
    """This rank's random generators: torch's (CPU and CUDA), ACT exploration's and, when
    the data set plugin augments batches, the batch augmenter's; a checkpoint part of each rank."""

    def __init__(
        self, exploration: torch.Generator, device: torch.device, augmentation: torch.Generator | None = None
    ) -> None:
        self.exploration, self.device, self.augmentation = exploration, device, augmentation

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        state = {"torch": torch.get_rng_state(), "cuda": cuda, "exploration": self.exploration.get_state()}
        if self.augmentation is not None:
            state["augmentation"] = self.augmentation.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)
        self.exploration.set_state(state["exploration"])
        # A checkpoint saved without batch augmentation leaves the generator at its seed.
        if self.augmentation is not None and state.get("augmentation") is not None:
            self.augmentation.set_state(state["augmentation"])
