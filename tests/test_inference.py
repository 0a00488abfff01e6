"""Adaptive halting with batch refill, the step cap, the step table and predictions on disk."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from toy_helpers import toy_experiment

from rrcore.contracts.config import load_experiment
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.experiment import ACTConfig, EvalConfig
from rrcore.contracts.protocols import EvalContext
from rrcore.evaluation.pool import TrajectoryNoise, run_pool
from rrcore.evaluation.selection import VOTE_FIGURES, format_votes, select
from rrcore.evaluation.split import eval_mode, evaluate_split
from rrcore.evaluation.tables import finish_table, step_table
from rrcore.model.act import ACTModel
from rrcore.model.act_loss import ACTLossConfig, ACTLossHead
from rrcore.training.builtin import ExactConfig, ExactEvaluator
from rrcore.training.loop import Trainer


class Countdown(nn.Module):
    """Puzzle ``inputs[:, 0] = n`` wants ``n`` steps: its Q-head says halt from step n on, and
    its prediction is the step count so far (so the answer shows when it stopped)."""

    def __init__(self, vocab: int = 40) -> None:
        super().__init__()
        self.vocab = vocab
        self.weight = nn.Parameter(torch.zeros(()))

    def initial_carry(self, batch):
        return {"calls": torch.zeros(batch["inputs"].shape[0])}

    def reset_carry(self, reset, carry):
        return {"calls": torch.where(reset, 0.0, carry["calls"])}

    def forward(self, carry, batch):
        calls = carry["calls"] + 1
        wanted = batch["inputs"][:, 0].float()
        logits = torch.nn.functional.one_hot(calls.long().clamp(max=self.vocab - 1), self.vocab).float()
        outputs = {
            "logits": logits[:, None, :].expand(-1, batch["inputs"].shape[1], -1) + self.weight,
            "q_halt_logits": calls - wanted + 0.5,
        }
        return {"calls": calls}, outputs


def _countdown(wanted: list[int], halt_max_steps: int = 4):
    head = ACTLossHead(
        ACTModel(Countdown(), ACTConfig(halt_max_steps=halt_max_steps)),
        ACTLossConfig(loss_type="softmax_cross_entropy"),
    )
    inputs = torch.tensor(wanted)[:, None].repeat(1, 2)
    pool = {
        "inputs": inputs,
        "labels": torch.full_like(inputs, 3).long(),
        "puzzle_identifiers": torch.zeros(len(wanted), dtype=torch.int32),
    }
    return head.eval(), pool


def test_adaptive_rows_stop_on_their_q_head_and_slots_take_the_next_puzzle():
    wanted = [1, 5, 2, 1, 3, 1, 1, 2, 9]
    head, pool = _countdown(wanted)
    result = run_pool(head, head, pool, batch_size=3, max_steps=6, adaptive=True, sync_every=1)
    assert result.steps.tolist() == [min(n, 6) for n in wanted]  # the 9 stopped at the cap of 6
    assert result.preds[:, 0].tolist() == [min(n, 6) for n in wanted]  # each answer is its own
    # Freed slots take the next puzzle at once: the last puzzle starts at step 6 and stops at
    # the cap, after 11 batch steps; fixed halting needs 3 batches x 6 steps.
    assert result.act_steps == 11
    fixed = run_pool(head, head, pool, batch_size=3, max_steps=6, adaptive=False, sync_every=1)
    assert fixed.steps.tolist() == [6] * 9 and fixed.act_steps == 18
    assert fixed.halts_at[1].tolist() == [False] * 4 + [True] * 2


def test_step_cap_above_the_training_cap_lets_rows_think_longer():
    head, pool = _countdown([7, 7], halt_max_steps=4)
    result = run_pool(head, head, pool, batch_size=2, max_steps=10, adaptive=True)
    assert result.steps.tolist() == [7, 7]
    result = run_pool(head, head, pool, batch_size=2, max_steps=10, adaptive=False, trace=True)
    assert result.steps.tolist() == [10, 10]
    assert result.trace[0, :, 0].tolist() == list(range(1, 11))  # the prediction after every step
    # Label 3 is right only after step 3: the table scores every step of the one pass.
    assert result.correct_at[0].tolist() == [k == 3 for k in range(1, 11)]


def test_fixed_table_also_simulates_adaptive_halting_at_every_cap():
    head, pool = _countdown([1, 3, 5, 3])
    result = run_pool(head, head, pool, batch_size=4, max_steps=5, adaptive=False)
    labels = pool["labels"]
    correct = (result.preds == labels).all(-1)
    sums = step_table(
        result.correct_at, result.halts_at, result.steps, correct, torch.ones(4, dtype=torch.bool), adaptive=False
    )
    table = finish_table(sums, adaptive=False, training_cap=4)
    rows = {row["step"]: row for row in table["steps"]}
    # Every answer is the step count and every label 3: all right at step 3 only.
    assert [rows[k]["exact_accuracy"] for k in range(1, 6)] == [0, 0, 1, 0, 0]
    assert rows[5]["adaptive_mean_steps"] == (1 + 3 + 5 + 3) / 4
    assert rows[5]["adaptive_exact_accuracy"] == 0.5  # the two 3s stop at step 3, when they are right
    assert rows[2]["adaptive_mean_steps"] == (1 + 2 + 2 + 2) / 4


def _trained_toy(tmp_path, toy_registry, **train):
    experiment = load_experiment(toy_experiment(tmp_path / "toy.toml", **train), [], toy_registry)
    trainer = Trainer(experiment, registry=toy_registry, run_dir=tmp_path / "run")
    batches = trainer.run.train_data.train_batches()
    for _ in range(6):
        trainer.train_step(next(batches)[1], {})
    return trainer


def _papers_loop(head, data, evaluators, halt_max_steps, output_dir):
    """The papers' evaluation written out: each batch from its initial carry through
    ``halt_max_steps`` ACT steps, then the evaluators see the last step's outputs."""
    for name, evaluator in evaluators:
        evaluator.begin_eval(output_dir / name)
    with eval_mode(head):
        for batch in data.eval_batches():
            carry = head.initial_carry(batch)
            for _ in range(halt_max_steps):
                step = head(carry, batch)
                carry = step.carry
            for _, evaluator in evaluators:
                evaluator.update_batch(batch, step.outputs)
    return {f"{name}/{k}": float(v) for name, evaluator in evaluators for k, v in evaluator.result().items()}


