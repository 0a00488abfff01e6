"""Behaviour of the TRM, ToTRM and transformer models on tiny CPU configurations."""

from __future__ import annotations

import pytest
import rr_trm.plugin
import torch
from rr_trm.totrm import ToTRM, ToTRMConfig
from rr_trm.transformer import Transformer, TransformerConfig
from rr_trm.trm import TRM, SequenceMLP, TRMConfig

from rrcore.api import model_context
from rrcore.contracts.experiment import ACTConfig
from rrcore.contracts.registry import load_registry
from rrcore.model.act import ACTModel
from rrcore.model.layers import Attention
from rrcore.model.puzzle_io import SparsePuzzleEmbedding

BATCH, SEQ, VOCAB = 4, 5, 6
TINY = dict(hidden_size=16, num_heads=2, expansion=2.0, puzzle_emb_ndim=16, puzzle_emb_len=2)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine the
    threads' spin-waiting makes these tests many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(kind: str = "trm", dtype: torch.dtype = torch.float32, **overrides):
    context = model_context(VOCAB, SEQ, num_puzzle_identifiers=3, batch_size=BATCH, forward_dtype=dtype)
    if kind == "transformer":
        return Transformer(TransformerConfig(**{**TINY, "num_layers": 2, **overrides}), context)
    keys = {**TINY, "L_layers": 1, "H_cycles": 2, "L_cycles": 3, **overrides}
    if kind == "totrm":
        return ToTRM(ToTRMConfig(**keys), context)
    return TRM(TRMConfig(**keys), context)


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "inputs": torch.randint(0, VOCAB, (BATCH, SEQ), generator=generator, dtype=torch.int32),
        "labels": torch.randint(1, VOCAB, (BATCH, SEQ), generator=generator),
        "puzzle_identifiers": torch.tensor([0, 1, 2, 1], dtype=torch.int32),
    }


def fresh_step(model, batch):
    """One ACT step from freshly reset rows."""
    carry = model.reset_carry(torch.ones(BATCH, dtype=torch.bool), model.initial_carry(batch))
    return model(carry, batch)


