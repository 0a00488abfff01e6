"""The arc evaluator end to end: build -> PuzzleDataset eval batches -> votes -> pass@K and files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from arc_testdata import augmented_tokens
from rr_arc.builder import AUGMENTATIONS_FILE, ArcDataConfig, build_arc
from rr_arc.evaluator import ArcEvaluator, ArcEvaluatorConfig, validate_submission
from rr_arc.reader import ArcFormatError

from rrcore.contracts.protocols import EvalContext
from rrcore.data.loader import PuzzleDataset


def _build(arc_dir: Path, tmp_path: Path, **values) -> Path:
    config = ArcDataConfig(
        path=str(arc_dir),
        train_subsets=["training", "evaluation"],
        test_subset="evaluation",
        num_aug=values.pop("num_aug", 7),
        **values,
    )
    build_arc(config, tmp_path / "data")
    return tmp_path / "data" / "test"


def _evaluate(
    split: Path, tmp_path: Path, make_preds, config: ArcEvaluatorConfig | None = None, batch_size: int = 16
) -> tuple[dict, ArcEvaluator]:
    """Run the evaluator over the split's eval batches; ``make_preds(batch) -> (preds, q_halt_logits)``."""
    dataset = PuzzleDataset(split, global_batch_size=batch_size)
    context = EvalContext(metadata=dataset.metadata, data_dir=split)
    evaluator = ArcEvaluator(config or ArcEvaluatorConfig(), context)
    evaluator.begin_eval(tmp_path / "eval")
    for batch in dataset.eval_batches():
        preds, q = make_preds(batch)
        evaluator.update_batch(batch, {"preds": preds, "q_halt_logits": q})
    return evaluator.result(), evaluator


def _oracle(batch):
    return torch.where(batch["labels"] < 0, 0, batch["labels"]), torch.zeros(len(batch["labels"]))


@pytest.mark.parametrize("translate_test", [False, True])
def test_oracle_scores_100_percent(arc_dir, tmp_path, translate_test):
    split = _build(arc_dir, tmp_path, translate_test=translate_test)
    metrics, _ = _evaluate(split, tmp_path, _oracle, batch_size=13)  # last batch padded
    assert metrics["num_tasks"] == 4 and metrics["num_test_outputs"] == 5
    assert metrics["num_predictions"] == 5 * 8  # every augmented copy of every test input, padding ignored
    for k in (1, 2, 5, 10, 100, 1000):
        assert metrics[f"pass@{k}"] == 1.0 and metrics[f"all_tests_pass@{k}"] == 1.0
    if translate_test:
        assert dict(np.load(split / AUGMENTATIONS_FILE))["example_offset"].any()
    submission = json.loads((tmp_path / "eval" / "submission.json").read_text())
    tasks = json.loads((split / "arc_test_tasks.json").read_text())
    validate_submission(submission, tasks)
    for task_id, task in tasks.items():
        for entry, pair in zip(submission[task_id], task["test"]):
            assert entry["attempt_1"] == pair["output"]


def test_wrong_predictions_score_zero(arc_dir, tmp_path):
    split = _build(arc_dir, tmp_path)

    def shifted(batch):  # right shape, every colour changed (1 -> 2, ..., 9 -> 0 after de-augmentation)
        preds, q = _oracle(batch)
        colour = preds >= 2
        return torch.where(colour, (preds - 2 + 1) % 10 + 2, preds), q

    metrics, _ = _evaluate(split, tmp_path, shifted)
    assert all(metrics[f"pass@{k}"] == 0.0 for k in (1, 2, 1000))
    assert metrics["all_tests_pass@1000"] == 0.0
    empty, _ = _evaluate(split, tmp_path, lambda b: (torch.zeros_like(b["inputs"]), torch.zeros(len(b["inputs"]))))
    assert empty["pass@1000"] == 0.0 and empty["empty_predictions"] == empty["num_predictions"] == 40
    validate_submission(json.loads((tmp_path / "eval" / "submission.json").read_text()))  # [[0]] placeholders


def _voting_predictions(split: Path, plan: dict[int, tuple[np.ndarray, float]]):
    """Predictions making augmented copy ``a`` of every test input vote for ``plan[a] = (grid, q logit)``."""
    table = dict(np.load(split / AUGMENTATIONS_FILE))
    first_of_task: dict[int, int] = {}
    for identifier in np.unique(table["example_puzzle"]):
        first_of_task.setdefault(int(table["puzzle_task"][identifier]), int(identifier))

    def make(batch):
        preds, q = [], []
        for index, valid in zip(batch["index"].tolist(), batch["valid"].tolist()):
            index = index if valid else 0
            identifier = int(table["example_puzzle"][index])
            copy = identifier - first_of_task[int(table["puzzle_task"][identifier])]
            grid, logit = plan[copy]
            preds.append(
                augmented_tokens(
                    grid,
                    int(table["puzzle_transform"][identifier]),
                    table["puzzle_colours"][identifier],
                    tuple(table["example_offset"][index]),
                )
            )
            q.append(logit)
        return torch.from_numpy(np.stack(preds)), torch.tensor(q)

    return make


def _task_result(tmp_path: Path, task_id: str) -> dict:
    return json.loads((tmp_path / "eval" / "arc_results.json").read_text())["tasks"][task_id]