def _seeded_toy(tmp_path, request):
    trainer = _trained_toy(tmp_path, request.getfixturevalue("toy_registry"), eval_global_batch_size=6)
    return trainer, lambda: [("exact", ExactEvaluator(ExactConfig(), EvalContext(trainer.run.metadata, tmp_path)))]


def _seeded_sudoku(tmp_path, request):
    """A small TRM on generated 4x4 Sudoku, two training steps from seed 0; scored by the
    sudoku plugin's evaluator and the built-in exact one."""
    from gradient_helpers import EXAMPLES

    request.getfixturevalue("bundled_registry")
    overrides = [
        "run.device='cpu'",
        f"run.out_dir='{tmp_path / 'runs'}'",
        "data.train_size=64",
        "data.test_size=24",
        "train.global_batch_size=16",
        "train.eval_global_batch_size=16",  # 24 puzzles: a padded last batch
    ]
    trainer = Trainer(load_experiment(EXAMPLES / "sudoku4x4-trm.toml", overrides), run_dir=tmp_path / "run")
    batches = trainer.run.train_data.train_batches()
    for _ in range(2):
        trainer.train_step(next(batches)[1], {})

    def evaluators():
        context = EvalContext(trainer.run.metadata, tmp_path)
        sudoku = trainer.run.evaluators[0][1]
        return [("sudoku", type(sudoku)(sudoku.config, context)), ("exact", ExactEvaluator(ExactConfig(), context))]

    return trainer, evaluators


