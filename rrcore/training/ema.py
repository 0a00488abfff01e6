"""Exponential moving average of a module's parameters, used for evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """Shadow copies of every parameter, updated as ``shadow += (1 - rate) * (param - shadow)``.

    Buffers (e.g. the sign-SGD puzzle embedding table) are not averaged: evaluation
    uses them as trained. Before optimizer step ``start_step`` the shadow copies the
    weights instead (a short-horizon average, such as rate 0.9, is of no use while the
    weights still move fast).
    """

    def __init__(self, module: nn.Module, rate: float, start_step: int = 0) -> None:
        self.rate = rate
        self.start_step = start_step
        self.names = [name for name, _ in module.named_parameters()]
        self.shadow = [p.detach().clone() for _, p in module.named_parameters()]

    @torch.no_grad()
    def update(self, module: nn.Module, step: int | None = None) -> None:
        """Average in the weights after optimizer step ``step`` (0-based; None: always average)."""
        params = [p.detach() for p in module.parameters()]
        if step is not None and step < self.start_step:
            torch._foreach_copy_(self.shadow, params)
        else:
            torch._foreach_lerp_(self.shadow, params, 1.0 - self.rate)

    @contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """Within the block the module holds the averaged weights; restored afterwards."""
        params = list(module.parameters())
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, s in zip(params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.shadow))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}")
        with torch.no_grad():
            for name, s in zip(self.names, self.shadow):
                s.copy_(state[name])
