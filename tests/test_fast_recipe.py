"""The fast Sudoku recipe's training options, each off by default: the gated-norm SwiGLU,
label smoothing, decaying weights on later ACT steps, the EMA's start step, the depth
curriculum, and the training clock (time budget, evaluations at fixed minutes) with the
``rr time-to-accuracy`` command that draws its curve."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.contracts.errors import ConfigError
from rrcore.model.act_loss import ACTLossConfig
from rrcore.model.layers import SwiGLU, rms_norm
from rrcore.model.losses import softmax_cross_entropy, stablemax_cross_entropy
from rrcore.tools.timecurve import read_curve
from rrcore.training.build import build_run
from rrcore.training.clock import TrainingClock
from rrcore.training.ema import EMA
from rrcore.training.loop import Trainer, train

# -- layers and losses -------------------------------------------------------------------


def test_gated_norm_swiglu_is_sigmoid_gate_times_normed_product():
    torch.manual_seed(0)
    mlp = SwiGLU(16, 4.0, gated_norm=True)
    x = torch.randn(3, 5, 16)
    gate, up = mlp.gate_up_proj(x).chunk(2, dim=-1)
    expected = mlp.down_proj(torch.sigmoid(gate) * rms_norm(gate * up))
    torch.testing.assert_close(mlp(x), expected)
    mlp.gated_norm = False  # the default: silu(gate) * up, as before
    torch.testing.assert_close(mlp(x), mlp.down_proj(F.silu(gate) * up))


def test_gated_norm_reaches_every_swiglu_of_trm(bundled_registry):
    from rr_trm.trm import TRM, TRMConfig

    from rrcore.api import model_context

    config = TRMConfig(hidden_size=32, num_heads=2, L_layers=2, mlp_t=True, gated_norm=True, puzzle_emb_ndim=0)
    model = TRM(config, model_context(11, 81))
    swiglus = [m for m in model.modules() if isinstance(m, SwiGLU)]
    assert len(swiglus) == 4 and all(m.gated_norm for m in swiglus)  # sequence and channel MLPs
    plain = TRM(TRMConfig(hidden_size=32, num_heads=2, mlp_t=True, puzzle_emb_ndim=0), model_context(11, 81))
    assert not any(m.gated_norm for m in plain.modules() if isinstance(m, SwiGLU))


@pytest.mark.parametrize("loss", [stablemax_cross_entropy, softmax_cross_entropy])
def test_label_smoothing_mixes_the_label_with_a_uniform_target(loss):
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 11)
    labels = torch.randint(0, 11, (2, 7))
    labels[0, 0] = -100  # ignored positions stay 0
    plain = loss(logits, labels)
    smoothed = loss(logits, labels, label_smoothing=0.2)
    # The uniform target's loss: the loss averaged over every class as the label.
    every_class = torch.stack([loss(logits, torch.full_like(labels, c)) for c in range(11)]).mean(0)
    expected = torch.where(labels == -100, 0, 0.8 * plain + 0.2 * every_class)
    torch.testing.assert_close(smoothed, expected.to(smoothed.dtype), rtol=1e-5, atol=1e-6)
    assert smoothed[0, 0] == 0


def test_loss_options_are_checked():
    with pytest.raises(ValueError, match="label_smoothing"):
        ACTLossConfig(label_smoothing=1.0)
    with pytest.raises(ValueError, match="later_step_weight"):
        ACTLossConfig(later_step_weight=1.5)


def test_later_steps_weigh_less(toy_registry, tmp_path):
    """With later_step_weight w, a row at ACT step n contributes w ** (n - 1) of its loss."""
    losses = {}
    for weight in (1.0, 0.5):
        path = toy_experiment(
            tmp_path / f"exp{weight}.toml", extra=f'[loss]\nplugin = "act"\nlater_step_weight = {weight}\n'
        )
        run = build_run(load_experiment(path), optimizers=False, evaluators=False)
        head = run.loss_head.eval()
        batch = next(run.train_data.train_batches())[1]
        carry = head.initial_carry(batch)
        per_step = []
        for _ in range(3):
            carry, loss, metrics, *_ = head(carry, batch)
            per_step.append(float(metrics["lm_loss"]))
        losses[weight] = per_step
    assert [h / f for h, f in zip(losses[0.5], losses[1.0])] == pytest.approx([1.0, 0.5, 0.25], rel=1e-5)


# -- EMA start and the curriculum --------------------------------------------------------


def test_ema_copies_the_weights_until_its_start_step():
    module = torch.nn.Linear(2, 2)
    ema = EMA(module, rate=0.5, start_step=2)
    for step in range(2):
        with torch.no_grad():
            module.weight.add_(1.0)
        ema.update(module, step)
        torch.testing.assert_close(ema.shadow[0], module.weight.detach())
    before = ema.shadow[0].clone()
    with torch.no_grad():
        module.weight.add_(1.0)
    ema.update(module, 2)
    torch.testing.assert_close(ema.shadow[0], 0.5 * before + 0.5 * module.weight.detach())


CURRICULUM = "[[train.curriculum]]\nuntil_step = 3\nmodel = { cycles = 1 }\n"


def test_curriculum_sets_model_keys_by_step(toy_registry, tmp_path):
    experiment = load_experiment(toy_experiment(tmp_path / "exp.toml", extra=CURRICULUM))
    run = build_run(experiment, optimizers=False, evaluators=False)
    assert experiment.model.config.cycles == 2
    seen = []
    for step in (0, 2, 3, 10, 1):
        run.use_phase(step)
        seen.append(run.model.config.cycles)
    assert seen == [1, 1, 2, 2, 1]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            "[[train.curriculum]]\nuntil_step = 3\nmodel = { depth = 1 }\n",
            "train.curriculum.0.model.depth: model 'toy' has no key",
        ),
        (
            "[[train.curriculum]]\nuntil_step = 3\nmodel = { cycles = 1.5 }\n",
            "train.curriculum.0.model.cycles: expected int",
        ),
        (CURRICULUM + "[[train.curriculum]]\nuntil_step = 2\nmodel = { cycles = 3 }\n", "must increase"),
    ],
)
def test_bad_curriculum_is_one_line_naming_the_key(toy_registry, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_experiment(toy_experiment(tmp_path / "exp.toml", extra=extra))
    assert "\n" not in str(error.value)


def test_curriculum_run_trains_and_evaluates_the_written_model(toy_registry, tmp_path):
    experiment = load_experiment(toy_experiment(tmp_path / "exp.toml", extra=CURRICULUM, epochs=2))
    trainer = Trainer(experiment)
    result = trainer.train()
    assert result.status == "finished" and trainer.run.model.config.cycles == 2


# -- the training clock ------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_clock_marks_budget_and_pauses(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr("rrcore.training.clock.time.perf_counter", fake)
    clock = TrainingClock(torch.device("cpu"), budget_minutes=3, eval_at_minutes=[1, 2])
    clock.start()
    fake.now += 59
    assert not clock.eval_due()
    fake.now += 62  # past both marks at once: one evaluation, not two
    assert clock.eval_due() and not clock.eval_due()
    assert clock.pause() == pytest.approx(121)
    fake.now += 1000  # evaluation time is not training time
    clock.resume()
    assert not clock.out_of_time()
    fake.now += 59
    assert clock.out_of_time() and clock.seconds == pytest.approx(180)


def test_resumed_clock_skips_marks_already_passed():
    clock = TrainingClock(torch.device("cpu"), eval_at_minutes=[1, 2, 5], seconds=150)
    assert clock.marks == [300] and clock.seconds == 150


def test_time_budget_stops_training_with_evaluations_on_the_way(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=100000, log_interval=1)
    experiment = load_experiment(path, ["train.time_budget_minutes=0.05", "train.eval_at_minutes=[0.01, 0.03]"])
    result = train(experiment)
    assert result.status == "finished" and result.step < experiment.train.epochs
    rows = [json.loads(line) for line in (tmp_path / "runs" / "toy" / "metrics.jsonl").read_text().splitlines()]
    minutes = [row["time/train_minutes"] for row in rows if "time/train_minutes" in row]
    # An evaluation at a mark (both at once if one step passed both) and the final one.
    assert len(minutes) >= 2 and minutes == sorted(minutes)
    assert minutes[0] >= 0.01 and minutes[-1] >= 0.05
    checkpoints = tmp_path / "runs" / "toy" / "checkpoints"
    progress = json.loads((checkpoints / (checkpoints / "latest").read_text().strip() / "trainer.json").read_text())
    assert progress["train_seconds"] >= 0.05 * 60


def test_time_to_accuracy_writes_curves_and_png(toy_env, toy_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", toy_env["PYTHONPATH"])  # for the rr run it starts
    path = toy_experiment(tmp_path / "toy-a.toml", epochs=100000)
    out = tmp_path / "results"
    result = CliRunner().invoke(
        main,
        [
            "time-to-accuracy",
            str(path),
            "--minutes",
            "0.02",
            "--at",
            "0.01",
            "--metric",
            "exact/exact_accuracy",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "time-to-accuracy-toy-a.json").read_text())
    minutes = [p["minutes"] for p in record["points"]]  # the mark's, then the end's (one, if they share a step)
    assert minutes and minutes[0] >= 0.01 and minutes[-1] >= 0.02
    assert record["points"] == read_curve(tmp_path / "runs" / "toy-a", "exact/exact_accuracy")
    assert "time_budget_minutes=0.02" in record["command"]
    assert (out / "time-to-accuracy-toy-a.png").read_bytes()[:4] == b"\x89PNG"
    assert "\ntoy-a: 0.0" in result.output  # the summary line, after the run's own output


def test_time_to_accuracy_refuses_bad_marks(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "toy.toml")
    result = CliRunner().invoke(main, ["time-to-accuracy", str(path), "--at", "1,x"])
    assert result.exit_code == 2 and "--at '1,x'" in result.output


def test_fit_steps_compresses_the_whole_schedule_into_the_budget(toy_registry, tmp_path):
    from rrcore.tools.timecurve import SET_UP_SECONDS, fitted_settings

    extra = "[[train.curriculum]]\nuntil_step = 2000\nmodel = { cycles = 1 }\n"
    path = toy_experiment(tmp_path / "exp.toml", extra=extra, max_steps=8000, lr_warmup_steps=400, ema_start_step=5000)
    experiment = load_experiment(path)
    # 10 minutes of steps at 100 ms after set-up and a 30 s first step: 6,000 steps, 3/4 of the recipe's 8,000.
    settings = fitted_settings(experiment, 10 + (SET_UP_SECONDS + 30) / 60, 100.0, 30.0)
    assert settings == [
        "train.max_steps=6000",
        "train.lr_warmup_steps=300",
        "train.ema_start_step=3750",
        "train.curriculum.0.until_step=1500",
    ]
    assert load_experiment(path, settings).train.curriculum[0].until_step == 1500  # they apply as --set
    with pytest.raises(ValueError, match="needs train.max_steps"):
        fitted_settings(load_experiment(toy_experiment(tmp_path / "b.toml")), 10, 100.0, 30.0)
