"""``[optimizer.groups]``: parts of the model trained by optimizers of their own (Muon on the
hidden weight matrices, the ``[optimizer]`` plugin on the rest), one schedule, one checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.contracts.config import dump_experiment, load_experiment
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.tomlfile import tomllib
from rrcore.training.build import build_run
from rrcore.training.builtin import MuonMatricesConfig
from rrcore.training.checkpoint import load_checkpoint
from rrcore.training.loop import train
from rrcore.training.schedule import cosine_with_warmup

EXAMPLES = Path(__file__).parent.parent / "examples"

MUON_GROUP = """
[optimizer.groups.hidden]
plugin = "muon_matrices"
params = "hidden_matrices"
lr = 0.02
weight_decay = 0.5
momentum = 0.6
ns_steps = 3
"""


def _toy(tmp_path: Path, extra: str = MUON_GROUP, **train_keys) -> Path:
    return toy_experiment(tmp_path / "exp.toml", extra, **train_keys)


def _part_names(run) -> dict[str, list[str]]:
    """Each optimizer's parameters, by their names in the model."""
    names = {id(p): name for name, p in run.model.named_parameters()}
    return {
        part: [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        for part, (optimizer, _) in run.optimizers.parts.items()
        if part != "puzzle_emb"
    }


@pytest.mark.parametrize("example", ["sudoku4x4-trm.toml", "sudoku4x4-hrm.toml", "sudoku4x4-urm.toml"])
def test_hidden_matrices_go_to_muon_and_embeddings_heads_and_vectors_stay(bundled_registry, tmp_path, example):
    path = tmp_path / "exp.toml"
    path.write_text(f'base = "{EXAMPLES / example}"\n{MUON_GROUP}')
    run = build_run(load_experiment(path, ["run.device=cpu", "data.train_size=64"]), evaluators=False)
    parts = _part_names(run)
    optimizers = {name: type(optimizer).__name__ for name, (optimizer, _) in run.optimizers.parts.items()}
    assert optimizers["model"] == "AdamAtan2" and optimizers["hidden"] == "Muon"
    shapes = dict(run.model.named_parameters())
    assert parts["hidden"] and all(shapes[name].ndim == 2 for name in parts["hidden"])
    assert not any("embed" in name or "heads." in name for name in parts["hidden"])
    main_part = set(parts["model"])
    assert {"heads.lm_head.weight", "heads.q_head.weight", "heads.q_head.bias"} <= main_part
    assert any(name.endswith("embed_tokens.weight") for name in main_part)
    # Every other 2-D weight is a hidden matrix: nothing is left out of both.
    assert sorted(main_part | set(parts["hidden"])) == sorted(n for n, p in shapes.items() if p.requires_grad)
    if example == "sudoku4x4-trm.toml":
        assert sorted(parts["hidden"]) == sorted(n for n in shapes if n.startswith("net.") and n.endswith(".weight"))


def test_glob_patterns_select_by_model_parameter_name(toy_registry, tmp_path):
    group = '[optimizer.groups.biases]\nparams = ["*.bias"]\nlr = 0.5\nweight_decay = 0.0\n'
    run = build_run(load_experiment(_toy(tmp_path, group)), evaluators=False)
    assert _part_names(run)["biases"] == ["heads.q_head.bias"]
    optimizer, base_lr = run.optimizers.parts["biases"]
    assert type(optimizer).__name__ == "AdamW" and base_lr == 0.5  # [optimizer]'s plugin when none is named
    assert optimizer.param_groups[0]["weight_decay"] == 0.0
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.95)  # [train]'s


def test_without_groups_the_optimizer_state_keeps_its_layout(toy_registry, tmp_path):
    run = build_run(load_experiment(_toy(tmp_path, "")), evaluators=False)
    state = run.optimizers.state_dict()
    assert list(state) == ["model", "puzzle_emb"]
    names = [name for name, p in run.loss_head.named_parameters() if p.requires_grad]
    assert state["model"]["param_groups"][0]["param_names"] == names
    assert "[optimizer.groups" not in dump_experiment(run.experiment)  # config.toml as before groups existed


