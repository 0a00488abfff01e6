"""rr solve on an ARC task JSON: the first test input, the blank puzzle embedding, the
check against the test output, and the augmentations' inverses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from arc_testdata import write_combined
from click.testing import CliRunner
from rr_arc.grids import encode
from rr_arc.task import ArcPuzzleTask, grid_of

import rrcore.tools.solve
from rrcore.cli.main import main
from rrcore.contracts.protocols import PuzzleError
from rrcore.testing import train_briefly

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "arc1-trm.toml"
TASK = ArcPuzzleTask(None, SimpleNamespace(blank_identifier_id=0))


def per_task_json(shared_tasks, subset: str, task_id: str, with_outputs: bool = True) -> dict:
    """A task as the ARC repositories' per-task files hold it (test outputs inline)."""
    challenges, solutions = shared_tasks[subset]
    task = json.loads(json.dumps(challenges[task_id]))
    if with_outputs:
        for pair, output in zip(task["test"], solutions[task_id]):
            pair["output"] = output
    return task


@pytest.fixture(scope="session")
def arc_run(tmp_path_factory, shared_tasks) -> Path:
    """A tiny TRM trained two steps on the test tasks; its ARC files and built data set are
    then deleted, as rr solve must not need them."""
    if not EXAMPLE.exists():
        pytest.skip("runs from a source checkout (examples/)")
    folder = tmp_path_factory.mktemp("arc-solver")
    for subset, (challenges, solutions) in shared_tasks.items():
        write_combined(folder / "arc", subset, challenges, solutions)
    result = train_briefly(
        EXAMPLE,
        folder,
        [
            f"data.path={str(folder / 'arc')!r}",
            "data.train_subsets=['training']",
            "data.num_aug=1",
            "data.drop_leaks=false",
            "model.hidden_size=32",
            "model.num_heads=2",
            "model.L_layers=1",
            "model.H_cycles=1",
            "model.L_cycles=1",
            "model.puzzle_emb_ndim=32",
            "model.puzzle_emb_len=1",
            "act.halt_max_steps=2",
            "train.global_batch_size=8",
            "train.max_steps=2",
            "train.eval_interval=0",
            "train.lr_warmup_steps=1",
            "run.cpu_threads=1",
        ],
    )
    shutil.rmtree(folder / "arc")
    shutil.rmtree(folder / "cache")
    return result.run_dir


def test_a_task_json_gives_its_first_test_input_and_output(shared_tasks):
    raw = per_task_json(shared_tasks, "evaluation", "12997ef3")
    puzzle = TASK.parse(json.dumps(raw))
    assert (puzzle.inputs == encode(np.array(raw["test"][0]["input"], dtype=np.uint8)).reshape(-1)).all()
    assert (puzzle.answer == np.array(raw["test"][0]["output"])).all()
    assert "solving test input 1 of 2" in puzzle.note
    assert "blank puzzle embedding (identifier 0)" in puzzle.note
    assert f"does not see its {len(raw['train'])} train pairs" in puzzle.note
    keyed = TASK.parse(json.dumps({"00576224": per_task_json(shared_tasks, "evaluation", "00576224", False)}))
    assert keyed.answer is None and keyed.note.startswith("task 00576224: solving the test input (2x2)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{'train': []}", "not a task JSON: Expecting property name enclosed in double quotes at line 1"),
        ("[1, 2]", "expected a task object with 'train' and 'test' lists"),
        ('{"train": [{"input": [[1]], "output": [[1]]}]}', r"expected a task object .* got \['train'\]"),
        (
            '{"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[1, 12]]}]}',
            r"^test pair 0 input: cell \(0, 1\) is 12, colours must be integers 0-9$",
        ),
        ('{"train": [{"input": [[1]]}], "test": [{"input": [[1]]}]}', "^train pair 0: needs 'input' and 'output'$"),
        ('{"train": [{"input": [[1]], "output": [[1]]}], "test": []}', "no test pairs"),
    ],
)
def test_bad_task_json_is_named(text, message):
    with pytest.raises(PuzzleError, match=message):
        TASK.parse(text)


