"""What TRM-MLP's compiled ACT step keeps for backward, read from torch.compile's partition.

The partitioner decides which forward values the backward pass keeps: at the paper's
batch of 768 that is most of TRM-MLP's peak memory on the GPU. The step is traced and
partitioned on CPU at a tiny size (no kernels are generated), and the values kept by
one differentiated block are compared with what its backward needs at least: each
SwiGLU's input and gate/up activations, each RMSNorm's input and statistics.
"""

from __future__ import annotations

import operator

import pytest
import torch
from rr_trm.params import model_context
from rr_trm.trm import TRM, TRMConfig
from torch import fx

from rrcore.act import ACTConfig, ACTLossHead, ACTModel
from rrcore.nn import swiglu_width

inductor_config = pytest.importorskip("torch._inductor.config")
if getattr(inductor_config, "custom_partitioner_fn", "missing") == "missing" or not hasattr(
    torch.compiler, "nested_compile_region"
):
    pytest.skip("needs torch's custom_partitioner_fn and nested_compile_region", allow_module_level=True)

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
        if _region_calls(forward):  # the outer graph, partitioned after the block's
            raise Partitioned
        return forward, backward

    def uuid(self):
        return None


def _region_calls(graph_module: fx.GraphModule) -> list[fx.Node]:
    return graph_module.graph.find_nodes(op="call_function", target=torch.ops.higher_order.invoke_subgraph)


def _saved(backward: fx.GraphModule) -> list[fx.Node]:
    """The backward graph's inputs other than incoming gradients: what the forward keeps."""
    return [n for n in backward.graph.find_nodes(op="placeholder") if not n.name.startswith("tangents")]


def _bytes(node: fx.Node) -> int:
    value = node.meta["val"]
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


def _partition_step(recompute: str) -> RecordingPartitioner:
    recorder = RecordingPartitioner()
    # No cache: a cached compilation would skip the partitioner.
    with (
        inductor_config.patch(custom_partitioner_fn=recorder, fx_graph_cache=False),
        torch._functorch.config.patch(enable_autograd_cache=False),
    ):
        _compile_step(recompute)
    return recorder


def _compile_step(recompute: str) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    context = model_context(VOCAB, SEQ, batch_size=BATCH, forward_dtype=torch.bfloat16)
    config = TRMConfig(
        hidden_size=HIDDEN,
        num_heads=2,
        expansion=4.0,
        puzzle_emb_ndim=HIDDEN,
        puzzle_emb_len=PREFIX,
        L_layers=L_LAYERS,
        H_cycles=H_CYCLES,
        L_cycles=L_CYCLES,
        mlp_t=True,
        pos_encodings="none",
        recompute=recompute,
    )
    head = ACTLossHead(ACTModel(TRM(config, context), ACTConfig(halt_max_steps=4))).train()
    batch = {
        "inputs": torch.randint(1, VOCAB, (BATCH, SEQ), dtype=torch.int32),
        "labels": torch.randint(1, VOCAB, (BATCH, SEQ)),
        "puzzle_identifiers": torch.zeros(BATCH, dtype=torch.int32),
    }
    step = torch.compile(head, dynamic=False)
    try:
        step(head.initial_carry(batch), batch, torch.zeros(BATCH, dtype=torch.int32))
    except Exception as error:  # dynamo wraps what the backend raises
        if not isinstance(error, Partitioned) and "Partitioned" not in repr(error):
            raise
    finally:
        torch._dynamo.reset()


def _activation_values(forward: fx.GraphModule, saved: list[fx.Node]) -> list[fx.Node]:
    """The saved values computed from the block's input (B, positions, hidden), not from
    its weights alone (bf16 copies of the weights, the same at any batch size)."""
    by_name = {n.name: n for n in forward.graph.nodes}
    state = [
        n
        for n in forward.graph.find_nodes(op="placeholder")
        if tuple(n.meta["val"].shape) == (BATCH, POSITIONS, HIDDEN)
    ]
    assert len(state) == 1, "expected one block input of shape (batch, positions, hidden)"

    def from_state(node: fx.Node, seen: set[fx.Node]) -> bool:
        if node is state[0]:
            return True
        seen.add(node)
        return any(from_state(i, seen) for i in node.all_input_nodes if i not in seen)

    return [n for n in saved if from_state(by_name[n.name], set())]


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


@pytest.mark.parametrize(("recompute", "kept_products"), [("swiglu_products", False), ("none", True)])
def test_a_differentiated_block_keeps_only_what_its_backward_needs(recompute, kept_products):
    recorder = _partition_step(recompute)
    assert len(recorder.partitions) == 2, "expected one partition of the block region and one of the step"
    (block_forward, block_backward), _ = recorder.partitions
    activations = _activation_values(block_forward, _saved(block_backward))
    kept = sum(_bytes(n) for n in activations) // BATCH
    needed = _needed_activation_bytes() + kept_products * _product_bytes()
    assert kept <= needed, (
        f"with recompute={recompute!r} one differentiated TRM-MLP block keeps {kept} bytes per example "
        f"for backward, more than the {needed} its backward needs: "
        + ", ".join(f"{n.name} {tuple(n.meta['val'].shape)}" for n in activations)
    )


def test_only_the_differentiated_cycle_keeps_block_values():
    recorder = _partition_step("swiglu_products")
    (_, block_backward), (step_forward, step_backward) = recorder.partitions
    per_block = len(_saved(block_backward))
    regions = set(_region_calls(step_forward))
    region_outputs = {n.name for n in step_forward.graph.nodes if n.target is operator.getitem and n.args[0] in regions}
    from_blocks = [n for n in _saved(step_backward) if n.name in region_outputs]
    grad_blocks = L_LAYERS * (L_CYCLES + 1)
    assert len(from_blocks) == grad_blocks * per_block, (
        f"the step keeps {len(from_blocks)} values from its blocks, not {per_block} for each of the "
        f"{grad_blocks} blocks of the last cycle: a cycle without gradients keeps activations"
    )


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