@pytest.mark.parametrize("checkpoint", [_seeded_toy, _seeded_sudoku], ids=["toy", "sudoku4x4-trm"])
def test_fixed_halting_through_the_pool_gives_the_papers_loop_results(tmp_path, request, checkpoint):
    trainer, evaluators = checkpoint(tmp_path, request)
    data, cap = trainer.run.eval_data, trainer.run.experiment.act.halt_max_steps
    papers = _papers_loop(trainer.run.loss_head, data, evaluators(), cap, tmp_path / "papers")
    pooled = evaluate_split(
        trainer.run.loss_head,
        data,
        evaluators(),
        EvalConfig(),
        halt_max_steps=cap,
        q_continue=trainer.run.experiment.act.q_continue,
        output_dir=tmp_path / "out",
        predictions=True,
        trace=True,
    )
    assert {k: v for k, v in pooled.items() if not k.startswith(("eval/", "vote/"))} == papers
    assert pooled["eval/exact_accuracy"] == papers["exact/exact_accuracy"]
    # No more ACT steps than the papers' loop: each batch runs the cap once.
    batches = data.num_eval_batches()
    assert pooled["eval/act_steps"] == batches * cap and pooled["eval/mean_steps"] == cap
    assert pooled["eval/puzzles_per_second"] > 0
    puzzles = data.num_examples
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [row["index"] for row in rows] == list(range(puzzles))
    assert all(len(row["trace"]) == cap and row["trace"][-1] == row["prediction"] for row in rows)
    assert sum(row["correct"] for row in rows) / puzzles == papers["exact/exact_accuracy"]
    table = json.loads((tmp_path / "out" / "steps.json").read_text())
    assert table["steps"][-1]["exact_accuracy"] == papers["exact/exact_accuracy"]
    # Training evaluates through the same engine: evaluate_run has no other loop.
    assert trainer.evaluate(tmp_path / "training")["eval/exact_accuracy"] == pooled["eval/exact_accuracy"]


# -- test-time selection over noisy trajectories ---------------------------------------------


def test_selection_rules_pick_the_first_copy_the_best_q_the_first_halt_and_the_majority():
    labels = torch.tensor([[1, 1], [3, 3]])
    answers = torch.tensor(
        [
            [[0, 0], [1, 1], [2, 2], [2, 2]],  # puzzle 0: only copy 1 is right
            [[3, 3], [4, 4], [3, 3], [5, 5]],  # puzzle 1: copies 0 and 2 are right
        ]
    )
    q_halt = torch.tensor([[0.0, 2.0, 1.0, 0.5], [-1.0, 3.0, -2.0, 0.0]])
    steps = torch.tensor([[3, 4, 2, 2], [1, 4, 3, 4]])

    def figures(*rows, steps=None):
        sums = select(answers[list(rows)], q_halt[list(rows)], labels[list(rows)], steps)
        return dict(zip(VOTE_FIGURES, sums.tolist()))

    # Puzzle 0: best Q (copy 1) is right; the majority [2, 2] and the first to halt (copies 2
    # and 3 at step 2, copy 2 the more confident) are wrong; so is copy 0, accuracy@1.
    assert figures(0, steps=steps[:1]) == {
        "puzzles": 1, "single": 0, "majority": 0, "best_q": 1, "halt_first": 0, "any": 1
    }  # fmt: skip
    # Puzzle 1: copy 0 is right and halted first; best Q (copy 1) is wrong; [3, 3] wins the vote.
    assert figures(1, steps=steps[1:]) == {
        "puzzles": 1, "single": 1, "majority": 1, "best_q": 0, "halt_first": 1, "any": 1
    }  # fmt: skip
    both = figures(0, 1, steps=steps)
    assert both["puzzles"] == 2 and all(both["any"] >= both[rule] for rule in ("single", "majority", "best_q"))
    assert both["any"] >= both["halt_first"]
    assert figures(0, 1)["halt_first"] == figures(0, 1)["best_q"]  # without steps (fixed halting): best Q


def _noise(head, trajectories=3, std=0.5, at="start", seed=0, states=()):
    generator = torch.Generator().manual_seed(seed)
    return TrajectoryNoise(head.model, trajectories=trajectories, std=std, at=at, generator=generator, states=states)


def _toy_pool(trainer, copies):
    batch = next(iter(trainer.run.eval_data.eval_batches()))
    return {k: batch[k][:2].repeat_interleave(copies, 0) for k in ("inputs", "labels", "puzzle_identifiers")}