def test_hand_made_vote_counts_then_q(arc_dir, tmp_path):
    """Votes on task 00576224's test input (the other tasks get its grids too and fail)."""
    split = _build(arc_dir, tmp_path, num_aug=5)  # 6 copies of each test input
    truth = np.array(json.loads((split / "arc_test_tasks.json").read_text())["00576224"]["test"][0]["output"])
    wrong_a, wrong_b = (truth + 1) % 10, (truth + 2) % 10
    # 3 votes for wrong_a, 2 for the truth, 1 for wrong_b: the truth ranks second.
    plan = {
        0: (wrong_a, 0.0),
        1: (wrong_a, 0.0),
        2: (wrong_a, 0.0),
        3: (truth, 5.0),
        4: (truth, 5.0),
        5: (wrong_b, 9.0),
    }
    metrics, _ = _evaluate(split, tmp_path, _voting_predictions(split, plan))
    task = _task_result(tmp_path, "00576224")
    assert [c["votes"] for c in task["tests"][0]["candidates"]] == [3, 2, 1] and task["tests"][0]["correct_rank"] == 2
    assert task["pass@1"] == 0.0 and task["pass@2"] == 1.0
    assert metrics["pass@1"] == 0.0 and metrics["pass@2"] == 0.25  # 1 of the 4 tasks
    # A tie in votes goes to the higher mean Q-halt confidence.
    tie = {
        0: (wrong_a, -2.0),
        1: (wrong_a, -2.0),
        2: (truth, 3.0),
        3: (truth, 1.0),
        4: (wrong_b, 0.0),
        5: (wrong_b, 0.0),
    }
    metrics, _ = _evaluate(split, tmp_path, _voting_predictions(split, tie))
    results = _task_result(tmp_path, "00576224")["tests"][0]
    assert results["correct_rank"] == 1 and results["candidates"][0]["mean_q"] == pytest.approx(
        (1 / (1 + np.exp(-3.0)) + 1 / (1 + np.exp(-1.0))) / 2
    )
    assert metrics["pass@1"] == 0.25
    submission = json.loads((tmp_path / "eval" / "submission.json").read_text())
    assert submission["00576224"][0]["attempt_1"] == truth.tolist()
    assert submission["00576224"][0]["attempt_2"] in (wrong_a.tolist(), wrong_b.tolist())
    # Ranking by Q alone: wrong_b's single confident vote wins over the majority.
    q_first = {**plan, 5: (wrong_b, 20.0)}
    _evaluate(split, tmp_path, _voting_predictions(split, q_first), ArcEvaluatorConfig(ranking="q"))
    assert _task_result(tmp_path, "00576224")["tests"][0]["correct_rank"] == 2


def test_partial_credit_versus_all_or_nothing(arc_dir, tmp_path):
    split = _build(arc_dir, tmp_path, num_aug=2)
    table = dict(np.load(split / AUGMENTATIONS_FILE))

    def second_test_wrong(batch):  # task 12997ef3 has two test inputs: get only the first right
        preds, q = _oracle(batch)
        index = batch["index"].numpy().clip(max=len(table["example_test_index"]) - 1)
        task = table["puzzle_task"][table["example_puzzle"][index]]
        second = torch.from_numpy((table["task_ids"][task] == "12997ef3") & (table["example_test_index"][index] == 1))
        return torch.where(second[:, None] & (preds >= 2), (preds - 2 + 1) % 10 + 2, preds), q

    metrics, _ = _evaluate(split, tmp_path, second_test_wrong)
    assert metrics["pass@2"] == pytest.approx((3 + 0.5) / 4)  # TRM / ARC Prize: half credit for 12997ef3
    assert metrics["all_tests_pass@2"] == pytest.approx(3 / 4)  # HRM notebook: 12997ef3 fails


def test_submission_format_is_checked():
    good = {"t": [{"attempt_1": [[1, 2]], "attempt_2": [[0]]}]}
    validate_submission(good, {"t": {"test": [{}]}})
    bad = {
        "missing attempt": {"t": [{"attempt_1": [[1]]}]},
        "colour 10": {"t": [{"attempt_1": [[10]], "attempt_2": [[0]]}]},
        "ragged": {"t": [{"attempt_1": [[1], [1, 2]], "attempt_2": [[0]]}]},
        "not a list": {"t": {"attempt_1": [[1]], "attempt_2": [[0]]}},
    }
    for submission in bad.values():
        with pytest.raises(ArcFormatError):
            validate_submission(submission)
    with pytest.raises(ArcFormatError, match="1 entries for 2 test inputs"):
        validate_submission(good, {"t": {"test": [{}, {}]}})
    with pytest.raises(ArcFormatError, match="task ids differ"):
        validate_submission(good, {"u": {"test": [{}]}})


def test_evaluator_refuses_a_split_not_built_by_rr_arc(tmp_path):
    context = EvalContext(metadata=None, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="arc_test_tasks.json"):
        ArcEvaluator(ArcEvaluatorConfig(), context)


def _rank_main(rank: int, split: str, out: str, init_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        dataset = PuzzleDataset(Path(split), global_batch_size=6, rank=rank, world_size=2)
        context = EvalContext(metadata=dataset.metadata, data_dir=Path(split), rank=rank, world_size=2)
        evaluator = ArcEvaluator(ArcEvaluatorConfig(), context)
        evaluator.begin_eval(Path(out))
        for batch in dataset.eval_batches():
            evaluator.update_batch(batch, dict(zip(("preds", "q_halt_logits"), _oracle(batch))))
        metrics = evaluator.result()
        if rank == 0:
            (Path(out) / "metrics.json").write_text(json.dumps(metrics))
        else:
            assert metrics is None
    finally:
        dist.destroy_process_group()


def test_distributed_evaluation_gathers_every_rank(arc_dir, tmp_path):
    split = _build(arc_dir, tmp_path, num_aug=3)
    torch.multiprocessing.spawn(_rank_main, args=(str(split), str(tmp_path / "dist"), str(tmp_path / "init")), nprocs=2)
    metrics = json.loads((tmp_path / "dist" / "metrics.json").read_text())
    assert metrics["num_predictions"] == 5 * 4  # both ranks' halves of every batch
    assert metrics["pass@1"] == 1.0
