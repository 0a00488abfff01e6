"""What TRM-MLP's compiled ACT step keeps for backward, read from torch.compile's partition.

The partitioner decides which forward values the backward pass keeps: at the paper's
batch of 768 that is most of TRM-MLP's peak memory on the GPU. The step is traced and
partitioned on CPU at a tiny size (no kernels are generated), at two batch sizes: the
difference is what the step keeps per example (weights cancel), compared with what the
differentiated blocks' backward needs at least: each SwiGLU's input and gate/up
activations, each RMSNorm's input and statistics.
"""

from __future__ import annotations

import pytest
import torch
from rr_trm.trm import TRM, TRMConfig
from torch import fx

from rrcore.api import model_context
from rrcore.contracts.experiment import ACTConfig
from rrcore.model.act import ACTModel
from rrcore.model.act_loss import ACTLossHead
from rrcore.model.layers import swiglu_width

inductor_config = pytest.importorskip("torch._inductor.config")
if getattr(inductor_config, "custom_partitioner_fn", "missing") == "missing":
    pytest.skip("needs torch's inductor custom_partitioner_fn", allow_module_level=True)

from torch._functorch.partitioners import min_cut_rematerialization_partition  # noqa: E402
from torch._inductor.custom_graph_pass import CustomPartitionerFn  # noqa: E402

BATCH, SEQ, VOCAB, PREFIX, HIDDEN = 3, 9, 6, 2, 32
L_LAYERS, H_CYCLES, L_CYCLES = 2, 2, 2
POSITIONS = SEQ + PREFIX
BF16, FP32 = 2, 4


class Partitioned(Exception):
    """Raised once the whole step is partitioned: generating kernels is not needed."""


class RecordingPartitioner(CustomPartitionerFn):
    """Inductor's own partitioner, keeping each (forward, backward) pair it returns."""

    def __init__(self) -> None:
        self.partitions: list[tuple[fx.GraphModule, fx.GraphModule]] = []

    def __call__(self, gm, joint_inputs, **kwargs):
        forward, backward = min_cut_rematerialization_partition(gm, joint_inputs, **kwargs)
        self.partitions.append((forward, backward))
        raise Partitioned  # the whole step is one graph (blocks with gradients are inlined)

    def uuid(self):
        return None


def _saved(backward: fx.GraphModule) -> list[fx.Node]:
    """The backward graph's inputs other than incoming gradients: what the forward keeps."""
    return [n for n in backward.graph.find_nodes(op="placeholder") if not n.name.startswith("tangents")]


def _bytes(node: fx.Node) -> int:
    value = node.meta["val"]
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


def _kept_per_example(recompute: str, h_cycles: int = H_CYCLES) -> int:
    """Bytes per example the step keeps for backward: the difference between two batch sizes."""
    kept = []
    for batch in (BATCH, 2 * BATCH):
        ((_, backward),) = _partition_step(recompute, batch, h_cycles).partitions
        kept.append(sum(_bytes(n) for n in _saved(backward)))
    return (kept[1] - kept[0]) // BATCH


def _partition_step(recompute: str, batch: int, h_cycles: int) -> RecordingPartitioner:
    recorder = RecordingPartitioner()
    # No cache: a cached compilation would skip the partitioner.
    with (
        inductor_config.patch(custom_partitioner_fn=recorder, fx_graph_cache=False),
        torch._functorch.config.patch(enable_autograd_cache=False),
    ):
        _compile_step(recompute, batch, h_cycles)
    return recorder


def _compile_step(recompute: str, batch_size: int, h_cycles: int) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    context = model_context(VOCAB, SEQ, batch_size=batch_size, forward_dtype=torch.bfloat16)
    config = TRMConfig(
        hidden_size=HIDDEN,
        num_heads=2,
        expansion=4.0,
        puzzle_emb_ndim=HIDDEN,
        puzzle_emb_len=PREFIX,
        L_layers=L_LAYERS,
        H_cycles=h_cycles,
        L_cycles=L_CYCLES,
        mlp_t=True,
        pos_encodings="none",
        recompute=recompute,
    )
    head = ACTLossHead(ACTModel(TRM(config, context), ACTConfig(halt_max_steps=4))).train()
    batch = {
        "inputs": torch.randint(1, VOCAB, (batch_size, SEQ), dtype=torch.int32),
        "labels": torch.randint(1, VOCAB, (batch_size, SEQ)),
        "puzzle_identifiers": torch.zeros(batch_size, dtype=torch.int32),
    }
    step = torch.compile(head, dynamic=False)
    try:
        step(head.initial_carry(batch), batch, torch.zeros(batch_size, dtype=torch.int32))
    except Exception as error:  # dynamo wraps what the backend raises
        if not isinstance(error, Partitioned) and "Partitioned" not in repr(error):
            raise
    finally:
        torch._dynamo.reset()