def test_the_check_compares_with_the_test_output():
    answer = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    inputs = encode(answer).reshape(-1)
    right = encode(answer).reshape(-1)
    assert TASK.check(inputs, right, answer=answer).message == "matches the test output (2x3)"
    assert TASK.check(inputs, right, answer=answer).ok
    wrong = answer.copy()
    wrong[1, 2] = 0
    check = TASK.check(inputs, encode(wrong).reshape(-1), answer=answer)
    assert not check.ok and check.message == "1 of 6 cells differ from the test output (first at row 2, column 3)"
    check = TASK.check(inputs, encode(answer[:1]).reshape(-1), answer=answer)
    assert not check.ok and check.message == "a 1x3 grid; the test output is 2x3"
    assert TASK.check(inputs, np.zeros(900, dtype=np.uint8), answer=answer).ok is False
    unchecked = TASK.check(inputs, right)
    assert unchecked.ok is None and unchecked.message.startswith("no answer to check")
    assert TASK.decode(right) == "[[1,2,3],[4,5,6]]" and TASK.render(right) == "1 2 3\n4 5 6"


def test_augmentations_change_the_grid_and_invert_exactly():
    grids = [np.arange(6, dtype=np.uint8).reshape(2, 3), np.array([[0, 9], [9, 0], [3, 3]], dtype=np.uint8)]
    inputs = np.stack([encode(g).reshape(-1) for g in grids])
    copies, state = TASK.augment(inputs, 6, np.random.default_rng(0))
    assert copies.shape == (2, 6, 900) and (copies[:, 0] == inputs).all()
    assert not all((copies[0, k] == inputs[0]).all() for k in range(1, 6))
    assert (TASK.invert(copies, state) == inputs[:, None]).all()
    assert sorted(grid_of(copies[0, 3]).ravel() != 0) == sorted(grids[0].ravel() != 0)  # 0 stays background


def test_rr_solve_answers_a_task_after_its_data_is_deleted(arc_run, shared_tasks, tmp_path):
    assert not (arc_run.parent.parent / "cache").exists()
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(per_task_json(shared_tasks, "evaluation", "00576224")))
    result = CliRunner().invoke(main, ["solve", str(arc_run), str(task_file)])
    assert result.exit_code in (0, 1), result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("note: solving the test input (2x2) with the blank puzzle embedding (identifier 0)")
    assert lines[-1].startswith("steps ") and "of at most 2 | Q-confidence" in lines[-1]
    verdict_ok = " | check ok: matches the test output (6x6)" in lines[-1]
    assert verdict_ok == (result.exit_code == 0)


def test_rr_solve_says_when_there_is_no_answer_to_check(arc_run, shared_tasks, monkeypatch):
    """With the model's answer fixed to a grid, a task without its test output is unchecked (exit 0)."""
    drawn = encode(np.array([[3, 4], [4, 3]], dtype=np.uint8)).reshape(-1)
    real_pool = rrcore.tools.solve.run_pool

    def answering(*args, **kwargs):
        result = real_pool(*args, **kwargs)
        result.preds[:] = rrcore.tools.solve.torch.as_tensor(drawn)
        return result

    monkeypatch.setattr(rrcore.tools.solve, "run_pool", answering)
    raw = per_task_json(shared_tasks, "evaluation", "00576224", with_outputs=False)
    result = CliRunner().invoke(main, ["solve", str(arc_run), "-", "--json"], input=json.dumps(raw))
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["solution"] == "[[3,4],[4,3]]" and record["grid"] == "3 4\n4 3"
    assert record["check"] == {
        "ok": None,
        "message": "no answer to check (the task JSON has no test output); a 2x2 grid",
    }
    assert "blank puzzle embedding" in record["note"]


def test_rr_solve_rejects_a_malformed_task_in_one_line(arc_run):
    result = CliRunner().invoke(main, ["solve", str(arc_run), '{"train": [], "tests": []}'])
    assert result.exit_code == 2
    assert result.stderr.startswith("rr: error: puzzle: expected a task object with 'train' and 'test' lists")
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout
