"""Checkpoint folders alone: rotation never removes what ``latest`` names."""

from __future__ import annotations

from rrcore.training.checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint


def _save(directory, step, keep=3):
    trainer_state = {"step": step, "position": [0, 0]}
    return save_checkpoint(directory, step, {"weights": step}, {"rng": step}, trainer_state, "[run]\n", keep=keep)


def test_rotation_keeps_the_new_checkpoint_when_older_runs_left_higher_steps(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for step in (10, 11, 12):
        _save(checkpoints, step)
    written = _save(checkpoints, 4)
    assert written.exists()
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_4", "step_11", "step_12"]
    latest = resolve_checkpoint("latest", checkpoints)
    assert latest == written
    shared, _, trainer_state = load_checkpoint(latest)
    assert shared == {"weights": 4} and trainer_state["step"] == 4


def test_rotation_keeps_the_last_k(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for step in range(1, 6):
        _save(checkpoints, step, keep=2)
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_4", "step_5"]
    _save(checkpoints, 1, keep=1)
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_1"]
