"""Fixtures of rr-arc's tests: a handful of real tasks copied from ../shared/data/arc."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from arc_testdata import SHARED_ARC, TASKS, write_combined


@pytest.fixture(scope="session")
def shared_tasks() -> dict[str, tuple[dict, dict]]:
    """{subset: (challenges, solutions)} of the TASKS, read from the shared data."""
    if not SHARED_ARC.is_dir():
        pytest.skip(f"{SHARED_ARC} not found")
    out = {}
    for subset, ids in TASKS.items():
        challenges = json.loads((SHARED_ARC / f"arc-agi_{subset}_challenges.json").read_text())
        solutions = json.loads((SHARED_ARC / f"arc-agi_{subset}_solutions.json").read_text())
        out[subset] = ({i: challenges[i] for i in ids}, {i: solutions[i] for i in ids})
    return out


@pytest.fixture()
def arc_dir(tmp_path: Path, shared_tasks) -> Path:
    """A combined-layout folder with the small training and evaluation subsets."""
    folder = tmp_path / "arc"
    for subset, (challenges, solutions) in shared_tasks.items():
        write_combined(folder, subset, challenges, solutions)
    return folder
