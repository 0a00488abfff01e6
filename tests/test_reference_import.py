"""rr import: reference HRM, TRM and URM checkpoints become rr exports that compute the same."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from rr_hrm.hrm import HRM, HRMConfig
from rr_trm.trm import TRM, TRMConfig
from rr_urm.urm import URM, URMConfig

from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.registry import get_registry
from rrcore.model.model_kit import model_context
from rrcore.tools.reference_layouts import LAYOUTS
from rrcore.training.build import build_model
from rrcore.training.weights import load_weights

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VOCAB, SEQ_LEN, IDENTIFIERS = 6, 16, 3
INITIAL_STATES = ("H_init", "L_init", "init_hidden")  # bfloat16 buffers in the references

# name: (rr model class, rr config, the reference's arch table: its all_config.yaml)
MODELS = {
    "trm-attention": (
        TRM,
        TRMConfig(hidden_size=64, num_heads=2, L_layers=2, H_cycles=2, L_cycles=2, puzzle_emb_ndim=64),
        {
            "name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
            "H_cycles": 2,
            "L_cycles": 2,
            "H_layers": 0,
            "L_layers": 2,
            "pos_encodings": "rope",
            "mlp_t": False,
            "puzzle_emb_len": 16,
            "no_ACT_continue": True,
        },
    ),
    "trm-mlp": (
        TRM,
        TRMConfig(
            hidden_size=64,
            num_heads=2,
            L_layers=1,
            H_cycles=2,
            L_cycles=2,
            puzzle_emb_ndim=64,
            mlp_t=True,
            pos_encodings="none",
            puzzle_emb_len=2,
        ),  # fmt: skip
        {
            "name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
            "H_cycles": 2,
            "L_cycles": 2,
            "L_layers": 1,
            "pos_encodings": "none",
            "mlp_t": True,
            "puzzle_emb_len": 2,
        },
    ),
    "hrm": (
        HRM,
        HRMConfig(
            hidden_size=64,
            num_heads=2,
            H_layers=1,
            L_layers=2,
            H_cycles=2,
            L_cycles=2,
            puzzle_emb_ndim=96,
            pos_encodings="learned",
        ),  # fmt: skip
        {
            "name": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
            "H_cycles": 2,
            "L_cycles": 2,
            "H_layers": 1,
            "L_layers": 2,
            "pos_encodings": "learned",
            "puzzle_emb_ndim": 96,
        },
    ),
    "urm": (
        URM,
        URMConfig(hidden_size=64, num_heads=2, num_layers=2, H_cycles=2, L_cycles=2, puzzle_emb_ndim=64),
        {"name": "urm.urm@URM", "H_cycles": 2, "L_cycles": 2, "num_layers": 2, "pos_encodings": "rope", "loops": 4},
    ),
}


def _arch(name: str) -> dict:
    shared = {"hidden_size": 64, "num_heads": 2, "expansion": 4, "puzzle_emb_ndim": 64}
    loss = {"name": "losses@ACTLossHead", "loss_type": "softmax_cross_entropy"}
    act = {"halt_max_steps": 4, "halt_exploration_prob": 0.1}
    return {**shared, **act, **MODELS[name][2], "loss": loss}


def _model(name: str) -> torch.nn.Module:
    """An rr model of ``name`` with every tensor random (the Q-head and puzzle embeddings
    start constant, which would hide a tensor put in the wrong place); the initial states
    hold bfloat16 values, as the references keep them."""
    factory, config, _ = MODELS[name]
    torch.manual_seed(0)
    model = factory(config, model_context(VOCAB, SEQ_LEN, num_puzzle_identifiers=IDENTIFIERS))
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            tensor.copy_(torch.randn_like(tensor) * 0.5)
            if key in INITIAL_STATES:
                tensor.copy_(tensor.bfloat16())
    return model.eval()


def _reference_state(model: torch.nn.Module, plugin: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """``model``'s tensors under the reference's names, as its trainer saves them: initial
    states in bfloat16 (its forward dtype), through torch.compile's prefix when ``prefix``."""
    layout = LAYOUTS[plugin]
    state = {}
    for name, tensor in model.state_dict().items():
        reference = layout.to_reference(name)
        state[prefix + reference] = tensor.to(torch.bfloat16) if name in INITIAL_STATES else tensor.clone()
    return state


