"""The rubik data set builder and the simulating evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rr_rubik import cube, plugin
from rr_rubik.builder import RubikDataConfig, build_dataset
from rr_rubik.evaluator import RubikEvalConfig, RubikEvaluator
from rr_rubik.tokens import ANSWER_LEN, END, MOVE_BASE, STATE_LEN, decode_states, encode_states

from rrcore.contracts.protocols import EvalContext
from rrcore.contracts.registry import load_registry
from rrcore.data.format import validate_split
from rrcore.data.loader import PuzzleDataset


@pytest.fixture(scope="session")
def rubik_dataset(tmp_path_factory):
    cache = tmp_path_factory.mktemp("rubik-cache")
    config = RubikDataConfig(train_size=2000, test_size=330, seed=3)
    return build_dataset(config, cache), cube.distance_table(cache)


def test_registered_through_the_hooks():
    registry = load_registry(entry_point_group=None, extra_modules=[plugin])
    assert registry.get("dataset", "rubik").config_class is RubikDataConfig
    assert registry.get("evaluator", "rubik").factory is RubikEvaluator


def test_state_tokens_round_trip():
    indices = np.array([0, 1, 12345, cube.NUM_STATES - 1])
    assert np.array_equal(decode_states(encode_states(indices)), indices)


def test_built_labels_are_optimal_solutions_and_splits_are_disjoint(rubik_dataset):
    folder, table = rubik_dataset
    states = {}
    for split in ("train", "test"):
        metadata, sets = validate_split(folder / split)
        assert metadata.seq_len == STATE_LEN + ANSWER_LEN and metadata.num_puzzle_identifiers == 1
        inputs, labels = np.asarray(sets["all"].inputs), np.asarray(sets["all"].labels)
        states[split] = decode_states(inputs[:, :STATE_LEN])
        distances = table[states[split]]
        # Distances are drawn uniformly from 1..11: every distance appears, none dominates.
        histogram = np.bincount(distances, minlength=12)
        assert histogram[0] == 0 and histogram[1:].min() > 0.5 * len(distances) / 11
        assert np.array_equal(np.load(folder / split / "all__distances.npy"), distances)
        for state, label, distance in zip(states[split][:300], labels[:300], distances[:300]):
            answer = label[STATE_LEN:]
            moves = [int(t) - MOVE_BASE for t in answer if t != END]
            assert len(moves) == distance and all(t == END for t in answer[distance:])
            assert cube.CubeState.from_index(int(state)).apply_moves(moves) == cube.CubeState.solved()
    # Distances 1-3 have too few states (9, 54, 321) to keep train and test apart.
    far = table[states["test"]] >= 4
    assert not set(states["test"][far].tolist()) & set(states["train"].tolist())


def evaluate(folder, preds_for):
    """Run the evaluator over the test split, predicting ``preds_for(batch)``."""
    data = PuzzleDataset(folder / "test", global_batch_size=64)
    context = EvalContext(metadata=data.metadata, data_dir=folder / "test")
    evaluator = RubikEvaluator(RubikEvalConfig(), context)
    evaluator.begin_eval(folder)
    for batch in data.eval_batches():
        evaluator.update_batch(batch, {"preds": preds_for(batch)})
    return evaluator.result()


def label_preds(batch):
    return torch.where(batch["labels"] == -100, 0, batch["labels"])


def test_evaluator_scores_the_labels_as_solved_optimal_and_exact(rubik_dataset):
    folder, _ = rubik_dataset
    result = evaluate(folder, label_preds)
    assert result["count"] == 330  # padding rows of the last batch are not counted
    assert result["solve_rate"] == result["optimal_rate"] == result["exact_accuracy"] == 1.0


def alternative_optimal(state: int, table, perm_table, ori_table) -> list[int] | None:
    """An optimal solution whose first move is not the builder's choice, if one exists."""
    distance = table[state]
    firsts = [
        m
        for m in range(cube.NUM_MOVES)
        if table[cube.neighbours(np.array([state]), perm_table, ori_table, m)[0]] == distance - 1
    ]
    if len(firsts) < 2:
        return None
    after = int(cube.neighbours(np.array([state]), perm_table, ori_table, firsts[1])[0])
    return [firsts[1]] + cube.optimal_solution(after, table, perm_table, ori_table)


def answer_tokens(moves: list[int]) -> list[int]:
    return [MOVE_BASE + m for m in moves] + [END] * (ANSWER_LEN - len(moves))


def test_evaluator_accepts_any_optimal_solution_and_rejects_others(rubik_dataset):
    folder, table = rubik_dataset
    perm_table, ori_table = cube.move_tables()
    kinds = {}

    def preds_for(batch):
        preds = label_preds(batch).clone()
        states = decode_states(batch["inputs"][:, :STATE_LEN].numpy())
        for row, (state, index) in enumerate(zip(states, batch["index"].tolist())):
            if not batch["valid"][row]:
                continue
            label = [int(t) - MOVE_BASE for t in preds[row, STATE_LEN:] if t != END]
            kind = index % 4
            if kind == 0:  # a different optimal solution
                moves = alternative_optimal(int(state), table, perm_table, ori_table)
                if moves is None or moves == label:
                    kind, moves = 3, label
            elif kind == 1:  # stops one move short: does not solve
                moves = label[:-1]
            elif kind == 2 and len(label) <= ANSWER_LEN - 2:  # a wasted U U': solves, too long
                moves = label[:1] + [0, 2] + label[1:]
            else:
                kind, moves = 3, label
            kinds[index] = kind
            preds[row, STATE_LEN:] = torch.tensor(answer_tokens(moves))
        return preds

    result = evaluate(folder, preds_for)
    counts = np.bincount(list(kinds.values()), minlength=4)
    assert counts[0] > 10  # most states at distance 9-11 have several optimal first moves
    assert result["solve_rate"] == pytest.approx((counts[0] + counts[2] + counts[3]) / 330)
    assert result["optimal_rate"] == pytest.approx((counts[0] + counts[3]) / 330)
    assert result["exact_accuracy"] == pytest.approx(counts[3] / 330)


def test_evaluator_stops_reading_at_the_first_non_move_token(rubik_dataset):
    folder, _ = rubik_dataset
    data = PuzzleDataset(folder / "test", global_batch_size=330)
    batch = next(iter(data.eval_batches()))
    context = EvalContext(metadata=data.metadata, data_dir=folder / "test")
    evaluator = RubikEvaluator(RubikEvalConfig(), context)
    preds = label_preds(batch)
    solved, length = evaluator.simulate(batch["inputs"], preds)
    assert solved.all()
    # Moves after an END (here U2 in every free slot) are ignored.
    garbage = torch.where(preds == END, MOVE_BASE + 1, preds)
    garbage[:, STATE_LEN:] = torch.where(torch.arange(ANSWER_LEN) == length[:, None], END, garbage[:, STATE_LEN:])
    assert evaluator.simulate(batch["inputs"], garbage)[0].all()
    # An empty answer solves nothing (no test state is solved).
    empty = preds.clone()
    empty[:, STATE_LEN:] = END
    assert not evaluator.simulate(batch["inputs"], empty)[0].any()