@pytest.mark.parametrize("kind", ["trm", "totrm", "transformer"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_outputs_and_carry_have_the_contract_shapes_and_dtypes(kind, dtype):
    torch.manual_seed(0)
    model = make_model(kind, dtype)
    carry, outputs = fresh_step(model, make_batch())
    assert outputs["logits"].shape == (BATCH, SEQ, VOCAB)
    assert outputs["logits"].dtype == dtype
    for name in ("q_halt_logits", "q_continue_logits"):
        assert outputs[name].shape == (BATCH,) and outputs[name].dtype == torch.float32
    for state in carry.values():
        assert state.shape == (BATCH, 2 + SEQ, 16)  # puzzle prefix + tokens
        assert state.dtype == dtype and not state.requires_grad
    assert torch.isfinite(outputs["logits"].float()).all()


@pytest.mark.parametrize("kind", ["trm", "totrm"])
@pytest.mark.parametrize("H_cycles", [1, 3])
def test_gradients_flow_only_through_the_last_H_cycle(kind, H_cycles):
    torch.manual_seed(0)
    L_cycles, L_layers = 2, 2
    model = make_model(
        kind,
        H_cycles=H_cycles,
        L_cycles=L_cycles,
        L_layers=L_layers,
        **({"tree_branching_steps": 1} if kind == "totrm" else {}),
    )
    batch = make_batch()
    carry = fresh_step(model, batch)[0]
    carry = {name: state.clone().requires_grad_(True) for name, state in carry.items()}
    grad_modes = []
    for block in model.net.blocks:
        block.register_forward_hook(lambda module, args, out: grad_modes.append(torch.is_grad_enabled()))

    _, outputs = model(carry, batch)
    outputs["logits"].float().square().sum().backward()

    calls_per_cycle = (L_cycles + 1) * L_layers
    assert grad_modes.count(True) == calls_per_cycle
    assert grad_modes.count(False) == (H_cycles - 1) * calls_per_cycle
    if H_cycles == 1:
        # Control: with a single cycle the incoming carry does feed the gradient.
        assert carry["z_H"].grad is not None and carry["z_H"].grad.abs().sum() > 0
    else:
        # The earlier cycles ran without autograd, so the incoming state gets none.
        assert carry["z_H"].grad is None and carry["z_L"].grad is None
    assert all(p.grad is not None for p in model.net.parameters())


def test_act_model_resets_only_halted_rows():
    torch.manual_seed(0)
    model = make_model("trm")
    act = ACTModel(model, ACTConfig(halt_max_steps=8, halt_exploration_prob=0.0))
    act.eval()  # no halting on Q: only the hand-set mask decides
    batch = make_batch()
    carry, _ = act(act.initial_carry(batch), batch)
    before = {name: state.clone() for name, state in carry.inner.items()}
    halted = torch.tensor([True, False, True, False])
    carry = carry._replace(halted=halted)

    seen = {}  # the inner carry the model receives, after ACTModel's reset
    model.register_forward_pre_hook(lambda module, args: seen.update(args[0]))
    carry, _ = act(carry, batch)

    for name, init in (("z_H", model.H_init), ("z_L", model.L_init)):
        state = seen[name]
        assert torch.equal(state[halted], init.expand(2, 2 + SEQ, 16))
        assert torch.equal(state[~halted], before[name][~halted])
        assert not torch.equal(before[name][halted], state[halted])  # the reset changed something
    assert carry.steps.tolist() == [1, 2, 1, 2]


@pytest.mark.parametrize("branching_steps", [0, 1, 2])
def test_totrm_grows_to_width_two_to_the_n(branching_steps):
    torch.manual_seed(0)
    model = make_model("totrm", tree_branching_steps=branching_steps, H_cycles=1, L_cycles=3)
    rows = []
    model.net.register_forward_hook(lambda module, args, out: rows.append(out.shape[0]))
    carry, outputs = fresh_step(model, make_batch())
    width = 2**branching_steps
    expected_l_rows = [BATCH * 2 ** min(step + 1, branching_steps) for step in range(3)]
    assert rows == expected_l_rows + [BATCH]  # L-cycles on branches, then z_H on merged rows
    assert model.width == width
    assert carry["z_L"].shape == (BATCH, 2 + SEQ, 16)
    assert outputs["logits"].shape == (BATCH, SEQ, VOCAB)


def test_totrm_rejects_more_branching_steps_than_L_cycles():
    with pytest.raises(ValueError, match="tree_branching_steps"):
        make_model("totrm", tree_branching_steps=4, L_cycles=3)


def last_branches_and_merged(model, batch):
    """The branch latents after the last L-cycle (B, W, S, D) and the carried merged z_L."""
    outs = []
    model.net.register_forward_hook(lambda module, args, out: outs.append(out))
    carry, _ = fresh_step(model, batch)
    branches = outs[-2]  # the call before the last is the final L-cycle
    return branches.view(BATCH, model.width, *branches.shape[1:]), carry["z_L"]


@pytest.mark.parametrize("merge", ["mean", "max", "learned_weighted"])
def test_totrm_merge_modes_combine_the_branches(merge):
    torch.manual_seed(0)
    model = make_model("totrm", tree_branching_steps=2, tree_merge=merge)
    branches, merged = last_branches_and_merged(model, make_batch())
    assert branches.shape[1] == 4
    assert not torch.allclose(branches[:, 0], branches[:, 1])  # branch embeddings separate them
    if merge == "max":
        manual = branches[:, 0]
        for index in range(1, 4):
            manual = torch.maximum(manual, branches[:, index])
        assert torch.equal(merged, manual)
    else:
        # learned_weighted starts as the mean (zero scores).
        torch.testing.assert_close(merged, branches.mean(dim=1))


def test_totrm_learned_weights_can_select_one_branch():
    torch.manual_seed(0)
    model = make_model("totrm", tree_branching_steps=2, tree_merge="learned_weighted")
    with torch.no_grad():
        model.merge.branch_bias.copy_(torch.tensor([0.0, 0.0, 60.0, 0.0]))
    branches, merged = last_branches_and_merged(model, make_batch())
    torch.testing.assert_close(merged, branches[:, 2])


def test_same_seed_gives_same_model_and_outputs():
    def run(seed):
        torch.manual_seed(seed)
        model = make_model("totrm", tree_merge="learned_weighted")
        return model.state_dict(), fresh_step(model, make_batch())[1]

    (state_a, out_a), (state_b, out_b), (state_c, _) = run(0), run(0), run(1)
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)
    assert all(torch.equal(out_a[key], out_b[key]) for key in out_a)
    assert not torch.equal(state_a["H_init"], state_c["H_init"])


@pytest.mark.parametrize("pos_encodings", ["rope", "learned", "none"])
@pytest.mark.parametrize("mlp_t", [False, True])
def test_mixers_and_position_encodings_run(pos_encodings, mlp_t):
    torch.manual_seed(0)
    model = make_model("trm", pos_encodings=pos_encodings, mlp_t=mlp_t)
    attention_layers = [m for m in model.modules() if isinstance(m, Attention)]
    sequence_mlps = [m for m in model.modules() if isinstance(m, SequenceMLP)]
    assert (len(attention_layers), len(sequence_mlps)) == ((0, 1) if mlp_t else (1, 0))
    _, outputs = fresh_step(model, make_batch())
    assert torch.isfinite(outputs["logits"]).all()


def test_mlp_t_norm_axis_changes_the_block():
    torch.manual_seed(0)
    positions = make_model("trm", mlp_t=True, mlp_t_norm="positions")
    channels = make_model("trm", mlp_t=True, mlp_t_norm="channels")
    channels.load_state_dict(positions.state_dict())
    # The SwiGLU across positions mixes the 2 + SEQ positions (its input width).
    assert positions.net.blocks[0].mixer.mlp.gate_up_proj.weight.shape[1] == 2 + SEQ
    batch = make_batch()
    assert not torch.allclose(fresh_step(positions, batch)[1]["logits"], fresh_step(channels, batch)[1]["logits"])


@pytest.mark.parametrize("kind", ["trm", "totrm", "transformer"])
def test_q_head_starts_at_zero_weight_and_bias_minus_five(kind):
    torch.manual_seed(0)
    model = make_model(kind)
    assert torch.count_nonzero(model.heads.q_head.weight) == 0
    _, outputs = fresh_step(model, make_batch())
    assert torch.equal(outputs["q_halt_logits"], torch.full((BATCH,), -5.0))
    assert torch.equal(outputs["q_continue_logits"], torch.full((BATCH,), -5.0))


def test_puzzle_embedding_is_exposed_once():
    model = make_model("trm")
    assert isinstance(model.puzzle_emb, SparsePuzzleEmbedding)
    tables = [key for key in model.state_dict() if key.endswith("puzzle_emb.weights")]
    assert tables == ["embed.puzzle_emb.weights"]
    assert make_model("trm", puzzle_emb_ndim=0).puzzle_emb is None


def test_registry_lists_the_three_models():
    registry = load_registry(extra_modules=[rr_trm.plugin], entry_point_group=None)
    models = registry.components["model"]
    assert {"trm", "totrm", "transformer"} <= set(models)
    assert models["totrm"].config_class is ToTRMConfig
    assert models["trm"].make_config().H_cycles == 3


@pytest.mark.parametrize("kind", ["trm", "totrm", "transformer"])
def test_forward_traces_as_one_graph(kind):
    """No host syncs or Python branching on tensor values: torch.compile needs no graph break."""
    torch.manual_seed(0)
    model = make_model(kind, **({"tree_merge": "learned_weighted"} if kind == "totrm" else {}))
    batch = make_batch()
    carry = model.reset_carry(torch.ones(BATCH, dtype=torch.bool), model.initial_carry(batch))
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # traces, no code generation
    torch.testing.assert_close(compiled(carry, batch)[1]["logits"], model(carry, batch)[1]["logits"])


@pytest.mark.parametrize("kind, z_L_per_step", [("trm", 6), ("totrm", 2)])
def test_recording_states_gives_y_and_z_after_every_update(kind, z_L_per_step):
    model = make_model(kind).eval()
    batch = make_batch()
    with torch.no_grad():
        plain_carry, plain = fresh_step(model, batch)
        with model.recording_states() as records:
            _, recorded = fresh_step(model, batch)
    assert len(records) == 1  # one record per ACT step
    assert len(records[0]["z_L"]) == z_L_per_step  # H_cycles x L_cycles (ToTRM: merged, once per cycle)
    assert len(records[0]["z_H"]) == 2  # H_cycles
    assert torch.equal(records[0]["z_H"][-1], plain_carry["z_H"])
    assert torch.equal(records[0]["z_L"][-1], plain_carry["z_L"])
    assert torch.equal(plain["logits"], recorded["logits"])
    assert not model.record_states


@pytest.mark.parametrize("kind", ["trm", "totrm"])
def test_eval_extra_cycles_think_longer_only_in_eval_mode(kind):
    """Inference-time scaling: in eval mode, ``eval_extra_H_cycles`` more recursions per ACT
    step; two steps of H_cycles 2 + 1 extra equal three steps of H_cycles 2 (no extra)."""
    torch.manual_seed(0)
    scaled = make_model(kind, eval_extra_H_cycles=1)
    plain = make_model(kind)
    plain.load_state_dict(scaled.state_dict())
    batch = make_batch()
    scaled.train()
    plain.train()
    torch.testing.assert_close(fresh_step(scaled, batch)[1]["logits"], fresh_step(plain, batch)[1]["logits"])
    scaled.eval()
    plain.eval()
    with torch.no_grad():
        start = scaled.reset_carry(torch.ones(BATCH, dtype=torch.bool), scaled.initial_carry(batch))
        carry = start
        for _ in range(2):
            carry, scaled_outputs = scaled(carry, batch)
        carry = start
        for _ in range(3):
            carry, plain_outputs = plain(carry, batch)
    torch.testing.assert_close(scaled_outputs["logits"], plain_outputs["logits"])
