"""ToTRM: a tree-of-thought TRM that explores several latents per answer update.

TRM refines one latent ``z_L`` per answer update. ToTRM lets it branch: on each
of the first ``tree_branching_steps`` L-cycles of a latent recursion every
latent is copied twice and each copy gets its own learned branch embedding
added, so after n branching steps ``2**n`` latents are reasoned about in
parallel (as extra batch rows, (B * width, S, D)) from the same answer and input.
After the L-cycles the branches are merged back into one latent:

* ``mean``: their average;
* ``max``: the element-wise maximum;
* ``learned_weighted``: a softmax over branches of a learned score per branch,
  ``score = w · mean_over_positions(z_L) + b[branch]`` (w and b start at zero, so
  the merge starts as the mean and learns which branches, by content or by
  position in the tree, deserve more weight).

The answer ``z_H`` is then updated from the merged latent as in TRM, and the
carry keeps only merged states (B, S, D): between H-cycles and ACT steps the
tree collapses, and each H-cycle grows a new one. Branch embeddings are per
branching step, shaped (tree_branching_steps, 2, D), broadcast over positions,
and drawn with std 1 like the initial states so the copies start as distinct
as two fresh latents. The cost of an L-cycle grows with the width, so
``tree_branching_steps`` of 2-3 is the practical range.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from rr_trm.trm import TRM, TRMConfig
from rrcore.api import ModelContext, StateRecord, non_negative, record_state, trunc_normal_

TreeMerge = Literal["mean", "max", "learned_weighted"]


@attrs.define
class ToTRMConfig(TRMConfig):
    """The ``[model]`` keys of ``plugin = "totrm"``: TRM's keys plus the tree's.

    ``tree_branching_steps``: how many of the first L-cycles double the number of
    latents (at most ``L_cycles``); ``tree_merge``: ``mean``, ``max`` or
    ``learned_weighted``.
    """

    tree_branching_steps: int = attrs.field(default=2, validator=non_negative)
    tree_merge: TreeMerge = "mean"


class BranchMerge(nn.Module):
    """Merges (B, W, S, D) branch latents into (B, S, D)."""

    def __init__(self, mode: TreeMerge, width: int, hidden_size: int) -> None:
        super().__init__()
        if mode not in ("mean", "max", "learned_weighted"):
            raise ValueError(f"tree_merge must be 'mean', 'max' or 'learned_weighted', got {mode!r}")
        self.mode = mode
        if mode == "learned_weighted":
            self.score = nn.Parameter(torch.zeros(hidden_size))
            self.branch_bias = nn.Parameter(torch.zeros(width))

    def forward(self, branches: Tensor) -> Tensor:
        if self.mode == "mean":
            return branches.mean(dim=1)
        if self.mode == "max":
            return branches.amax(dim=1)
        pooled = branches.mean(dim=2).float()  # (B, W, D)
        weights = torch.softmax(pooled @ self.score + self.branch_bias, dim=1)  # (B, W)
        return (weights.to(branches.dtype)[:, :, None, None] * branches).sum(dim=1)


class ToTRM(TRM):
    """TRM whose latent recursion branches into ``2**tree_branching_steps`` latents."""

    def __init__(self, config: ToTRMConfig, context: ModelContext) -> None:
        if config.tree_branching_steps > config.L_cycles:
            raise ValueError(
                f"tree_branching_steps ({config.tree_branching_steps}) cannot exceed "
                f"L_cycles ({config.L_cycles}): branching happens on L-cycles"
            )
        super().__init__(config, context)
        self.width = 2**config.tree_branching_steps
        self.branch_emb = nn.Parameter(
            trunc_normal_(torch.empty(config.tree_branching_steps, 2, config.hidden_size), std=1.0)
        )
        self.merge = BranchMerge(config.tree_merge, self.width, config.hidden_size)

    def latent_recursion(
        self,
        x: Tensor,
        z_H: Tensor,
        z_L: Tensor,
        rotary: tuple[Tensor, Tensor] | None,
        record: StateRecord | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Like TRM's, with z_L branching on the first L-cycles and merged before z_H's update.

        Recording sees the merged z_L once per recursion (branches are batch rows until then)."""
        batch, seq, hidden = z_L.shape
        injection = z_H + x  # (B, S, D), the same for every branch of a row
        width = 1
        for step in range(self.config.L_cycles):
            if step < self.config.tree_branching_steps:
                # (B, w, 1, S, D) + (2, 1, D) -> (B, w, 2, S, D): two children per branch.
                children = z_L.view(batch, width, 1, seq, hidden) + self.branch_emb[step].to(z_L.dtype)[:, None, :]
                width *= 2
                z_L = children.reshape(batch * width, seq, hidden)
            branch_injection = injection.unsqueeze(1).expand(batch, width, seq, hidden).reshape(z_L.shape)
            z_L = self.net(z_L, branch_injection, rotary)
        z_L = self.merge(z_L.view(batch, width, seq, hidden))  # (B, S, D)
        record_state(record, "z_L", z_L)
        z_H = self.net(z_H, z_L, rotary)
        record_state(record, "z_H", z_H)
        return z_H, z_L
