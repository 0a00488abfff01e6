"""Muon for weight matrices, AdamW for everything else, as one optimizer.

Muon (Jordan et al., 2024) replaces each 2-D weight's momentum by its
orthogonalised version (a Newton-Schulz iteration pushes every singular value
towards 1) before the step; vectors, convolution kernels and embeddings are left
to AdamW, as Muon setups usually do. The URM paper offers Muon as an alternative
to AdamATan2 with the same learning rate and weight decay for both parts, which
works because the update is rescaled to AdamW's RMS (``adjust_lr =
"match_rms_adamw"``, Moonlight's rule ``0.2 * sqrt(max(rows, cols))``).

This wraps ``torch.optim.Muon`` and ``torch.optim.AdamW``: the parameter groups of
the core (``lr``, ``weight_decay``, ``betas`` from ``[train]``) are split in two,
and both halves stay visible in :attr:`MuonWithAdamW.param_groups`, so the core's
learning-rate schedule reaches both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from rrcore.api import at_least, in_range, positive

_SPLIT_KEYS = ("params", "param_names")


@attrs.define
class MuonConfig:
    """Extra keys of the ``muon`` optimizer (lr, betas, weight decay come from ``[train]``).

    ``momentum``/``nesterov``/``ns_steps``: Muon's momentum and Newton-Schulz
    iterations. ``adjust_lr``: ``match_rms_adamw`` scales the Muon step so its RMS
    matches AdamW's (one lr for both parts); ``original`` uses Keller Jordan's
    ``sqrt(max(1, rows / cols))``. ``adamw_eps``: epsilon of the AdamW part.
    ``adamw_names``: parameters whose name contains one of these stay on AdamW even
    if 2-D (embeddings and output heads); used when the core passes parameter names
    (``param_names`` in a group, or ``(name, tensor)`` pairs), otherwise every 2-D
    parameter goes to Muon.
    """

    momentum: float = attrs.field(default=0.95, validator=in_range(0, 1, high_open=True))
    nesterov: bool = True
    ns_steps: int = attrs.field(default=5, validator=at_least(1))
    adjust_lr: Literal["match_rms_adamw", "original"] = "match_rms_adamw"
    adamw_eps: float = attrs.field(default=1e-8, validator=positive)
    adamw_names: list[str] = attrs.field(factory=lambda: ["embed", "lm_head", "q_head", "puzzle_emb"])


def _named_params(group: dict[str, Any]) -> list[tuple[str | None, Tensor]]:
    params = group["params"]
    params = [params] if isinstance(params, Tensor) else list(params)
    if params and isinstance(params[0], tuple):  # torch's named form: (name, tensor)
        return [(name, tensor) for name, tensor in params]
    names = group.get("param_names") or [None] * len(params)
    return list(zip(names, params, strict=True))


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on 2-D weights, AdamW on the rest (see the module docstring).

    ``param_groups`` lists the Muon groups, then the AdamW groups (the same dicts
    the two inner optimizers use), each with ``use_muon`` set. ``state_dict`` holds
    both inner optimizers' states.
    """

    def __init__(self, param_groups: Iterable[dict[str, Any]], config: MuonConfig | None = None) -> None:
        config = config or MuonConfig()
        muon_groups: list[dict[str, Any]] = []
        adamw_groups: list[dict[str, Any]] = []
        for group in param_groups:
            options = {k: v for k, v in group.items() if k not in _SPLIT_KEYS}
            muon_part, adamw_part = [], []
            for name, param in _named_params(group):
                on_adamw = param.ndim != 2 or (name is not None and any(p in name for p in config.adamw_names))
                (adamw_part if on_adamw else muon_part).append((name, param))
            for part, target, use_muon in ((muon_part, muon_groups, True), (adamw_part, adamw_groups, False)):
                if part:
                    new_group = {**options, "params": [p for _, p in part], "use_muon": use_muon}
                    if all(name is not None for name, _ in part):
                        new_group["param_names"] = [name for name, _ in part]
                    target.append(new_group)

        lr = next(iter(muon_groups + adamw_groups), {}).get("lr", 1e-3)
        self.muon = (
            torch.optim.Muon(
                muon_groups,
                lr=lr,
                momentum=config.momentum,
                nesterov=config.nesterov,
                ns_steps=config.ns_steps,
                adjust_lr_fn=config.adjust_lr,
            )
            if muon_groups
            else None
        )
        self.adamw = torch.optim.AdamW(adamw_groups, lr=lr, eps=config.adamw_eps) if adamw_groups else None
        # The outer optimizer shares the inner group dicts: setting a group's lr here sets it there.
        super().__init__(muon_groups + adamw_groups, defaults={})

    def _inner(self) -> list[torch.optim.Optimizer]:
        return [opt for opt in (self.muon, self.adamw) if opt is not None]

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self._inner():
            optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "muon": self.muon.state_dict() if self.muon is not None else None,
            "adamw": self.adamw.state_dict() if self.adamw is not None else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, optimizer in (("muon", self.muon), ("adamw", self.adamw)):
            if (optimizer is None) != (state_dict.get(key) is None):
                raise ValueError(
                    f"muon optimizer state has {key!r} = {state_dict.get(key) is not None}, "
                    f"this optimizer {'has' if optimizer is not None else 'has no'} {key} part"
                )
            if optimizer is not None:
                optimizer.load_state_dict(state_dict[key])
        # torch rebuilds the group dicts on load: share the new ones again.
        self.param_groups = [group for optimizer in self._inner() for group in optimizer.param_groups]


def make_muon(param_groups: list[dict[str, Any]], config: MuonConfig) -> torch.optim.Optimizer:
    """The ``muon`` optimizer factory: ``(param_groups, config) -> MuonWithAdamW``."""
    return MuonWithAdamW(param_groups, config)
