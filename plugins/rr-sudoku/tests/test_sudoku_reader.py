"""Readers: both layouts, 4x4, and malformed lines named by file and line."""

from __future__ import annotations

import numpy as np
import pytest
from rr_sudoku.reader import SudokuDataError, read_puzzles

GOOD = "98.7..6..75..4......3..8.7.5....7.3...94.........2.1..3.......1.9...5.8...52....6"


def test_line_file_blanks_comments_and_line_numbers(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text(f"# a comment\n\n{GOOD}\n{GOOD.replace('.', '0')}\n")
    result = read_puzzles(path)
    assert len(result) == 2 and result.size == 9
    assert result.lines.tolist() == [3, 4]
    assert np.array_equal(result.puzzles[0], result.puzzles[1])
    assert result.puzzles[0][:4].tolist() == [9, 8, 0, 7]


def test_four_by_four(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("1...\n....\n..2.\n...3\n".replace("\n", "") + "\n")
    result = read_puzzles(path)
    assert result.size == 4 and result.puzzles.shape == (1, 16)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (GOOD[:-1], "80 characters"),
        (GOOD[:-1] + "x", "bad character 'x' at column 81"),
        ("99" + GOOD[2:], "digit 9 repeats in row 1"),
    ],
)
def test_malformed_lines_are_skipped_and_named(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"{GOOD}\n{line}\n{GOOD}\n")
    result = read_puzzles(path, on_error="skip")
    assert len(result) == 2
    assert [str(p) for p in result.problems] == [f"{path}:2: {result.problems[0].message}"]
    assert message in result.problems[0].message


def test_reject_names_file_and_first_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text(f"{GOOD}\n{GOOD[:5]}\n{GOOD[:7]}\n")
    with pytest.raises(SudokuDataError, match=rf"{path.name}:2: 5 characters.* and 1 more"):
        read_puzzles(path, on_error="reject")


def test_csv_layout_checks_answers(tmp_path):
    from rr_sudoku.solver import label

    solution = label(np.array([0 if c == "." else int(c) for c in GOOD])).solution
    answer = "".join(map(str, solution))
    wrong = answer[:-2] + answer[-1] + answer[-2]
    path = tmp_path / "train.csv"
    path.write_text(f"source,question,answer,rating\nx,{GOOD},{answer},7\ny,{GOOD},{wrong},3\n")
    result = read_puzzles(path)
    assert len(result) == 1 and result.ratings.tolist() == [7]
    assert np.array_equal(result.solutions[0], solution)
    assert str(result.problems[0]) == f"{path}:3: the answer does not solve the question"
