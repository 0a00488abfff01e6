"""rr analyze's measures against hand-made data, and its command on a run."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.tools.analyze import (
    covariance_eigenvalues,
    forward_residuals,
    participation_ratio,
    state_pairs,
)
from rrcore.training.loop import train


def samples_with_covariance(eigenvalues: list[float], samples: int = 50, seed: int = 0) -> np.ndarray:
    """Samples (n, d) whose sample covariance is exactly Q diag(eigenvalues) Q^T, Q a random rotation."""
    rng = np.random.default_rng(seed)
    dims = len(eigenvalues)
    spread = np.array([v for v in eigenvalues if v > 0])
    noise = rng.normal(size=(samples, len(spread)))
    noise -= noise.mean(axis=0)
    whitened, _ = np.linalg.qr(noise)  # orthonormal centred columns: their covariance is I / (n - 1)
    basis, _ = np.linalg.qr(rng.normal(size=(dims, len(spread))))  # orthonormal directions in d dims
    return (whitened * np.sqrt((samples - 1) * spread)) @ basis.T + rng.normal(size=dims)


def test_participation_ratio_of_known_spectra():
    assert participation_ratio([1.0, 1.0, 1.0, 1.0]) == pytest.approx(4.0)  # four equal directions
    assert participation_ratio([5.0, 0.0, 0.0]) == pytest.approx(1.0)  # a line
    assert participation_ratio([3.0, 1.0]) == pytest.approx(16 / 10)
    assert participation_ratio([0.0, 0.0]) == 0.0  # no variance at all


def test_participation_ratio_of_a_hand_made_covariance():
    samples = samples_with_covariance([4.0, 1.0, 1.0, 0.0, 0.0])
    eigenvalues = covariance_eigenvalues(samples)
    np.testing.assert_allclose(eigenvalues, [4.0, 1.0, 1.0, 0.0, 0.0], atol=1e-9)
    assert participation_ratio(eigenvalues) == pytest.approx(36 / 18)  # (4+1+1)^2 / (16+1+1)
    # More dimensions than samples (the usual case for a state of positions x channels).
    wide = samples_with_covariance([2.0] * 3 + [0.0] * 200, samples=20)
    assert participation_ratio(covariance_eigenvalues(wide)) == pytest.approx(3.0)


def test_forward_residuals_of_a_hand_built_trajectory():
    # Two examples, four updates of a (positions=2, hidden=2) state.
    first = np.array([[[0, 0], [0, 0]], [[3, 4], [0, 0]], [[3, 4], [0, 1]], [[3, 4], [0, 1]]], dtype=float)
    second = 2 * first  # every step twice as long
    residuals = forward_residuals(np.stack([first, second]))
    np.testing.assert_allclose(residuals, [(5 + 10) / 2, (1 + 2) / 2, 0.0])


def test_high_and_low_states_are_paired_by_name():
    assert state_pairs(["z_L", "z_H"]) == [("z_H", "z_L")]
    assert state_pairs(["hidden"]) == []


def test_analyze_names_a_model_that_records_no_states(toy_registry, tmp_path):
    train(load_experiment(toy_experiment(tmp_path / "exp.toml", epochs=1)))
    result = CliRunner().invoke(main, ["analyze", str(tmp_path / "runs" / "toy")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "rr: error: model plugin 'toy' (rr-toy 0.1.0) does not record its states: it needs "
        "recording_states() (rrcore.contracts.protocols.RecordsStates)"
    ]
