"""Builder: the core reader loads what it writes, groups and ratings, splits, caching."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest
from rr_sudoku.builder import RATINGS_FILE, SudokuDataConfig, build_dataset
from rr_sudoku.grid import from_tokens, valid_solutions
from rr_sudoku.reader import SudokuDataError

from rrcore.data.format import load_set
from rrcore.data.loader import PuzzleDataset

GOOD = "98.7..6..75..4......3..8.7.5....7.3...94.........2.1..3.......1.9...5.8...52....6"


def test_generated_4x4_loads_in_the_core_reader(tmp_path):
    config = SudokuDataConfig(source="generate", size=4, train_size=20, test_size=10, num_aug=3, jobs=1)
    folder = build_dataset(config, tmp_path)
    meta = json.loads((folder / "train" / "dataset.json").read_text())
    assert (meta["vocab_size"], meta["seq_len"], meta["num_puzzle_identifiers"]) == (6, 16, 1)
    assert (meta["pad_id"], meta["ignore_label_id"], meta["blank_identifier_id"]) == (0, 0, 0)
    train = load_set(folder / "train", "all")
    assert train.inputs.shape == (80, 16) and train.group_indices.tolist() == list(range(0, 81, 4))
    assert (np.asarray(train.puzzle_identifiers) == 0).all()
    puzzles, answers = from_tokens(train.inputs), from_tokens(train.labels)
    assert valid_solutions(puzzles, answers, 4).all()
    assert np.load(folder / "train" / RATINGS_FILE).shape == (80,)
    test = load_set(folder / "test", "all")
    train_set = {row.tobytes() for row in np.asarray(train.inputs)}
    assert not any(row.tobytes() in train_set for row in np.asarray(test.inputs))  # held out
    dataset = PuzzleDataset(folder / "train", global_batch_size=8)
    _, batch = next(dataset.train_batches())
    assert batch["inputs"].shape == (8, 16) and int(batch["labels"].min()) >= 2  # every cell labelled


def test_one_file_split_subsample_and_cache(tmp_path, shared_sudoku):
    source = tmp_path / "puzzles.txt"
    lines = (shared_sudoku / "puzzles2_17_clue.txt").read_text().splitlines()[3:63]
    source.write_text("\n".join(lines + ["12345"]) + "\n")
    config = SudokuDataConfig(train_path=str(source), test_size=10, train_size=30, num_aug=2, jobs=1)
    folder = build_dataset(config, tmp_path / "cache")
    meta = json.loads((folder / "test" / "dataset.json").read_text())
    assert meta["total_groups"] == 10 and meta["sudoku"]["skipped"] == 1
    assert meta["sudoku"]["problems"] == [f"{source}:61: 5 characters; a 9x9 puzzle has 81"]
    assert json.loads((folder / "train" / "dataset.json").read_text())["sudoku"]["examples"] == 90
    stamp = (folder / "train" / "dataset.json").stat().st_mtime_ns
    assert build_dataset(config, tmp_path / "cache") == folder  # reused, not rebuilt
    assert (folder / "train" / "dataset.json").stat().st_mtime_ns == stamp
    source.write_text("\n".join(lines) + "\n")  # the source changed: a new build
    assert build_dataset(config, tmp_path / "cache") != folder
    with pytest.raises(SudokuDataError, match=r"puzzles.txt:61"):
        source.write_text("\n".join(lines + ["12345"]) + "\n")
        build_dataset(SudokuDataConfig(train_path=str(source), test_size=10, on_error="reject"), tmp_path)


def test_several_solutions_are_reported_with_their_line(tmp_path):
    source = tmp_path / "p.txt"
    source.write_text(f"{GOOD}\n{'.' * 81}\n")
    config = SudokuDataConfig(train_path=str(source), test_path=str(source), jobs=1, on_error="reject")
    with pytest.raises(SudokuDataError, match=r"p.txt:2: several solutions"):
        build_dataset(config, tmp_path)


def test_csv_source_keeps_its_ratings(tmp_path):
    from rr_sudoku.solver import label

    answer = "".join(map(str, label(np.array([0 if c == "." else int(c) for c in GOOD])).solution))
    for name in ("train.csv", "test.csv"):
        (tmp_path / name).write_text(f"source,question,answer,rating\nx,{GOOD},{answer},42\n")
    config = SudokuDataConfig(train_path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"))
    folder = build_dataset(config, tmp_path / "cache")
    assert np.load(folder / "test" / RATINGS_FILE).tolist() == [42]


def test_csv_puzzles_with_several_solutions_are_refused_like_a_line_file_s(tmp_path):
    from click.testing import CliRunner
    from rr_sudoku.solver import label

    from rrcore.cli.main import main

    answer = "".join(map(str, label(np.array([0 if c == "." else int(c) for c in GOOD])).solution))
    header = "source,question,answer,rating\n"
    # A blank grid: the answer solves it, and so do many other grids.
    (tmp_path / "train.csv").write_text(f"{header}x,{GOOD},{answer},42\nx,{'.' * 81},{answer},0\n")
    (tmp_path / "test.csv").write_text(f"{header}x,{GOOD},{answer},42\n")
    config = SudokuDataConfig(
        train_path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"), jobs=1, on_error="reject"
    )
    with pytest.raises(SudokuDataError, match=r"train.csv:3: several solutions"):
        build_dataset(config, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    result = CliRunner().invoke(
        main,
        ["data", "build", "sudoku", "--cache-dir", str(tmp_path / "cache")]
        + [
            f"--set={key}={value!r}"
            for key, value in [("train_path", config.train_path), ("test_path", config.test_path)]
        ]
        + ["--set=on_error=reject", "--set=jobs=1"],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"rr: error: data plugin 'sudoku': {tmp_path / 'train.csv'}:3: several solutions (set on_error = \"skip\" to drop them)"
    )
    skipped = build_dataset(attrs.evolve(config, on_error="skip"), tmp_path / "cache")
    meta = json.loads((skipped / "train" / "dataset.json").read_text())["sudoku"]
    assert meta["examples"] == 1 and meta["rejected"] == {"several solutions": 1}


def _rows(folder, split):
    return {row.tobytes() for row in np.asarray(load_set(folder / split, "all").inputs)}


@pytest.mark.parametrize("held_out_file", [False, True])
def test_a_validation_split_is_evaluated_instead_and_leaves_training_as_it_was(
    tmp_path, shared_sudoku, held_out_file, capsys
):
    lines = (shared_sudoku / "puzzles2_17_clue.txt").read_text().splitlines()[3:83]
    source = tmp_path / "puzzles.txt"
    source.write_text("\n".join(lines[:60]) + "\n")
    split = {"test_size": 10}
    if held_out_file:
        (tmp_path / "test.txt").write_text("\n".join(lines[60:]) + "\n")
        split["test_path"] = str(tmp_path / "test.txt")
    config = SudokuDataConfig(train_path=str(source), train_size=20, num_aug=1, jobs=1, **split)
    plain = build_dataset(config, tmp_path / "cache")
    assert "validation" not in capsys.readouterr().err
    checked = build_dataset(attrs.evolve(config, validation_size=15), tmp_path / "cache")
    assert _rows(checked, "train") == _rows(plain, "train")  # the same training puzzles
    validation, test = _rows(checked, "test"), _rows(plain, "test")
    assert len(validation) == 15 and not validation & test and not validation & _rows(plain, "train")
    meta = json.loads((checked / "test" / "dataset.json").read_text())["sudoku"]
    assert meta["evaluated_on"] == "validation"
    assert "evaluated_on" not in json.loads((plain / "test" / "dataset.json").read_text())["sudoku"]
    assert "evaluating on 15 validation puzzles" in capsys.readouterr().err


def test_generated_validation_puzzles_are_new_and_training_is_unchanged(tmp_path):
    config = SudokuDataConfig(source="generate", size=4, train_size=20, test_size=10, jobs=1)
    plain = build_dataset(config, tmp_path)
    checked = build_dataset(attrs.evolve(config, validation_size=8), tmp_path)
    assert _rows(checked, "train") == _rows(plain, "train")
    validation = _rows(checked, "test")
    assert len(validation) == 8 and not validation & (_rows(plain, "train") | _rows(plain, "test"))


def test_a_validation_split_needs_a_pool_left_over(tmp_path, shared_sudoku):
    config = SudokuDataConfig(train_path=str(shared_sudoku / "puzzles6_forum_hardest_1106.txt"), test_size=10)
    with pytest.raises(SudokuDataError, match=r"validation_size needs train_size > 0"):
        build_dataset(attrs.evolve(config, validation_size=5), tmp_path)
