"""A trained 4x4 model as a solver: adaptive halting, rr solve, predictions and voting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from rr_sudoku.solver import solve
from rr_sudoku.task import SudokuTask

from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.contracts.protocols import PuzzleError
from rrcore.testing import train_briefly
from rrcore.tools.evaluate import evaluate_checkpoint

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sudoku4x4-trm.toml"
EXAMPLE_9X9 = EXAMPLE.with_name("sudoku9x9-easy-trm.toml")
SOLVED = "1234341221434321"
PUZZLE = "12.43.1221.34.21"  # SOLVED with five cells blanked


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """The README's 4x4 TRM-MLP, smaller, trained once for these tests (about 40 s; 95%+ exact)."""
    if not EXAMPLE.exists():
        pytest.skip("runs from a source checkout (examples/)")
    folder = tmp_path_factory.mktemp("solver")
    result = train_briefly(
        EXAMPLE,
        folder,
        [
            "train.max_steps=300",
            "train.eval_interval=0",
            "data.train_size=1000",
            "data.test_size=64",
            "model.hidden_size=32",
            "model.L_layers=1",
            "act.halt_max_steps=4",
            "run.cpu_threads=1",
        ],
    )
    return result.checkpoint


def _evaluate(checkpoint: Path, tmp_path: Path, *settings: str) -> dict[str, float]:
    experiment = load_experiment(checkpoint / "config.toml", list(settings))
    return evaluate_checkpoint(experiment, checkpoint, tmp_path, predictions=True)


def test_adaptive_halting_spends_fewer_steps_for_about_the_same_accuracy(checkpoint, tmp_path):
    fixed = _evaluate(checkpoint, tmp_path / "fixed", "eval.max_steps=8", "eval.sync_every=1")
    adaptive = _evaluate(
        checkpoint, tmp_path / "adaptive", "eval.max_steps=8", "eval.sync_every=1", "eval.halting='adaptive'"
    )
    assert fixed["eval/mean_steps"] == 8
    assert adaptive["eval/mean_steps"] < 4
    assert adaptive["eval/act_steps"] < fixed["eval/act_steps"] / 2
    assert abs(adaptive["sudoku/exact_accuracy"] - fixed["sudoku/exact_accuracy"]) <= 0.05
    table = json.loads((tmp_path / "fixed" / "steps.json").read_text())
    assert [row["step"] for row in table["steps"]] == list(range(1, 9))
    assert table["steps"][-1]["exact_accuracy"] == fixed["sudoku/exact_accuracy"]


def test_rr_solve_prints_a_grid_that_keeps_the_sudoku_rules(checkpoint):
    result = CliRunner().invoke(main, ["solve", str(checkpoint), PUZZLE, "--trace"])
    assert result.exit_code == 0, result.output
    grid = [line for line in result.stdout.splitlines() if "|" in line and "step" not in line]
    digits = "".join(c for line in grid for c in line if c.isdigit())
    assert (
        SudokuTask(None, SimpleNamespace(seq_len=16))
        .check(np.frombuffer(PUZZLE.encode(), np.uint8) * 0 + 1, np.array([int(d) + 1 for d in digits]))
        .ok
    )
    assert result.stdout.startswith("step 1: ")
    assert "check ok: every row, column and box holds 1-4 once" in result.stdout


def test_rr_solve_json_reads_a_grid_from_stdin(checkpoint):
    grid = "1 2 | . 4\n3 . | 1 2\n----+----\n2 1 | . 3\n4 . | 2 1\n"
    result = CliRunner().invoke(main, ["solve", str(checkpoint), "-", "--json"], input=grid)
    record = json.loads(result.stdout)
    assert record["puzzle"] == PUZZLE and record["check"]["ok"] and result.exit_code == 0
    assert 1 <= record["steps"] <= record["max_steps"] == 4 and 0.5 < record["confidence"] <= 1