@pytest.mark.parametrize(
    "schedule", [dict(lr_warmup_steps=2, lr_min_ratio=0.1), dict(lr_warmup_steps=0, lr_min_ratio=0.0)]
)
def test_every_group_follows_the_schedule_from_its_own_base_lr(toy_registry, tmp_path, schedule):
    run = build_run(load_experiment(_toy(tmp_path, **schedule)), evaluators=False)
    optimizers, total = run.optimizers, run.total_steps
    seen = []
    for step in range(total):
        for p in optimizers.parameters:
            p.grad = torch.zeros_like(p)
        optimizers.step(step)
        seen.append(optimizers.lr_metrics())
    warmup, min_ratio = schedule["lr_warmup_steps"], schedule["lr_min_ratio"]
    for step, rates in enumerate(seen):
        assert rates["train/lr"] == pytest.approx(cosine_with_warmup(step, 3e-3, warmup, total, min_ratio))
        assert rates["train/lr_hidden"] == pytest.approx(cosine_with_warmup(step, 0.02, warmup, total, min_ratio))
    if not warmup:  # the recipe's schedule: full rate at once, cosine down to zero at the end
        assert seen[0]["train/lr_hidden"] == 0.02
        assert seen[-1]["train/lr_hidden"] < 0.02 * (1 - math.cos(math.pi / total))


def test_grad_clip_covers_the_parameters_of_every_group(toy_registry, tmp_path, monkeypatch):
    run = build_run(load_experiment(_toy(tmp_path, grad_clip=1.0)), evaluators=False)
    clipped = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, *a, **k: clipped.extend(params))
    for p in run.optimizers.parameters:
        p.grad = torch.ones_like(p)
    run.optimizers.step(0)
    grouped = [run.optimizers.parts[part][0].param_groups[0]["params"] for part in ("model", "hidden")]
    assert [id(p) for p in clipped] == [id(p) for p in run.optimizers.parameters]
    assert {id(p) for p in clipped} == {id(p) for params in grouped for p in params}


def _newton_schulz(update: torch.Tensor, steps: int) -> torch.Tensor:
    """Keller Jordan's quintic Newton-Schulz iteration, in float64."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = update.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


@pytest.mark.parametrize("shape", [(4, 8), (8, 4)])
def test_muon_step_is_the_newton_schulz_orthogonalised_nesterov_momentum(shape):
    from rrcore.training.builtin import _make_muon_matrices

    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(shape))
    lr, weight_decay, momentum = 0.02, 0.5, 0.6
    group = {"params": [weight], "param_names": ["w"], "lr": lr, "weight_decay": weight_decay, "betas": (0.9, 0.95)}
    optimizer = _make_muon_matrices([group], MuonMatricesConfig(momentum=momentum, ns_steps=3))
    expected, buffer = weight.detach().double().clone(), torch.zeros(shape, dtype=torch.float64)
    scale = math.sqrt(max(1.0, shape[0] / shape[1]))  # "original": sqrt(max(1, rows / cols))
    for _ in range(3):
        grad = torch.randn(shape)
        weight.grad = grad.clone()
        optimizer.step()
        buffer = momentum * buffer + (1 - momentum) * grad.double()
        nesterov = (1 - momentum) * grad.double() + momentum * buffer
        expected = expected * (1 - lr * weight_decay) - lr * scale * _newton_schulz(nesterov, 3)
    # torch iterates in bfloat16: within 3% of lr * scale (here 1-1.7%). Another step count
    # (5), momentum without Nesterov or a missing scale moves the weights 8-60% further.
    torch.testing.assert_close(weight.detach().double(), expected, atol=0.03 * lr * scale, rtol=0)


def test_resume_with_groups_is_bit_exact_and_saves_each_group_by_name(toy_registry, tmp_path, monkeypatch):
    keys = dict(epochs=3, lr_min_ratio=0.0, grad_clip=1.0, log_interval=1)
    experiment = load_experiment(_toy(tmp_path, **keys))
    train(experiment, run_dir=tmp_path / "straight")
    monkeypatch.setenv("RR_TOY_SIGNAL_AT", "5:TERM")  # the toy plugin stops the run after step 5
    first = train(experiment, run_dir=tmp_path / "resumed")
    assert first.status == "interrupted" and first.step == 5
    shared, _, _ = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "step_5")
    assert list(shared["optimizers"]) == ["model", "hidden", "puzzle_emb"]
    assert all("momentum_buffer" in s for s in shared["optimizers"]["hidden"]["state"].values())
    monkeypatch.delenv("RR_TOY_SIGNAL_AT")
    second = train(experiment, run_dir=tmp_path / "resumed", resume="latest")
    assert second.status == "finished" and second.step == 12
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step_12")[0]["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "step_12")[0]["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_checkpoint_without_the_group_says_so_on_resume(toy_registry, tmp_path):
    old = load_experiment(_toy(tmp_path, "", max_steps=2))
    train(old, run_dir=tmp_path / "run")
    grouped = load_experiment(_toy(tmp_path, max_steps=4))
    expected = r"groups of model \[\d+\], puzzle_emb \[1\] tensors, this experiment model \[\d+\], hidden \[\d+\]"
    with pytest.raises(ConfigError, match=expected):
        train(grouped, run_dir=tmp_path / "run", resume="latest")


def test_rr_validate_prints_the_resolved_groups(toy_registry, tmp_path):
    path = _toy(tmp_path, MUON_GROUP.replace("weight_decay = 0.5\n", ""))
    result = CliRunner().invoke(main, ["validate", str(path), "--set", "train.weight_decay=0.25"])
    assert result.exit_code == 0, result.output
    group = tomllib.loads(result.output)["optimizer"]["groups"]["hidden"]
    assert group == {
        "plugin": "muon_matrices",
        "params": ["hidden_matrices"],
        "lr": 0.02,
        "weight_decay": 0.25,  # [train]'s, filled in
        "betas": [0.9, 0.95],
        "momentum": 0.6,
        "nesterov": True,
        "ns_steps": 3,
        "adjust_lr": "original",
    }
    printed = tmp_path / "printed.toml"  # what a run folder's config.toml holds: it resolves to itself
    printed.write_text(result.output)
    assert load_experiment(printed).to_dict() == load_experiment(path, ["train.weight_decay=0.25"]).to_dict()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[optimizer.groups.hidden]\nplugin = "muon_matrices"\nparams = ["*.nothing"]\nlr = 0.02\n',
            "optimizer.groups.hidden.params: '*.nothing' matches no trainable parameter",
        ),
        (
            MUON_GROUP + '[optimizer.groups.blocks]\nparams = ["block.*"]\nlr = 0.1\n',
            "optimizer.groups.blocks.params: block.mixer.qkv_proj.weight is also claimed by optimizer.groups.hidden",
        ),
        (
            '[optimizer.groups.hidden]\nplugin = "muon_matrices"\nparams = ["*.q_head.*"]\nlr = 0.02\n',
            "optimizer.groups.hidden.params: muon_matrices trains only matrices (2-D parameters), "
            "not model.inner.heads.q_head.bias of shape (2,)",
        ),
        (
            '[optimizer.groups.all]\nparams = ["*"]\nlr = 0.02\n',
            "optimizer.groups.all.params: the groups claim every parameter, leaving [optimizer] none",
        ),
        ('[optimizer]\nplugin = "muon_matrices"\n', "optimizer.plugin: muon_matrices trains only matrices"),
    ],
    ids=["matches-nothing", "claimed-twice", "muon-given-a-vector", "nothing-left", "muon-for-everything"],
)
def test_bad_groups_are_one_line_errors_naming_the_key(toy_registry, tmp_path, extra, message):
    path = _toy(tmp_path, extra)
    if extra.startswith("[optimizer]"):  # replace the toy's [optimizer] table
        path.write_text(path.read_text().replace('[optimizer]\nplugin = "adamw"\n', "", 1))
    result = CliRunner().invoke(main, ["run", str(path), "--set", "train.max_steps=1"])
    assert result.exit_code == 2, result.output
    assert f"rr: error: {path}: {message}" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.groups.hidden.plugin=nope", "optimizer.groups.hidden.plugin: unknown optimizer plugin 'nope'"),
        (
            "optimizer.groups.hidden.momentm=0.9",
            "optimizer.groups.hidden.momentm: unknown key; did you mean 'momentum'?",
        ),
        ("optimizer.groups.hidden.lr=-1", "optimizer.groups.hidden.lr = -1: must be in (0, 1e+06]"),
        ("optimizer.groups.hidden.params=[]", "optimizer.groups.hidden.params = []: must be"),
        ("optimizer.groups.hidden.ns_steps=0", "optimizer.groups.hidden.ns_steps = 0: must be in [1, 99]"),
        ("optimizer.groups.puzzle_emb.lr=1", "optimizer.groups.puzzle_emb: a group needs a name"),
    ],
)
def test_bad_group_keys_are_config_errors_at_load(toy_registry, tmp_path, override, message):
    with pytest.raises(ConfigError) as error:
        load_experiment(_toy(tmp_path), [override])
    assert message in str(error.value)