def test_trajectory_noise_repeats_with_the_seed_differs_across_trajectories_and_spares_the_first(
    tmp_path, toy_registry
):
    trainer = _trained_toy(tmp_path, toy_registry)
    head = trainer.run.loss_head.eval()
    pool = _toy_pool(trainer, 3)
    batch = {**pool, "index": torch.arange(6)}
    start = head.initial_carry(batch)
    plain = head.model.load_halted(start, batch).inner["z"]

    noisy = _noise(head)(start, batch)
    z = noisy.inner["z"]
    assert not noisy.halted.any()  # the step keeps the noisy latent instead of resetting it
    assert torch.equal(z[0], plain[0]) and torch.equal(z[3], plain[3])  # trajectory 0: no noise
    assert not torch.equal(z[1], plain[1]) and not torch.equal(z[1], z[2]) and not torch.equal(z[1], z[4])
    assert (z - plain).std().item() == pytest.approx(0.5 * (4 / 6) ** 0.5, rel=0.1)  # 4 of 6 rows noisy
    assert torch.equal(_noise(head)(start, batch).inner["z"], z)  # the same seed, the same noise
    assert not torch.equal(_noise(head, seed=1)(start, batch).inner["z"], z)

    # "start" touches a puzzle's latent once; "every_step" at every step.
    running = noisy._replace(halted=torch.zeros(6, dtype=torch.bool))
    assert torch.equal(_noise(head)(running, batch).inner["z"], z)
    again = _noise(head, at="every_step")(running, batch).inner["z"]
    assert torch.equal(again[0], z[0]) and not torch.equal(again[1], z[1])
    with pytest.raises(ConfigError, match=r"trajectory_noise_states names 'z_L', which the model's carry lacks"):
        _noise(head, states=["z_L"])(start, batch)


def test_trajectory_zero_solves_exactly_as_the_plain_pool(tmp_path, toy_registry):
    trainer = _trained_toy(tmp_path, toy_registry)
    head = trainer.run.loss_head.eval()
    plain = run_pool(head, head, _toy_pool(trainer, 1), batch_size=2, max_steps=3, adaptive=False)
    noisy = run_pool(
        head, head, _toy_pool(trainer, 3), batch_size=4, max_steps=3, adaptive=False, noise=_noise(head, std=2.0)
    )
    assert torch.equal(noisy.preds[::3], plain.preds) and torch.equal(noisy.steps[::3], plain.steps)
    assert torch.allclose(noisy.q_halt[::3], plain.q_halt)
    assert not torch.allclose(noisy.q_halt[1::3], plain.q_halt)  # the noisy trajectories went elsewhere


def _evaluate(trainer, tmp_path, name, **settings):
    return evaluate_split(
        trainer.run.loss_head,
        trainer.run.eval_data,
        [("exact", ExactEvaluator(ExactConfig(), EvalContext(trainer.run.metadata, tmp_path)))],
        EvalConfig(**settings),
        halt_max_steps=3,
        q_continue=False,
        output_dir=tmp_path / name,
        predictions=True,
    )


def _without_timing(results):
    return {k: v for k, v in results.items() if "second" not in k}


def test_trajectories_add_the_selection_figures_and_leave_todays_results_as_they_were(tmp_path, toy_registry):
    trainer = _trained_toy(tmp_path, toy_registry)
    today = _evaluate(trainer, tmp_path, "today")
    one = _evaluate(trainer, tmp_path, "one", trajectories=1, trajectory_noise=0.5)
    assert _without_timing(one) == _without_timing(today) and not any(k.startswith("vote/") for k in one)
    noisy = dict(trajectories=4, trajectory_noise=1.0, halting="adaptive", seed=5)
    selected = _evaluate(trainer, tmp_path, "selected", **noisy)
    adaptive = _evaluate(trainer, tmp_path, "adaptive", halting="adaptive")
    assert {k: v for k, v in _without_timing(selected).items() if not k.startswith("vote/")} == _without_timing(
        adaptive
    )
    for name in ("selected", "adaptive"):  # the plain pass's predictions are today's
        assert (tmp_path / name / "predictions.jsonl").read_text() == (
            tmp_path / "adaptive" / "predictions.jsonl"
        ).read_text()
    assert selected["vote/single_exact_accuracy"] == selected["eval/exact_accuracy"]  # trajectory 0: no noise
    assert selected["vote/copies"] == 4 and selected["vote/puzzles"] == 16 and selected["vote/puzzles_per_second"] > 0
    rules = ("single", "majority", "best_q", "halt_first")
    assert all(selected["vote/any_exact_accuracy"] >= selected[f"vote/{rule}_exact_accuracy"] for rule in rules)
    assert _without_timing(_evaluate(trainer, tmp_path, "again", **noisy)) == _without_timing(selected)  # seeded
    written = json.loads((tmp_path / "selected" / "steps.json").read_text())["results"]
    assert written["vote/best_q_exact_accuracy"] == selected["vote/best_q_exact_accuracy"]
    table = format_votes(selected)
    assert table.startswith("test-time selection over 4 copies of each of 16 puzzles (4 trajectories, noise std 1):")
    assert [line.split()[0] for line in table.splitlines()[2:7]] == [
        "accuracy@1",
        "majority",
        "best",
        "halt-first",
        "oracle",
    ]
    fixed = _evaluate(trainer, tmp_path, "fixed", trajectories=2, trajectory_noise=1.0)
    assert "vote/halt_first_exact_accuracy" not in fixed  # every copy runs the cap: it would be best Q
    assert "halt-first: adaptive halting only" in format_votes(fixed)


