"""Helpers for the core's tests: fake installed distributions and toy experiment files.

A module of its own (not conftest.py) so that tests can import it by a name no
plugin's test folder shares.
"""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_distribution(site: Path, dist_name: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
    """Write a minimal installed distribution (dist-info + modules) into ``site``."""
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    info = site / f"{dist_name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[rr]\n{lines}\n")


def toy_experiment(path: Path, extra: str = "", **train) -> Path:
    """Write a small toy experiment; ``train`` keys override the [train] section."""
    values = dict(
        global_batch_size=8, epochs=4, lr=3e-3, lr_warmup_steps=2, weight_decay=0.01, log_interval=2, compile='"off"'
    )
    values.update(train)
    train_lines = "\n".join(f"{k} = {v}" for k, v in values.items())
    path.write_text(
        textwrap.dedent(f"""\
        [run]
        name = "toy"
        seed = 3
        out_dir = "{path.parent / "runs"}"
        device = "cpu"

        [data]
        plugin = "toy"

        [model]
        plugin = "toy"

        [act]
        halt_max_steps = 3
        halt_exploration_prob = 0.2

        [optimizer]
        plugin = "adamw"

        [train]
        """)
        + train_lines
        + "\n"
        + textwrap.dedent(extra)
    )
    return path


def one_error_line(result, code: int, *expected: str) -> str:
    """The command's one error line, after checking the exit code and that no traceback
    was printed; each of ``expected`` must be in it."""
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, (result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("rr: error: ")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1], result.stderr
    for part in expected:
        assert part in errors[0], errors[0]
    return errors[0]
