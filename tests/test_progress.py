"""rrcore.base.progress: a live bar on a terminal, plain periodic lines everywhere else."""

from __future__ import annotations

import io

from rrcore.base.progress import TrainingProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_it_prints_plain_lines_every_interval_and_at_the_end():
    stream = io.StringIO()
    with progress(4, "arc: writing train", unit="tasks", stream=stream, interval=0) as bar:
        for _ in range(4):
            bar.update()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert [line.split(" | ")[0] for line in lines] == [
        f"arc: writing train: {n}/4 tasks ({25 * n}%)" for n in range(1, 5)
    ]
    assert "ETA" in lines[0] and lines[-1].endswith("in 0m00s")  # no line repeated at close


def test_a_long_interval_leaves_one_line_for_fast_work():
    stream = io.StringIO()
    with progress(1000, "sudoku: labelling test", unit="puzzles", stream=stream, interval=3600) as bar:
        for _ in range(10):
            bar.update(100)
    assert stream.getvalue().splitlines()[0].startswith("sudoku: labelling test: 1000/1000 puzzles (100%) | ")
    assert len(stream.getvalue().splitlines()) == 1


def test_training_lines_show_step_loss_accuracy_rate_and_eta():
    stream = io.StringIO()
    bar = TrainingProgress(100, stream=stream, start_step=0, interval=3600)
    bar.update(10, {"train/loss": 1.5, "train/accuracy": 0.25, "train/exact_accuracy": 0.0})
    bar.update(20, {"train/loss": 1.0})  # within the interval: not printed
    bar.message("rr: eval at step 20: sudoku/exact_accuracy 0.5000")
    bar.update(100, {"train/loss": 0.5, "train/accuracy": 0.9})  # the last step always is
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines
    first = lines[0].split(" | ")
    assert first[:4] == ["train: 10/100 steps (10%)", "loss 1.5000", "acc 0.2500", "exact 0.0000"]
    assert first[4].endswith(" steps/s") and first[5].startswith("ETA ")
    assert lines[1] == "rr: eval at step 20: sudoku/exact_accuracy 0.5000"
    assert lines[2].startswith("train: 100/100 steps (100%) | loss 0.5000 | acc 0.9000 | ")


def test_a_time_budget_run_shows_the_budget_left_beside_the_steps_eta():
    stream = io.StringIO()
    left = iter([95.0, -3.0])  # a run's clock can pass its budget before the step that stops it
    bar = TrainingProgress(100, stream=stream, interval=0, budget_left=lambda: next(left))
    bar.update(10, {"train/loss": 1.5})
    bar.update(20, {"train/loss": 1.0})
    lines = stream.getvalue().splitlines()
    assert lines[0].split(" | ")[1:3] == ["loss 1.5000", "budget left 1m35s"]
    assert lines[1].split(" | ")[2] == "budget left 0m00s"


def test_on_a_terminal_it_draws_a_bar_in_place():
    stream = Terminal()
    bar = TrainingProgress(50, stream=stream, start_step=10)
    bar.update(20, {"train/loss": 0.75})
    bar.message("rr: checkpoint step_20")
    bar.close()
    text = stream.getvalue()
    assert "\r" in text and "20/50" in text and "loss 0.7500" in text and "steps/s" in text
    assert "rr: checkpoint step_20\n" in text


def test_advance_moves_the_count_and_keeps_the_numbers_shown():
    stream = io.StringIO()
    bar = TrainingProgress(10, stream=stream, start_step=0, interval=0)
    bar.update(1, {"train/loss": 2.0})
    bar.advance(2)
    bar.advance(3)
    lines = [line.split(" | ")[:2] for line in stream.getvalue().splitlines()]
    assert lines == [["train: 1/10 steps (10%)", "loss 2.0000"]] + [
        [f"train: {n}/10 steps ({10 * n}%)", "loss 2.0000"] for n in (2, 3)
    ]


def test_the_bar_advances_every_training_step_between_log_steps(toy_registry, tmp_path, monkeypatch):
    from toy_helpers import toy_experiment

    import rrcore.training.loop
    from rrcore.contracts.config import load_experiment

    counts: list[int] = []

    class Recording(TrainingProgress):
        def advance(self, step: int) -> None:
            counts.append(step)
            super().advance(step)

        def update(self, step: int, metrics: dict[str, float]) -> None:
            counts.append(step)
            super().update(step, metrics)

    monkeypatch.setattr(rrcore.training.loop, "TrainingProgress", Recording)
    experiment = load_experiment(toy_experiment(tmp_path / "toy.toml", max_steps=7, log_interval=5))
    rrcore.training.loop.train(experiment)
    assert counts == list(range(1, 8))