def _needed_activation_bytes() -> int:
    """Per example, what one block's backward needs at least without repeating a matrix
    product: both SwiGLUs' inputs and gate/up activations, both norms' inputs and statistics."""
    seq_width, channel_width = swiglu_width(POSITIONS, 4.0), swiglu_width(HIDDEN, 4.0)
    swiglu_inputs = 2 * POSITIONS * HIDDEN
    gate_up = HIDDEN * 2 * seq_width + POSITIONS * 2 * channel_width
    norm_inputs = 2 * POSITIONS * HIDDEN
    return BF16 * (swiglu_inputs + gate_up + norm_inputs) + FP32 * (HIDDEN + POSITIONS)


def _product_bytes() -> int:
    """Per example, both SwiGLUs' silu(gate) * up."""
    return BF16 * (HIDDEN * swiglu_width(POSITIONS, 4.0) + POSITIONS * swiglu_width(HIDDEN, 4.0))


HEAD_BYTES = 2048  # per example: what the heads and the loss keep (about 1 KB at these sizes)


@pytest.mark.parametrize(("recompute", "kept_products"), [("swiglu_products", False), ("none", True)])
def test_the_differentiated_blocks_keep_only_what_their_backward_needs(recompute, kept_products):
    kept = _kept_per_example(recompute)
    grad_blocks = L_LAYERS * (L_CYCLES + 1)
    needed = grad_blocks * (_needed_activation_bytes() + kept_products * _product_bytes()) + HEAD_BYTES
    assert kept <= needed, (
        f"with recompute={recompute!r} TRM-MLP's step keeps {kept} bytes per example for backward, "
        f"more than the {needed} its {grad_blocks} differentiated blocks and heads need"
    )


def test_cycles_without_gradients_keep_nothing():
    kept = {h_cycles: _kept_per_example("swiglu_products", h_cycles) for h_cycles in (H_CYCLES, H_CYCLES + 1)}
    assert kept[H_CYCLES + 1] == kept[H_CYCLES], f"one more cycle without gradients keeps more: {kept}"


def test_recomputing_the_products_leaves_losses_and_gradients_bit_for_bit_the_same():
    def loss_and_gradients(recompute: str) -> list[torch.Tensor]:
        torch.manual_seed(0)
        context = model_context(VOCAB, SEQ, batch_size=BATCH, forward_dtype=torch.bfloat16)
        config = TRMConfig(
            hidden_size=HIDDEN, num_heads=2, puzzle_emb_ndim=HIDDEN, puzzle_emb_len=PREFIX, L_layers=L_LAYERS,
            H_cycles=H_CYCLES, L_cycles=L_CYCLES, mlp_t=True, pos_encodings="none", recompute=recompute,
        )  # fmt: skip
        head = ACTLossHead(ACTModel(TRM(config, context), ACTConfig(halt_max_steps=4))).train()
        generator = torch.Generator().manual_seed(1)
        batch = {
            "inputs": torch.randint(1, VOCAB, (BATCH, SEQ), dtype=torch.int32, generator=generator),
            "labels": torch.randint(1, VOCAB, (BATCH, SEQ), generator=generator),
            "puzzle_identifiers": torch.zeros(BATCH, dtype=torch.int32),
        }
        _, loss, *_ = head(head.initial_carry(batch), batch, torch.zeros(BATCH, dtype=torch.int32))
        loss.backward()
        return [loss.detach()] + [p.grad for p in head.parameters() if p.grad is not None]

    kept, recomputed = loss_and_gradients("none"), loss_and_gradients("swiglu_products")
    assert len(kept) == len(recomputed) > 5
    for a, b in zip(kept, recomputed):
        assert torch.equal(a, b), "recomputing silu(gate) * up in backward changed the numbers"
