"""Every file rr writes, rr reads: generate -> label -> ``rr data build`` through the ``rr`` CLI,
and readers that take the files people hand them (BOM, CRLF, trailing comments)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from rr_sudoku.grid import is_valid_solution
from rr_sudoku.reader import parse_grid, read_puzzles

from rrcore.cli.main import main

UNSOLVABLE_4X4 = "12....3.......4."  # cell (1, 3) can hold neither 1, 2 (row) nor 3, 4 (column)
AMBIGUOUS_4X4 = "1..............."  # far too few givens: many solutions


def rr(*args: str):
    return CliRunner().invoke(main, list(args))


def build(*settings: str, cache_dir):
    """``rr data build sudoku --set KEY=VALUE ...``; string values quoted as TOML."""
    args = ["data", "build", "sudoku", "--cache-dir", str(cache_dir)]
    for setting in settings:
        args += ["--set", setting]
    return rr(*args)


@pytest.mark.parametrize("size, count", [(4, 12), (9, 4)])
def test_generate_label_build_round_trip(tmp_path, size, count):
    generated = rr("sudoku", "generate", "--size", str(size), "--count", str(count), "--jobs", "1")
    assert generated.exit_code == 0, generated.output
    assert all("  # guesses " in line for line in generated.stdout.splitlines())
    puzzles = tmp_path / "generated.txt"
    puzzles.write_text(generated.stdout)

    labels = tmp_path / "labels.csv"
    labelled = rr("sudoku", "label", str(puzzles), "--jobs", "1", "--output", str(labels))
    assert labelled.exit_code == 0, labelled.output
    assert f"{count} puzzles (0 malformed lines skipped)" in labelled.stdout
    assert f"unique {count}, no solution 0, several 0" in labelled.stdout
    with open(labels, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == count
    for line, row in enumerate(rows, start=1):
        assert row["source"] == f"generated.txt:{line}"
        assert is_valid_solution(parse_grid(row["question"]), parse_grid(row["answer"]))

    for source in ("generated.txt", "labels.csv"):
        built = build(
            f"train_path={str(tmp_path / source)!r}",
            f"size={size}",
            "test_size=1",
            "jobs=1",
            cache_dir=tmp_path / "cache",
        )
        assert built.exit_code == 0, built.output
        assert f"train: {count - 1} groups" in built.stderr and "test: 1 groups" in built.stderr
        assert "skipped" not in built.stderr
        folder = tmp_path / "cache" / built.stdout.strip()
        meta = json.loads((folder / "test" / "dataset.json").read_text())
        assert meta["sudoku"]["rating"] == ("csv rating" if source.endswith(".csv") else "guesses")


def test_readers_accept_bom_crlf_and_trailing_comments(tmp_path):
    solution = "1234341221434321"
    lines = tmp_path / "windows.txt"
    lines.write_bytes(
        "\ufeff# exported on Windows\r\n12.4..1..1.3.3.1  # from the forum\r\n\r\n1...3....1.3...1\r\n".encode()
    )
    read = read_puzzles(lines, size=4, on_error="reject")
    assert len(read) == 2 and read.lines.tolist() == [2, 4] and not read.problems

    table = tmp_path / "windows.csv"
    table.write_bytes((f"\ufeffsource,question,answer,rating\r\nforum,12.4..1..1.3.3.1,{solution},7\r\n").encode())
    read = read_puzzles(table, on_error="reject")
    assert len(read) == 1 and read.ratings.tolist() == [7]
    assert "".join(map(str, read.solutions[0])) == solution


def test_label_reports_puzzles_without_one_solution_and_never_writes_them(tmp_path):
    generated = rr("sudoku", "generate", "--size", "4", "--count", "2", "--jobs", "1")
    puzzles = tmp_path / "mixed.txt"
    unique = [line.split()[0] for line in generated.stdout.splitlines()]
    puzzles.write_text(f"{unique[0]}\n{UNSOLVABLE_4X4}\n{AMBIGUOUS_4X4}\n{unique[1]}\n")
    output = tmp_path / "labels.csv"
    result = rr("sudoku", "label", str(puzzles), "--jobs", "1", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "unique 2, no solution 1, several 1" in result.stdout
    assert f"rr: warning: {puzzles}:2: no solution; not written" in result.stderr
    assert f"rr: warning: {puzzles}:3: several solutions; not written" in result.stderr
    with open(output, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["question"] for row in rows] == unique
    assert all(set(row["answer"]) == set("1234") for row in rows)  # no all-zero "solution"


def test_build_with_too_few_puzzles_says_why_each_was_rejected(tmp_path):
    puzzles = tmp_path / "ambiguous.txt"
    puzzles.write_text(f"{AMBIGUOUS_4X4}\n" * 5 + f"{UNSOLVABLE_4X4}\nnot a puzzle\n")
    result = build(f"train_path={str(puzzles)!r}", "size=4", "test_size=2", "jobs=1", cache_dir=tmp_path / "cache")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(
        f"rr: error: data plugin 'sudoku': {puzzles}: only 0 usable puzzles for the test split, 2 asked for; rejected: "
    )
    assert f"5 several solutions (first at {puzzles}:1)" in message
    assert f"1 no solution (first at {puzzles}:6)" in message
    assert f"1 malformed (first at {puzzles}:7: 12 characters; a 4x4 puzzle has 16)" in message


def test_build_summary_counts_skipped_puzzles_by_reason(tmp_path):
    generated = rr("sudoku", "generate", "--size", "4", "--count", "6", "--jobs", "1")
    puzzles = tmp_path / "mixed.txt"
    puzzles.write_text(generated.stdout + f"{AMBIGUOUS_4X4}\n{AMBIGUOUS_4X4}\n{UNSOLVABLE_4X4}\n")
    result = build(f"train_path={str(puzzles)!r}", "size=4", "test_size=1", "jobs=1", cache_dir=tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert "skipped 3 puzzles (2 several solutions, 1 no solution)" in result.stderr
    assert f"{puzzles}:7: several solutions" in result.stderr
    folder = tmp_path / "cache" / result.stdout.strip()
    total = sum(
        json.loads((folder / split / "dataset.json").read_text())["total_groups"] for split in ("train", "test")
    )
    assert total == 6
    assert np.load(folder / "train" / "all__ratings.npy").shape == (5,)
