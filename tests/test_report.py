"""rr report on a toy run: one self-contained page, puzzles step by step, marks that match."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from report_helpers import parse_report
from toy_helpers import toy_experiment

from rrcore.cli.main import main


def trained_toy_run(tmp_path: Path, epochs: int = 2) -> Path:
    path = toy_experiment(tmp_path / "exp.toml", epochs=epochs, eval_interval=1)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    return tmp_path / "runs" / "toy"


def test_report_is_one_self_contained_page_of_the_run(toy_registry, tmp_path):
    run = trained_toy_run(tmp_path)
    result = CliRunner().invoke(main, ["report", str(run), "--puzzles", "2", "--scan", "16"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("report.html")
    text = (run / "report.html").read_text()
    page = parse_report(text)
    assert "http://" not in text and "https://" not in text and "<script" not in text  # nothing to fetch
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert 'plugin = "toy"' in text  # the resolved config
    assert '<table class="metrics" id="evaluations">' in text and "exact/exact_accuracy" in text
    assert "The first 16 test examples through all 3 ACT steps (step_8)" in text
    assert page.cards and all(len(card.steps()) == 3 for card in page.cards)


def test_failed_puzzle_marks_exactly_its_wrong_and_changed_cells(toy_registry, tmp_path):
    run = trained_toy_run(tmp_path, epochs=1)  # barely trained: most answers are wrong
    output = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["report", str(run), "--output", str(output), "--scan", "16"])
    assert result.exit_code == 0, result.output
    cards = parse_report(output.read_text()).cards
    failed = [card for card in cards if card.status == "failed"]
    assert failed
    for card in failed:
        expected = {cell["pos"]: cell["text"] for cell in card.label().cells}
        previous = None
        for step in card.steps():
            shown = {cell["pos"]: cell["text"] for cell in step.cells}
            wrong = {cell["pos"] for cell in step.cells if "wrong" in cell["classes"]}
            assert wrong == {pos for pos, text in shown.items() if text != expected[pos]}
            assert f"{len(wrong)} wrong" in step.caption
            if previous is not None:
                changed = {cell["pos"] for cell in step.cells if "changed" in cell["classes"]}
                assert changed == {pos for pos, text in shown.items() if text != previous[pos]}
            previous = shown
        assert "wrong" in {c for cell in card.steps()[-1].cells for c in cell["classes"]}


def test_report_of_a_missing_run_or_one_without_checkpoint_is_one_error_line(toy_registry, tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output.strip() == f"rr: error: {tmp_path / 'nowhere'}: no such run folder"

    run = tmp_path / "unsaved"
    run.mkdir()
    result = CliRunner().invoke(main, ["analyze", str(run)])
    assert result.exit_code == 2 and "not a run folder (no config.toml" in result.output

    shutil.copy(toy_experiment(tmp_path / "exp.toml"), run / "config.toml")
    for command in ("report", "analyze"):
        result = CliRunner().invoke(main, [command, str(run)])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "no checkpoint saved yet" in lines[0]
        # Only rr analyze has --untrained: rr report's hint does not offer it.
        assert ("--untrained" in lines[0]) == (command == "analyze"), lines[0]