@pytest.mark.parametrize(
    ("puzzle", "message"),
    [
        ("12.43.1221.34.2", "15 cells; this model solves 4x4 Sudoku, 16 cells"),
        ("12.43.1221.34.2x", "bad character 'x' at cell 16"),
        ("11.43.1221.34.21", "contradictory givens: digit 1 repeats in row 1"),
        ("." * 81, "81 cells (a 9x9 puzzle); this model solves 4x4 Sudoku"),
    ],
)
def test_rr_solve_rejects_a_bad_puzzle_in_one_line(checkpoint, puzzle, message):
    result = CliRunner().invoke(main, ["solve", str(checkpoint), puzzle])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"rr: error: puzzle: {message}")
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout


def test_rr_eval_writes_predictions_and_scores_test_time_selection(checkpoint, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "eval",
            str(checkpoint),
            "--output",
            str(tmp_path),
            "--trace",
            "--augmentations",
            "4",
            "--halting",
            "adaptive",
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert results["vote/augmentations"] == 4
    assert results["vote/single_exact_accuracy"] == pytest.approx(results["sudoku/exact_accuracy"])
    assert results["vote/any_exact_accuracy"] >= results["vote/majority_exact_accuracy"]
    assert "test-time selection over 4 copies of each of 64 puzzles (4 augmentations):" in result.stderr
    assert "steps used by adaptive halting (64 puzzles" in result.stderr
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 64 and rows[0]["index"] == 0
    first = rows[0]
    assert len(first["input"]) == len(first["prediction"]) == 16 and len(first["trace"]) == first["steps"]
    assert first["trace"][-1] == first["prediction"]
    assert sum(row["correct"] for row in rows) / 64 == pytest.approx(results["sudoku/exact_accuracy"])


def test_rr_eval_selects_over_augmentations_times_noisy_trajectories(checkpoint, tmp_path):
    options = ["--augmentations", "2", "--trajectories", "3", "--trajectory-noise", "0.3", "--halting", "adaptive"]
    result = CliRunner().invoke(main, ["eval", str(checkpoint), "--output", str(tmp_path), *options])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert results["vote/copies"] == 6 and results["vote/puzzles"] == 64
    assert results["vote/single_exact_accuracy"] == pytest.approx(results["sudoku/exact_accuracy"])
    rules = ("single", "majority", "best_q", "halt_first")
    assert all(results["vote/any_exact_accuracy"] >= results[f"vote/{rule}_exact_accuracy"] for rule in rules)
    assert "over 6 copies of each of 64 puzzles (2 augmentations x 3 trajectories, noise std 0.3)" in result.stderr


def test_rr_solve_with_trajectories_answers_by_q_and_says_how_many_agreed(checkpoint):
    options = ["--trajectories", "4", "--trajectory-noise", "0.3"]
    record = json.loads(CliRunner().invoke(main, ["solve", str(checkpoint), PUZZLE, "--json", *options]).stdout)
    assert record["trajectories"] == 4 and 1 <= record["agreeing"] <= 4 and record["check"]["ok"]
    plain = json.loads(CliRunner().invoke(main, ["solve", str(checkpoint), PUZZLE, "--json"]).stdout)
    assert "trajectories" not in plain and plain["solution"] == SOLVED
    result = CliRunner().invoke(main, ["solve", str(checkpoint), PUZZLE, *options])
    assert f"| {record['agreeing']} of 4 trajectories gave this answer | check ok" in result.stdout
    bad = CliRunner().invoke(main, ["solve", str(checkpoint), PUZZLE, "--trajectories", "0"])
    assert bad.exit_code == 2 and bad.stderr.strip() == (
        "rr: error: --trajectories 0: must be >= 1 (the runs of each puzzle; 1: no selection)"
    )


def test_rr_solve_needs_no_data_set_and_falls_back_to_it_for_older_runs(checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent.parent, run)
    no_data = tmp_path / "no-data"
    arguments = ["solve", str(run), PUZZLE, "--set", f"run.cache_dir={str(no_data)!r}"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0 and "check ok" in result.stdout, result.output
    assert (run / "dataset.json").exists() and not no_data.exists()
    (run / "dataset.json").unlink()  # a run made before rr kept the metadata: the data set is rebuilt
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0 and "check ok" in result.stdout, result.output
    assert any(no_data.glob("sudoku4x4-*/train/dataset.json"))


def test_an_export_solves_and_evaluates_as_its_checkpoint_without_the_run_or_unpickling(
    checkpoint, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent.parent, run)
    assert CliRunner().invoke(main, ["export", str(run), str(tmp_path / "export")]).exit_code == 0
    solved = CliRunner().invoke(main, ["solve", str(run), PUZZLE, "--json", "--trace"])
    evaluated = CliRunner().invoke(main, ["eval", str(run), "--output", str(tmp_path / "a")])
    shutil.rmtree(run)  # the export stands alone

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called while loading an export")

    monkeypatch.setattr("torch.load", refuse)
    no_data = tmp_path / "no-data"
    result = CliRunner().invoke(
        main,
        ["solve", str(tmp_path / "export"), PUZZLE, "--json", "--trace", "--set", f"run.cache_dir={str(no_data)!r}"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(solved.stdout) and not no_data.exists()
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "export"), "--output", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output

    def metrics(output: str) -> dict[str, float]:  # all but the timings
        return {k: v for k, v in json.loads(output).items() if "second" not in k}

    assert metrics(result.stdout) == metrics(evaluated.stdout)
    assert metrics(result.stdout)["eval/act_steps"] > 0
    # Every puzzle's answer, step count and Q-halt logit, not only the totals.
    assert (tmp_path / "a" / "predictions.jsonl").read_text() == (tmp_path / "b" / "predictions.jsonl").read_text()


def test_rr_solve_on_9x9_checks_the_answer_by_the_rules(tmp_path):
    """A tiny 9x9 model trained for seconds on puzzles with two blanks: whatever it answers for a
    held-out puzzle, the verdict rr solve prints must be right (ok exactly when the answer is the
    solution, which is unique), and the answer is drawn as a 9x9 grid with its boxes."""
    if not EXAMPLE_9X9.exists():
        pytest.skip("runs from a source checkout (examples/)")
    result = train_briefly(
        EXAMPLE_9X9,
        tmp_path,
        [
            "data.train_size=256",
            "data.test_size=16",
            "data.givens=79",
            "data.num_aug=0",
            "model.hidden_size=32",
            "model.L_layers=1",
            "model.L_cycles=1",
            "act.halt_max_steps=2",
            "train.max_steps=60",
            "train.eval_interval=0",
            "run.cpu_threads=1",
        ],
    )
    grid = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
    puzzle = grid[:3] + "." + grid[4:40] + "." + grid[41:]
    solutions, _ = solve([int(c) if c != "." else 0 for c in puzzle])
    assert len(solutions) == 1
    solution = "".join(str(d) for d in solutions[0])
    out = CliRunner().invoke(main, ["solve", str(result.run_dir), puzzle, "--json"])
    assert out.exit_code in (0, 1), out.output
    record = json.loads(out.stdout)
    assert record["puzzle"] == puzzle and len(record["grid"].splitlines()) == 11  # 9 rows, 2 box rules
    assert record["check"]["ok"] == (record["solution"] == solution), record
    if not record["check"]["ok"]:
        assert out.exit_code == 1 and record["check"]["message"]


def test_9x9_puzzles_parse_as_a_line_or_a_grid_and_augmentations_invert():
    task = SudokuTask(None, SimpleNamespace(seq_len=81))
    line = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
    grid = "\n".join(
        f"{line[r * 9 : r * 9 + 3]} | {line[r * 9 + 3 : r * 9 + 6]} | {line[r * 9 + 6 : r * 9 + 9]}" for r in range(9)
    )
    assert (task.parse(grid) == task.parse(line)).all() and task.decode(task.parse(grid)) == line
    with pytest.raises(PuzzleError, match="8 rows; a 9x9 grid has 9"):
        task.parse("\n".join(grid.splitlines()[:8]))
    tokens = task.parse(line)[None]
    copies, state = task.augment(tokens, 6, np.random.default_rng(0))
    assert (copies[:, 0] == tokens).all() and not (copies[:, 1] == tokens).all()
    assert (task.invert(copies, state) == tokens[:, None]).all()