def _write_reference(folder: Path, name: str, state: dict, arch: dict | None = None, wrap: bool = False) -> Path:
    """A reference checkpoint folder: ``step_12`` and ``all_config.yaml``, as the trainers write them."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = {"step": 12, "model_state_dict": state, "optimizer_states": []} if wrap else state
    torch.save(saved, folder / "step_12")
    config = {"arch": arch or _arch(name), "data_path": str(folder / "data"), "global_batch_size": 768}
    (folder / "all_config.yaml").write_text(yaml.dump(config))
    return folder / "step_12"


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def _outputs(model: torch.nn.Module, steps: int = 2) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    batch = {
        "inputs": torch.randint(1, VOCAB, (3, SEQ_LEN), generator=generator),
        "puzzle_identifiers": torch.tensor([0, 1, 2]),
    }
    carry = model.reset_carry(torch.ones(3, dtype=torch.bool), model.initial_carry(batch))
    outputs = []
    with torch.no_grad():
        for _ in range(steps):
            carry, out = model(carry, batch)
            outputs.append(out)
    return outputs


def _load_export(folder: Path) -> torch.nn.Module:
    experiment = load_experiment(folder / "config.toml")
    metadata = DatasetMetadata.from_json(folder / "dataset.json")
    model = build_model(experiment, get_registry(), metadata, torch.device("cpu"))
    load_weights(model, folder)
    return model.eval()


# -- names: what the reference code calls each tensor ---------------------------------------

REFERENCE_NAMES = {
    # models/recursive_reasoning/trm.py: L_level.layers.N.{self_attn,mlp}; input, heads, initial states.
    "trm-attention": {
        "model.inner.H_init",
        "model.inner.L_init",
        "model.inner.embed_tokens.embedding_weight",
        "model.inner.puzzle_emb.weights",
        "model.inner.lm_head.weight",
        "model.inner.q_head.weight",
        "model.inner.q_head.bias",
        *(
            f"model.inner.L_level.layers.{n}.{t}"
            for n in (0, 1)
            for t in (
                "self_attn.qkv_proj.weight",
                "self_attn.o_proj.weight",
                "mlp.gate_up_proj.weight",
                "mlp.down_proj.weight",
            )
        ),
    },
    "trm-mlp": {
        "model.inner.H_init",
        "model.inner.L_init",
        "model.inner.embed_tokens.embedding_weight",
        "model.inner.puzzle_emb.weights",
        "model.inner.lm_head.weight",
        "model.inner.q_head.weight",
        "model.inner.q_head.bias",
        "model.inner.L_level.layers.0.mlp_t.gate_up_proj.weight",
        "model.inner.L_level.layers.0.mlp_t.down_proj.weight",
        "model.inner.L_level.layers.0.mlp.gate_up_proj.weight",
        "model.inner.L_level.layers.0.mlp.down_proj.weight",
    },
    # models/hrm/hrm_act_v1.py, learned positions: embed_pos.
    "hrm": {
        "model.inner.H_init",
        "model.inner.L_init",
        "model.inner.embed_tokens.embedding_weight",
        "model.inner.embed_pos.embedding_weight",
        "model.inner.puzzle_emb.weights",
        "model.inner.lm_head.weight",
        "model.inner.q_head.weight",
        "model.inner.q_head.bias",
        *(
            f"model.inner.{level}.layers.{n}.{t}"
            for level, layers in (("H_level", 1), ("L_level", 2))
            for n in range(layers)
            for t in (
                "self_attn.qkv_proj.weight",
                "self_attn.o_proj.weight",
                "mlp.gate_up_proj.weight",
                "mlp.down_proj.weight",
            )
        ),
    },
    # models/urm/urm.py: layers.N.{self_attn,mlp} with ConvSwiGLU's dwconv; init_hidden.
    "urm": {
        "model.inner.init_hidden",
        "model.inner.embed_tokens.embedding_weight",
        "model.inner.puzzle_emb.weights",
        "model.inner.lm_head.weight",
        "model.inner.q_head.weight",
        "model.inner.q_head.bias",
        *(
            f"model.inner.layers.{n}.{t}"
            for n in (0, 1)
            for t in (
                "self_attn.qkv_proj.weight",
                "self_attn.o_proj.weight",
                "mlp.gate_up_proj.weight",
                "mlp.down_proj.weight",
                "mlp.dwconv.weight",
                "mlp.dwconv.bias",
            )
        ),
    },
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_rr_tensor_has_the_reference_codes_name(name):
    plugin = name.split("-")[0]
    assert set(_reference_state(_model(name), plugin)) == REFERENCE_NAMES[name]


# -- the import computes what the weights compute ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "prefix", "wrap"),
    [
        ("trm-attention", "_orig_mod.", False),
        ("trm-mlp", "", False),
        ("hrm", "_orig_mod.", False),
        ("hrm", "", False),
        ("urm", "_orig_mod.", True),  # URM's trainer saves {"step", "model_state_dict", ...}
    ],
)
def test_an_import_gives_the_outputs_of_the_same_weights(name, prefix, wrap, tmp_path):
    plugin = name.split("-")[0]
    model = _model(name)
    checkpoint = _write_reference(tmp_path / "ref", name, _reference_state(model, plugin, prefix), wrap=wrap)
    (tmp_path / "ref" / "data" / "train").mkdir(parents=True)
    (tmp_path / "ref" / "data" / "train" / "dataset.json").write_text(
        json.dumps(
            {
                "pad_id": 0,
                "ignore_label_id": 0,
                "blank_identifier_id": 0,
                "vocab_size": VOCAB,
                "seq_len": SEQ_LEN,
                "num_puzzle_identifiers": IDENTIFIERS,
                "total_groups": 3,
                "mean_puzzle_examples": 1.0,
                "sets": ["all"],
            }
        )
    )
    result = _run("import", str(checkpoint), str(tmp_path / "export"))
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "export" / "export.json").read_text())
    assert info["model"] == plugin and info["step"] == 12 and info["weights"] == "imported"
    experiment = load_experiment(tmp_path / "export" / "config.toml")
    assert experiment.model.config == model.config
    assert experiment.data.plugin == "built" and experiment.data.config.path == str(tmp_path / "ref" / "data")
    assert experiment.act.halt_max_steps == 4 and experiment.act.q_continue == (plugin == "hrm")
    assert experiment.loss.config.loss_type == "softmax_cross_entropy"
    imported = _load_export(tmp_path / "export")
    for ours, theirs in zip(_outputs(model), _outputs(imported)):
        for key in ("logits", "q_halt_logits", "q_continue_logits"):
            torch.testing.assert_close(theirs[key], ours[key], rtol=0, atol=0)


def test_without_a_config_the_sizes_come_from_the_tensors(tmp_path):
    """A checkpoint alone: the layers, width, mlp_t and puzzle embedding from the shapes;
    the cycles from rr's defaults or --set; the data shape from the tensors and --seq-len."""
    model = _model("trm-attention")
    tmp_path.joinpath("ref").mkdir()
    torch.save(_reference_state(model, "trm"), tmp_path / "ref" / "step_5")
    sets = ["--set", "model.num_heads=2", "--set", "model.H_cycles=2", "--set", "model.L_cycles=2"]
    args = ["import", str(tmp_path / "ref" / "step_5"), str(tmp_path / "export"), "--seq-len", str(SEQ_LEN)]
    result = _run(*args, "--data", str(tmp_path / "nodata"), *sets)
    assert result.exit_code == 2 and "no train/dataset.json" in result.output
    result = _run(*args, "--experiment", str(EXAMPLES / "sudoku4x4-trm.toml"), *sets)
    assert result.exit_code == 0, result.output
    imported = _load_export(tmp_path / "export")
    assert imported.config == model.config
    torch.testing.assert_close(_outputs(imported)[-1]["logits"], _outputs(model)[-1]["logits"], rtol=0, atol=0)