def test_rr_eval_reports_trajectories_and_refuses_bad_values_in_one_line(tmp_path, toy_registry):
    from click.testing import CliRunner

    from rrcore.cli.main import main

    assert CliRunner().invoke(main, ["run", str(toy_experiment(tmp_path / "exp.toml", epochs=1))]).exit_code == 0
    run = str(tmp_path / "runs" / "toy")
    output = tmp_path / "scores"
    options = ["--trajectories", "3", "--trajectory-noise", "0.5", "--halting", "adaptive", "--output", str(output)]
    result = CliRunner().invoke(main, ["eval", run, *options])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert (
        printed["vote/trajectories"] == 3 and printed["vote/single_exact_accuracy"] == printed["exact/exact_accuracy"]
    )
    assert "test-time selection over 3 copies of each of 16 puzzles (3 trajectories, noise std 0.5):" in result.stderr
    assert json.loads((output / "steps.json").read_text())["results"]["vote/puzzles_per_second"] > 0

    for arguments, message in [
        (["--trajectories", "0"], "--trajectories 0: must be >= 1"),
        (["--trajectories", "2", "--trajectory-noise", "-0.5"], "--trajectory-noise -0.5: must be a number >= 0"),
        (["--set", "eval.trajectory_noise=-1"], "eval.trajectory_noise = -1: must be >= 0"),
        (["--trajectories", "2"], "trajectories = 2 needs trajectory_noise > 0"),
    ]:
        result = CliRunner().invoke(main, ["eval", run, *arguments])
        assert result.exit_code == 2, (arguments, result.output)
        assert result.stderr.startswith("rr: error: ") and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trajectory_noise_keeps_the_compiled_step_one_graph_that_never_waits(bundled_registry, tmp_path):
    from gradient_helpers import EXAMPLES

    from rrcore.tools.benchmark import _compile_counters

    settings = ["eval.trajectories=4", "eval.trajectory_noise=0.5", "eval.trajectory_noise_at='every_step'"]
    experiment = load_experiment(
        EXAMPLES / "sudoku4x4-trm.toml",
        [
            "run.device='cuda'",
            "train.compile='on'",
            "data.train_size=200",
            "data.test_size=64",
            "train.eval_global_batch_size=32",
            *settings,
        ],
    )
    trainer = Trainer(experiment, run_dir=tmp_path / "run")
    start = _compile_counters()
    results = trainer.evaluate(tmp_path / "eval")  # compiles the evaluation step
    assert results["vote/copies"] == 4 and results["vote/single_exact_accuracy"] == results["eval/exact_accuracy"]
    warm = _compile_counters()
    assert warm["graph_breaks"] == start["graph_breaks"] and warm["cudagraph_skips"] == start["cudagraph_skips"]

    head, step = trainer.run.loss_head, trainer.run.step_fn
    noise = TrajectoryNoise.from_settings(head, experiment.eval)
    batch = next(iter(trainer.run.eval_data.eval_batches()))
    batch = {k: batch[k] for k in ("inputs", "labels", "puzzle_identifiers")}
    batch["index"] = torch.arange(batch["inputs"].shape[0], device="cuda")
    with eval_mode(head):
        carry = head.initial_carry(batch)
        carry, *_ = step(noise(carry, batch), batch)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(6):
                carry, *_ = step(noise(carry, batch), batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert _compile_counters() == warm, "trajectory noise made the step recompile"
    assert _without_timing(trainer.evaluate(tmp_path / "again")) == _without_timing(results)  # seeded noise
