"""rr solve on the 2x2x2 cube: a scramble in, the solving moves out, the cube simulated."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from rr_rubik import cube
from rr_rubik.task import RubikPuzzleTask
from rr_rubik.tokens import ANSWER_LEN, BLANK, SEQ_LEN, encode_states

from rrcore.cli.main import main
from rrcore.contracts.protocols import PuzzleError
from rrcore.testing import train_briefly

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "rubik2x2-trm.toml"
TASK = RubikPuzzleTask(None, SimpleNamespace(seq_len=SEQ_LEN))


@pytest.fixture(scope="session")
def one_move_run(tmp_path_factory) -> Path:
    """A tiny TRM trained on the nine one-move scrambles until it undoes them (a few seconds)."""
    if not EXAMPLE.exists():
        pytest.skip("runs from a source checkout (examples/)")
    folder = tmp_path_factory.mktemp("rubik-solver")
    result = train_briefly(
        EXAMPLE,
        folder,
        [
            "data.distances=[1]",
            "data.train_size=288",
            "data.test_size=36",
            "model.hidden_size=32",
            "model.num_heads=2",
            "model.L_layers=1",
            "model.H_cycles=1",
            "model.L_cycles=1",
            "act.halt_max_steps=2",
            "loss.loss_type='softmax_cross_entropy'",
            "train.global_batch_size=32",
            "train.max_steps=250",
            "train.lr=3e-3",
            "train.lr_warmup_steps=10",
            "train.ema=false",
            "train.eval_interval=0",
            "run.cpu_threads=1",
        ],
    )
    assert result.eval_results["rubik/solve_rate"] == 1.0
    return result.run_dir


def test_a_scramble_parses_to_the_data_sets_tokens_for_that_cube():
    state = cube.CubeState.solved().apply_moves(cube.parse_moves("R U2 F' U"))
    expected = np.concatenate([encode_states(np.array([state.index]))[0], [BLANK] * ANSWER_LEN])
    assert (TASK.parse("R U2 F\u2019 U") == expected).all()


def test_the_check_simulates_the_predicted_moves():
    inputs = TASK.parse("R U2 F'")
    prediction = inputs.copy()
    prediction[7:10] = [3 + cube.MOVE_NAMES.index(m) for m in ("F", "U2", "R'")]
    prediction[10:] = 2  # END
    assert TASK.check(inputs, prediction).ok and TASK.decode(prediction) == "F U2 R'"
    assert TASK.render(prediction) == "F U2 R'  (3 moves)"
    prediction[9] = 3 + cube.MOVE_NAMES.index("R")
    check = TASK.check(inputs, prediction)
    assert not check.ok and "corners are out of place or twisted" in check.message
    assert TASK.augmentations == 0


@pytest.mark.parametrize(
    ("scramble", "message"),
    [
        ("", "the scramble is empty"),
        ("R U L", "move 3 'L' is not a move; the 2x2x2 model turns only U, R and F"),
        ("R U3", "move 2 'U3' is not a move; moves are U U2 U' R R2 R' F F2 F'"),
    ],
)
def test_bad_scrambles_name_the_move(scramble, message):
    with pytest.raises(PuzzleError, match=message):
        TASK.parse(scramble)


def test_rr_solve_undoes_a_scramble(one_move_run):
    result = CliRunner().invoke(main, ["solve", str(one_move_run), "R"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "R'  (1 move)"
    assert lines[1].startswith("steps ") and "Q-confidence" in lines[1]
    assert lines[1].endswith("check ok: the cube is solved after the 1 predicted move")


def test_rr_solve_json(one_move_run):
    result = CliRunner().invoke(main, ["solve", str(one_move_run), "F2", "--json"])
    record = json.loads(result.stdout)
    assert record["solution"] == "F2" and record["check"]["ok"] and result.exit_code == 0
    assert 1 <= record["steps"] <= record["max_steps"] == 2


def test_rr_solve_rejects_an_illegal_move_in_one_line(one_move_run):
    result = CliRunner().invoke(main, ["solve", str(one_move_run), "R D"])
    assert result.exit_code == 2
    assert result.stderr.startswith("rr: error: puzzle: move 2 'D' is not a move")
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout
