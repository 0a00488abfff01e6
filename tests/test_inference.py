"""Adaptive halting with batch refill, the step cap, the step table and predictions on disk."""

from __future__ import annotations

import json

import torch
from torch import nn
from toy_helpers import toy_experiment

from rrcore.act import ACTConfig, ACTLossConfig, ACTLossHead, ACTModel
from rrcore.config import load_experiment
from rrcore.inference import EvalConfig, evaluate_split, finish_table, run_pool, step_table
from rrcore.trainer import Trainer, run_evaluation


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
    batches = trainer.train_data.train_batches()
    for _ in range(6):
        trainer.train_step(next(batches)[1], {})
    return trainer


def test_fixed_halting_through_the_pool_gives_the_batched_results(tmp_path, toy_registry):
    trainer = _trained_toy(tmp_path, toy_registry, eval_global_batch_size=6)  # 16 puzzles: padded last batch
    from rrcore.builtin import ExactConfig, ExactEvaluator
    from rrcore.evaluation import EvalContext

    def evaluators():
        context = EvalContext(trainer.metadata, tmp_path)
        return [("exact", ExactEvaluator(ExactConfig(), context))]

    batched = run_evaluation(trainer.loss_head, trainer.eval_data, evaluators(), 3, output_dir=tmp_path / "batched")
    pooled = evaluate_split(
        trainer.loss_head,
        trainer.eval_data,
        evaluators(),
        EvalConfig(),
        halt_max_steps=3,
        q_continue=False,
        output_dir=tmp_path / "out",
        predictions=True,
        trace=True,
    )
    assert {k: v for k, v in pooled.items() if k.startswith("exact/")} == batched
    assert pooled["eval/mean_steps"] == 3.0 and pooled["eval/puzzles_per_second"] > 0
    assert pooled["eval/exact_accuracy"] == batched["exact/exact_accuracy"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [row["index"] for row in rows] == list(range(16))
    assert all(len(row["trace"]) == 3 and row["trace"][-1] == row["prediction"] for row in rows)
    assert sum(row["correct"] for row in rows) / 16 == batched["exact/exact_accuracy"]
    table = json.loads((tmp_path / "out" / "steps.json").read_text())
    assert table["steps"][-1]["exact_accuracy"] == batched["exact/exact_accuracy"]