def test_rr_solve_and_rr_eval_run_on_an_import(tmp_path):
    """Imported into the 4x4 Sudoku experiment: its task reads the puzzle, its data set evaluates."""
    torch.manual_seed(0)
    config = TRMConfig(hidden_size=64, num_heads=2, L_layers=1, H_cycles=2, L_cycles=2, puzzle_emb_ndim=64)
    model = TRM(config, model_context(6, 16))
    arch = {**_arch("trm-attention"), "L_layers": 1}
    checkpoint = _write_reference(tmp_path / "ref", "trm-attention", _reference_state(model, "trm"), arch=arch)
    experiment = str(EXAMPLES / "sudoku4x4-trm.toml")
    small = ["--set", "data.train_size=64", "--set", "data.test_size=16"]  # a quick data build
    result = _run(
        "import", str(checkpoint), str(tmp_path / "export"), "--experiment", experiment, "--seq-len", "16", *small
    )
    assert result.exit_code == 0, result.output
    solved = _run("solve", str(tmp_path / "export"), "12.43.1221.34.21", "--json")
    assert solved.exit_code in (0, 1), solved.output  # 1: an untrained model's answer fails the check
    assert json.loads(solved.stdout)["steps"] == 4
    evaluated = _run("eval", str(tmp_path / "export"), "--output", str(tmp_path / "eval"))
    assert evaluated.exit_code == 0, evaluated.output
    assert (tmp_path / "eval" / "predictions.jsonl").is_file()


