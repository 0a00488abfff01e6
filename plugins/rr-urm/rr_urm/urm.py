"""The Universal Reasoning Model (Gao et al., 2025, arXiv 2512.14693), one ACT step.

URM is a universal transformer: one stack of ``num_layers`` post-norm blocks whose
weights are shared across every application. A single latent sequence ``hidden``
is refined by applying the stack again and again, the input embedding added
before each application::

    for H in range(H_cycles):          # the first H_cycles - 1 without gradient
        for L in range(L_cycles):
            hidden = blocks(hidden + input_embedding)

Two things distinguish it from a plain universal transformer:

* **ConvSwiGLU** feed-forward (:class:`ConvSwiGLU`): SwiGLU whose gated features
  pass through a depthwise 1-D convolution along the sequence (kernel 2 in the
  paper) and a SiLU before the down projection, mixing neighbouring tokens inside
  the non-linear path.
* **Truncated backpropagation through loops** (TBPTL): the first ``H_cycles - 1``
  cycles (``(H_cycles - 1) * L_cycles`` stack applications) run under
  ``torch.no_grad``; only the last ``L_cycles`` applications carry gradient. With
  the paper's H_cycles = 2, L_cycles = 6 that is 6 forward-only and 6
  differentiated applications per ACT step.

The paper's ``loops`` (ACT steps per example, 16) is the core's ``[act]
halt_max_steps``; halting, exploration and step counting are
:class:`rrcore.model.act.ACTModel`'s (URM halts on ``q_halt > 0``, no Q-continue).

Inference-time scaling: ``eval_extra_H_cycles`` runs that many more cycles per ACT
step when the module is in eval mode. Because evaluation always runs
``halt_max_steps`` ACT steps and the recurrence is the same function at every
cycle, ``halt_max_steps * (H_cycles + e)`` cycles equal the reference's
evaluation at ``loops + delta`` ACT steps when ``e * halt_max_steps = delta *
H_cycles``: with 16 steps and H_cycles = 2, ``eval_extra_H_cycles = 1`` is the
reference's ``loop_deltas = [8]`` (24 ACT steps).
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rrcore.api import (
    Batch,
    CastedLinear,
    InnerCarry,
    ModelContext,
    Outputs,
    PostNormBlock,
    ReasoningHeads,
    ReasoningModel,
    ReasoningModelConfig,
    StateRecord,
    StateRecorder,
    at_least,
    non_negative,
    record_state,
    swiglu_width,
)


@attrs.define
class URMConfig(ReasoningModelConfig):
    """The ``[model]`` keys of ``plugin = "urm"``: the shared keys
    (:class:`rrcore.model.model_kit.ReasoningModelConfig`) and these.

    ``num_layers`` post-norm blocks form the shared stack; one ACT step applies it
    ``H_cycles * L_cycles`` times, differentiating only the last ``L_cycles``
    applications. ``conv_kernel`` is the ConvSwiGLU depthwise kernel width.
    ``eval_extra_H_cycles`` extra cycles per ACT step in eval mode (inference-time
    scaling; see the module docstring for the correspondence with ``loop_deltas``).
    """

    num_layers: int = attrs.field(default=4, validator=at_least(1))
    H_cycles: int = attrs.field(default=2, validator=at_least(1))
    L_cycles: int = attrs.field(default=6, validator=at_least(1))
    conv_kernel: int = attrs.field(default=2, validator=at_least(1))
    eval_extra_H_cycles: int = attrs.field(default=0, validator=non_negative)


class ConvSwiGLU(nn.Module):
    """SwiGLU with a depthwise convolution along the sequence on the gated features.

    ``down(silu(dwconv(silu(gate(x)) * up(x))))`` (the paper's eq. for ConvSwiGLU):
    the convolution has one filter of ``kernel_size`` taps (plus a bias) per inner
    channel, so it mixes tokens but not channels. Output position ``t`` sees gated
    features at positions ``t - kernel_size // 2 ... t + (kernel_size - 1 - kernel_size // 2)``
    (zero beyond the ends): for the paper's kernel 2 that is ``t - 1`` and ``t``,
    the reference's placement (pad ``kernel_size // 2`` on both sides, keep the first
    L outputs). The inner width is SwiGLU's (2/3 of ``expansion * hidden`` rounded up
    to 256). Convolution weights are float32 parameters cast to the activation dtype
    at use (the reference kept them in bf16, so its optimizer updated bf16 weights).
    Initialisation is torch's Conv1d default, as in the reference: weights and bias
    uniform in ``±1/sqrt(kernel_size)``.
    """

    def __init__(self, hidden_size: int, expansion: float, kernel_size: int = 2) -> None:
        super().__init__()
        width = swiglu_width(hidden_size, expansion)
        self.kernel_size = kernel_size
        self.gate_up_proj = CastedLinear(hidden_size, 2 * width)
        bound = 1.0 / math.sqrt(kernel_size)
        self.conv_weight = nn.Parameter(torch.empty(width, 1, kernel_size).uniform_(-bound, bound))
        self.conv_bias = nn.Parameter(torch.empty(width).uniform_(-bound, bound))
        self.down_proj = CastedLinear(width, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        gated = F.silu(gate) * up  # (B, L, W)
        # The depthwise convolution written as a sum of shifted copies in (B, L, W) layout:
        # the same result as F.conv1d on the transposed tensor, but element-wise, so the
        # compiler fuses it with the SiLUs instead of transposing twice around a conv kernel.
        weight = self.conv_weight.to(gated.dtype)[:, 0]  # (W, kernel)
        mixed = self.conv_bias.to(gated.dtype)
        length = gated.shape[1]
        for tap in range(self.kernel_size):
            offset = tap - self.kernel_size // 2  # this tap reads position t + offset
            if offset < 0:
                shifted = F.pad(gated[:, : length + offset], (0, 0, -offset, 0))
            elif offset > 0:
                shifted = F.pad(gated[:, offset:], (0, 0, 0, offset))
            else:
                shifted = gated
            mixed = mixed + shifted * weight[:, tap]
        return self.down_proj(F.silu(mixed))


class URM(StateRecorder, ReasoningModel):
    """URM's inner recurrence (:class:`rrcore.contracts.protocols.Model`): one ACT step per call.

    The carry holds ``hidden``, (B, puzzle_emb_len + seq_len, hidden_size) in the
    forward dtype; reset rows restart from ``init_hidden``, one vector drawn once
    with std 1 (a buffer, as in the paper's code) broadcast over every position.
    ``recording_states()`` records ``hidden`` after every application of the stack
    (H_cycles * L_cycles per step; :class:`rrcore.contracts.protocols.RecordsStates`).
    """

    def __init__(self, config: URMConfig, context: ModelContext) -> None:
        super().__init__(config, context)
        self.blocks = nn.ModuleList(
            PostNormBlock.from_config(config, mlp=ConvSwiGLU(config.hidden_size, config.expansion, config.conv_kernel))
            for _ in range(config.num_layers)
        )
        self.heads = ReasoningHeads(config.hidden_size, context.metadata.vocab_size, self.embed_input.puzzle_emb_len)
        self.register_carry(hidden="init_hidden")

    # -- one ACT step ------------------------------------------------------------------

    def cycle(
        self, hidden: Tensor, x: Tensor, rotary: tuple[Tensor, Tensor] | None, record: StateRecord | None = None
    ) -> Tensor:
        """One H-cycle: ``L_cycles`` applications of the shared stack with input injection."""
        for _ in range(self.config.L_cycles):
            hidden = hidden + x
            for block in self.blocks:
                hidden = block(hidden, rotary)
            record_state(record, "hidden", hidden)
        return hidden

    def forward(self, carry: InnerCarry, batch: Batch) -> tuple[InnerCarry, Outputs]:
        """``H_cycles`` cycles (more in eval mode); gradient only through the last one."""
        H_cycles = self.config.H_cycles
        if not self.training:
            H_cycles += self.config.eval_extra_H_cycles
        rotary = self.embed_input.rotary()
        x = self.embed_input(batch["inputs"], batch["puzzle_identifiers"])  # (B, P + L, D)
        hidden = carry["hidden"]
        record = self.new_state_record()

        # Truncated backpropagation through loops: the early cycles only move the state.
        with torch.no_grad():
            for _ in range(H_cycles - 1):
                hidden = self.cycle(hidden, x, rotary, record)
        hidden = self.cycle(hidden, x, rotary, record)

        outputs = self.heads(hidden)
        return {"hidden": hidden.detach()}, outputs
