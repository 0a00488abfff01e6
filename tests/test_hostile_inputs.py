"""Hostile and accidental inputs that must end in one line, never a traceback (issue 28, part B).

Sizes checked against what they can mean before training (an evaluation batch above the
test set, numbers past what a step counter, a seed or float32 weights hold), files that are
not text or nest without end, ``--set`` into a number, a GPU asked for without one, and
resuming with a changed batch, changed data or a damaged ``trainer.json``. Each refusal
asserts its exit code, exactly one ``rr: error: `` line naming the key or file, and no
traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from toy_helpers import one_error_line, toy_experiment

from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.training.loop import Trainer, train

HUGE = 10**20  # past a 64-bit integer


def _rr(*args: object):
    return CliRunner().invoke(main, [str(arg) for arg in args])


@pytest.fixture
def toy_run(toy_registry, tmp_path) -> Path:
    """A finished toy run: 4 steps, a checkpoint at step 4."""
    train(load_experiment(toy_experiment(tmp_path / "exp.toml", epochs=1)), run_dir=tmp_path / "run")
    return tmp_path / "run"


def _resume(tmp_path: Path, *settings: str):
    return _rr(
        "run",
        tmp_path / "exp.toml",
        "--run-dir",
        tmp_path / "run",
        "--resume",
        "latest",
        "--set",
        "train.epochs=2",
        *[arg for setting in settings for arg in ("--set", setting)],
    )


# -- the evaluation batch ----------------------------------------------------------------


def test_an_evaluation_batch_above_the_test_set_is_the_test_set_in_one_batch(toy_registry, tmp_path, capsys):
    # 100000 rows for 16 test puzzles would be allocated, padding all but 16, after training.
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    trainer = Trainer(load_experiment(path, ["train.eval_global_batch_size=100000"]), run_dir=tmp_path / "run")
    note = "train.eval_global_batch_size = 100000 is more than the 16 test examples; evaluating in one batch of 16"
    assert note in capsys.readouterr().err
    assert trainer.run.eval_data.global_batch_size == 16 and trainer.run.eval_data.num_eval_batches() == 1
    assert trainer.evaluate(tmp_path / "eval")["exact/count"] == 16
    within = Trainer(load_experiment(path, ["train.eval_global_batch_size=6"]), run_dir=tmp_path / "other")
    assert within.run.eval_data.global_batch_size == 6 and "note" not in capsys.readouterr().err


# -- numbers past what they can mean ---------------------------------------------------------

# (--set, what the one line says after the file name)
AT_LOAD = [
    (f"run.seed={HUGE}", "run.seed = 100000... (21 digits): must be a 64-bit integer"),
    (f"train.max_steps={HUGE}", "train.max_steps = 100000... (21 digits): must be a 64-bit integer"),
    (f"train.checkpoint_every_steps={HUGE}", "train.checkpoint_every_steps = 100000... (21 digits)"),
    (f"eval.max_steps={HUGE}", "eval.max_steps = 100000... (21 digits): must be a 64-bit integer"),
    (f"act.halt_max_steps={2**63 - 1}", "act.halt_max_steps = 9223372036854775807: must be in [1, 2147483647]"),
    ("train.lr=1e308", "train.lr = 1e+308: must be in (0, 1e+06]"),
    ("train.lr=inf", "train.lr = inf: must be in (0, 1e+06]"),
    ("train.lr=nan", "train.lr = nan: must be in (0, 1e+06]"),
    ("train.weight_decay=1e308", "train.weight_decay = 1e+308: must be in [0, 1e+06]"),
    ("optimizer.puzzle_emb.lr=1e308", "optimizer.puzzle_emb.lr = 1e+308: must be in [0, 1e+06]"),
    ("optimizer.eps=1e308", "optimizer.eps = 1e+308: must be in (0, 1e+06]"),
    ("run.cpu_threads=100000", "run.cpu_threads = 100000: must be in [0, 1024]"),  # torch segfaulted
    ("train.lr=1" + "0" * 400, "train.lr = 100000... (401 digits): must be a 64-bit integer"),
    ("train.lr=1" + "0" * 5000, "--set train.lr: Exceeds the limit (4300 digits)"),
]


@pytest.mark.parametrize(("setting", "expected"), AT_LOAD, ids=[s.split("=")[0] + s[-3:] for s, _ in AT_LOAD])
def test_a_number_past_what_its_key_can_mean_is_one_line(toy_registry, tmp_path, setting, expected):
    path = toy_experiment(tmp_path / "exp.toml")
    one_error_line(_rr("validate", path, "--set", setting), 2, expected)


def test_the_largest_seed_seeds_every_generator(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    Trainer(load_experiment(path, [f"run.seed={2**63 - 1}"]), run_dir=tmp_path / "run")  # seeds seed + 1, + 2


@pytest.mark.parametrize("key", ["epochs", "eval_interval", "checkpoint_interval"])
def test_epochs_that_make_more_steps_than_an_int64_are_refused_before_training(toy_registry, tmp_path, key):
    path = toy_experiment(tmp_path / "exp.toml")
    line = one_error_line(
        _rr("run", path, "--set", f"train.{key}=1e308"), 2, f"train.{key} = 1e+308: at 4 steps per epoch"
    )
    assert "more than 2**63 - 1 steps; use at most 2.30584e+18" in line
    assert not (tmp_path / "runs" / "toy" / "checkpoints").exists()


def test_huge_epochs_under_a_step_cap_train_the_cap(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1e308, max_steps=3)  # train by steps
    result = train(load_experiment(path), run_dir=tmp_path / "run")
    assert result.status == "finished" and result.step == 3


# -- files and settings that are not what they should be ---------------------------------


def test_a_binary_experiment_file_is_one_line(toy_registry, tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    one_error_line(_rr("validate", binary), 2, f"{binary}: not a TOML text file (byte 128 is not UTF-8)")


def test_an_experiment_file_nested_without_end_is_one_line(toy_registry, tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    one_error_line(_rr("validate", deep), 2, f"{deep}: not valid TOML: arrays or tables nested too deeply")
    path = toy_experiment(tmp_path / "exp.toml")
    value = "[" * 30_000 + "]" * 30_000
    one_error_line(_rr("validate", path, "--set", f"train.betas={value}"), 2, "--set train.betas: the value nests")


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("train.lr.x=1", "--set train.lr.x: train.lr is 0.003, not a table of keys"),
        ("train.betas.0.x=1", "--set train.betas.0.x: train.betas.0 is 0.9, not a table of keys"),
        ("data.plugin.x=1", '--set data.plugin.x: data.plugin is "toy", not a table of keys'),
    ],
)
def test_setting_a_key_inside_a_number_is_one_line(toy_registry, tmp_path, setting, expected):
    path = toy_experiment(tmp_path / "exp.toml", betas="[0.9, 0.95]")
    one_error_line(_rr("validate", path, "--set", setting), 2, expected)


def test_solving_a_binary_file_is_one_line(toy_run, tmp_path):
    binary = tmp_path / "puzzle.bin"
    binary.write_bytes(b"\x00\x01" + bytes(range(128, 256)))
    one_error_line(_rr("solve", toy_run, binary), 2, f"{binary}: not a puzzle in text (byte 2 is not UTF-8)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_bench_on_cuda_without_a_gpu_is_one_line(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    one_error_line(
        _rr("bench", path, "--set", "run.device=cuda", "--steps", "1", "--warmup", "0"),
        2,
        'run.device = "cuda" but torch',
        "sees no CUDA device",
    )


# -- resuming ------------------------------------------------------------------------------


def test_resuming_with_another_global_batch_goes_on_with_fresh_carries(toy_run, tmp_path):
    result = _resume(tmp_path, "train.global_batch_size=4")  # saved at 8: carries of 8 rows
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "with train.global_batch_size = 4 (it was 8)" in result.stderr and "ACT carries restarted" in result.stderr
    trainer_state = json.loads((toy_run / "checkpoints" / "step_16" / "trainer.json").read_text())
    assert trainer_state["step"] == 16  # 2 epochs of 32 examples in batches of 4


def test_resuming_on_other_data_is_refused_naming_the_key(toy_run, tmp_path):
    one_error_line(
        _resume(tmp_path, "data.num_train=32"),
        2,
        "step_4 was trained on other data (data.num_train = 64 there, 32 here)",
        "train.init_from",
    )
    assert (toy_run / "checkpoints" / "latest").read_text().strip() == "step_4"


DAMAGED_TRAINER_STATE = [
    ("step", "abc", 'step = "abc": must be an integer >= 0'),
    ("step", -7, "step = -7: must be an integer >= 0"),
    ("step", 5, "step = 5: must be 4, the step of its folder step_4"),
    ("step", True, "step = True: must be an integer >= 0"),
    ("position", [0], "position = [0]: must be [epoch, offset], two integers >= 0"),
    ("world_size", 0, "world_size = 0: must be an integer >= 1"),
    ("train_seconds", "soon", 'train_seconds = "soon": must be a number >= 0'),
]


def test_a_damaged_trainer_state_is_one_line(toy_run, tmp_path):
    trainer_json = toy_run / "checkpoints" / "step_4" / "trainer.json"
    state = json.loads(trainer_json.read_text())
    for field, value, expected in DAMAGED_TRAINER_STATE:
        trainer_json.write_text(json.dumps({**state, field: value}))
        # exit 1 as for any damaged checkpoint rr run resumes from (a truncated state.pt too)
        one_error_line(_resume(tmp_path), 1, f"{trainer_json}: {expected}")
        one_error_line(_rr("export", toy_run, tmp_path / "export"), 2, f"{trainer_json}: {expected}")
