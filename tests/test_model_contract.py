"""The small model contract: shared config keys, a carry from named initial states, and
``[act] q_continue`` following the model's ``predicts_q_continue``."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
import torch
from click.testing import CliRunner

from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment, load_raw, resolve
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import ModelContext
from rrcore.contracts.registry import Registry, load_registry
from rrcore.model.model_kit import ReasoningModel, ReasoningModelConfig

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
RECORDED_EXAMPLES = Path(__file__).parent / "data" / "example_models.json"
"""Each example's resolved ``[model]`` and ``[act]`` sections as ``rr validate`` printed them
before the bundled models' configs moved onto :class:`ReasoningModelConfig`. Re-record an
entry only when an example's model is changed on purpose."""


@pytest.fixture(scope="module")
def registry() -> Registry:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RR_LOAD_PLUGINS", raising=False)
        patch.delenv("RR_DISABLE_PLUGINS", raising=False)
        return load_registry()


def needs_models(registry: Registry, *names: str) -> None:
    missing = [name for name in names if name not in registry.components["model"]]
    if missing:
        pytest.skip(f"model plugins not installed: {', '.join(missing)}")


# ---------------------------------------------------------------------------------------
# The examples describe the same models as before
# ---------------------------------------------------------------------------------------

RECORDED = json.loads(RECORDED_EXAMPLES.read_text())


def test_every_example_is_recorded() -> None:
    assert sorted(RECORDED) == sorted(path.name for path in EXAMPLES_DIR.glob("*.toml"))


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_example_resolves_to_the_recorded_model(name: str, registry: Registry) -> None:
    needs_models(registry, RECORDED[name]["model"]["plugin"])
    resolved = load_experiment(EXAMPLES_DIR / name, registry=registry).to_dict()
    assert resolved["model"] == RECORDED[name]["model"]
    assert resolved["act"] == RECORDED[name]["act"]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_example_without_q_continue_follows_its_model(name: str, registry: Registry) -> None:
    needs_models(registry, RECORDED[name]["model"]["plugin"])
    raw = load_raw(EXAMPLES_DIR / name)  # with its base files
    raw["act"].pop("q_continue")
    experiment = resolve(raw, registry, name)
    assert experiment.act.q_continue == RECORDED[name]["act"]["q_continue"]


# ---------------------------------------------------------------------------------------
# [act] q_continue against the model's declaration
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "value", "message"),
    [
        (
            "sudoku4x4-trm.toml",
            "true",
            "act.q_continue = true: model 'trm' does not predict Q-continue "
            "(it halts on q_halt > 0); leave the key out or set it to false",
        ),
        (
            "sudoku4x4-urm.toml",
            "true",
            "act.q_continue = true: model 'urm' does not predict Q-continue "
            "(it halts on q_halt > 0); leave the key out or set it to false",
        ),
        (
            "sudoku4x4-hrm.toml",
            "false",
            "act.q_continue = false: model 'hrm' predicts Q-continue "
            "(it halts on q_halt > q_continue); leave the key out or set it to true",
        ),
    ],
)
def test_q_continue_that_contradicts_the_model_is_one_line_and_exit_2(example, value, message, registry):
    needs_models(registry, example.split("-")[1].removesuffix(".toml"))
    path = EXAMPLES_DIR / example
    result = CliRunner().invoke(main, ["validate", str(path), "--set", f"act.q_continue={value}"])
    assert result.exit_code == 2
    assert result.output == f"rr: error: {path}: {message}\n"


def test_models_declare_q_continue(registry: Registry) -> None:
    needs_models(registry, "hrm", "trm", "totrm", "transformer", "urm")
    declared = {
        name: registry.get("model", name).predicts_q_continue for name in ("hrm", "trm", "totrm", "transformer", "urm")
    }
    assert declared == {"hrm": True, "trm": False, "totrm": False, "transformer": False, "urm": False}


def test_a_model_that_does_not_declare_takes_either_value(toy_registry, tmp_path):
    from toy_helpers import toy_experiment

    path = toy_experiment(tmp_path / "exp.toml")
    assert toy_registry.get("model", "toy").predicts_q_continue is None
    assert load_experiment(path).act.q_continue is False
    assert load_experiment(path, ["act.q_continue=true"]).act.q_continue is True


# ---------------------------------------------------------------------------------------
# ReasoningModel: input layer, puzzle embedding and carry
# ---------------------------------------------------------------------------------------


@attrs.define
class TinyConfig(ReasoningModelConfig):
    cycles: int = 1


class Tiny(ReasoningModel):
    def __init__(self, config: TinyConfig, context: ModelContext, **states: str | None) -> None:
        super().__init__(config, context)
        self.register_carry(**states)


def tiny(dtype: torch.dtype = torch.float32, **states: str | None) -> Tiny:
    metadata = DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=5,
        seq_len=6,
        num_puzzle_identifiers=3,
        total_groups=1,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )
    config = TinyConfig(hidden_size=8, num_heads=2, puzzle_emb_ndim=12)
    return Tiny(config, ModelContext(metadata, 4, dtype), **states)


def batch(rows: int = 3) -> dict[str, torch.Tensor]:
    return {"inputs": torch.zeros(rows, 6, dtype=torch.int32)}


def test_shared_keys_are_flat_in_the_config_and_build_the_input_layer() -> None:
    model = tiny(z="z_init")
    assert model.config.hidden_size == 8 and model.config.cycles == 1
    assert model.embed_input.total_len == 2 + 6  # ceil(12 / 8) prefix positions, then the tokens
    assert model.puzzle_emb is model.embed_input.puzzle_emb
    assert model.puzzle_emb.weights.shape == (3, 12)
    with pytest.raises(ConfigError, match="model.num_heads = 0: must be >= 1"):
        from rrcore.contracts.structure import structure

        structure({"num_heads": 0}, TinyConfig, "exp.toml", "model")


def test_carry_starts_at_zero_and_resets_rows_to_the_named_buffers() -> None:
    torch.manual_seed(0)
    model = tiny(torch.bfloat16, z_H="H_init", z_L="L_init")
    assert [key for key in model.state_dict() if key.endswith("_init")] == ["H_init", "L_init"]
    assert model.H_init.dtype == torch.float32 and not torch.equal(model.H_init, model.L_init)

    carry = model.initial_carry(batch())
    assert set(carry) == {"z_H", "z_L"}
    assert carry["z_H"].shape == (3, 8, 8) and carry["z_H"].dtype == torch.bfloat16
    assert not carry["z_H"].any()

    filled = {name: torch.full_like(state, 7.0) for name, state in carry.items()}
    reset = model.reset_carry(torch.tensor([True, False, True]), filled)
    assert torch.equal(reset["z_H"][0], model.H_init.to(torch.bfloat16).expand(8, 8))
    assert torch.equal(reset["z_L"][2], model.L_init.to(torch.bfloat16).expand(8, 8))
    assert torch.equal(reset["z_H"][1], filled["z_H"][1])


def test_a_state_without_buffer_restarts_at_zero() -> None:
    model = tiny(hidden=None)
    assert not [key for key in model.state_dict() if "init" in key]
    carry = {"hidden": torch.ones(2, 8, 8)}
    reset = model.reset_carry(torch.tensor([False, True]), carry)
    assert torch.equal(reset["hidden"][0], torch.ones(8, 8)) and not reset["hidden"][1].any()