# -- what is refused, in one line (exit 2) --------------------------------------------------


def _broken(tmp_path: Path, change) -> tuple[int, str]:
    state = _reference_state(_model("hrm"), "hrm", "_orig_mod.")
    change(state)
    checkpoint = _write_reference(tmp_path / "ref", "hrm", state)
    result = _run("import", str(checkpoint), str(tmp_path / "export"), "--seq-len", str(SEQ_LEN))
    assert not (tmp_path / "export").exists()
    return result.exit_code, result.output


def test_a_missing_tensor_is_named(tmp_path):
    code, output = _broken(tmp_path, lambda s: s.pop("_orig_mod.model.inner.L_level.layers.1.mlp.down_proj.weight"))
    assert code == 2 and output.count("\n") == 1
    assert "'model.inner.L_level.layers.1.mlp.down_proj.weight' is missing" in output


def test_an_extra_tensor_is_named(tmp_path):
    def add(state):
        state["_orig_mod.model.inner.H_level.layers.1.mlp.down_proj.weight"] = torch.zeros(64, 256)

    code, output = _broken(tmp_path, add)
    assert code == 2 and output.count("\n") == 1
    assert "'_orig_mod.model.inner.H_level.layers.1.mlp.down_proj.weight'" in output and "does not have" in output


def test_a_tensor_of_another_shape_is_named(tmp_path):
    def shrink(state):
        name = "_orig_mod.model.inner.lm_head.weight"
        state[name] = state[name][:4]

    code, output = _broken(tmp_path, shrink)
    assert code == 2 and output.count("\n") == 1
    assert "'_orig_mod.model.inner.lm_head.weight' has shape (4, 64), (6, 64)" in output


def test_a_name_outside_the_reference_model_is_named(tmp_path):
    code, output = _broken(tmp_path, lambda s: s.update({"optimizer.step": torch.zeros(1)}))
    assert code == 2 and output.count("\n") == 1 and "'optimizer.step'" in output


class _Payload:
    """Pickles as a call of os.mkdir: what a checkpoint carrying code would run when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_checkpoint_holding_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    state = _reference_state(_model("hrm"), "hrm")
    state["model.inner.payload"] = _Payload(marker)
    checkpoint = _write_reference(tmp_path / "ref", "hrm", state)
    result = _run("import", str(checkpoint), str(tmp_path / "export"), "--seq-len", str(SEQ_LEN))
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "refused" in result.output and "nothing in it was run" in result.output
    assert not marker.exists() and not (tmp_path / "export").exists()
