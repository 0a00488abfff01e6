"""A run folder belongs to one run.

Starting a run in a folder that already holds another run's checkpoints or metrics
would mix the two (metrics appended with restarting steps, ``config.toml``
overwritten, checkpoints rotated across runs), so it is refused unless the run
resumes (``--resume``) or the user asks to ``--overwrite``, which moves the old
folder aside to ``<name>.old-<n>``; nothing is ever deleted.

A run folder also records how to continue its run: ``resume.sh`` holds the exact
``rr run ... --resume latest`` command (same experiment file, every ``--set``, the
run folder), run from the folder the run was started in.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from rrcore.checkpoint import list_checkpoints
from rrcore.config import ConfigError, Experiment

RESUME_SCRIPT = "resume.sh"


def default_run_dir(experiment: Experiment) -> Path:
    """``run.out_dir/run.name``: the run folder when ``--run-dir`` is not given."""
    return Path(experiment.run.out_dir) / experiment.run.name


def previous_run(run_dir: Path) -> str | None:
    """What shows that ``run_dir`` holds a run (its latest checkpoint or its metrics), or None."""
    checkpoints = run_dir / "checkpoints"
    saved = list_checkpoints(checkpoints)
    if (checkpoints / "latest").exists():
        return f"checkpoints up to {(checkpoints / 'latest').read_text().strip()}"
    if saved:
        return f"checkpoints up to {saved[-1].name}"
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists() and metrics.stat().st_size > 0:
        return "metrics.jsonl"
    return None


def check_unused(run_dir: Path) -> None:
    """Raise :class:`ConfigError` (one line, the three ways on) when ``run_dir`` holds a run."""
    found = previous_run(run_dir)
    if found is not None:
        raise ConfigError(
            f"{run_dir} already holds a run ({found}); continue it with --resume latest, "
            f"choose another --run-dir, or add --overwrite to move it aside to "
            f"{aside_name(run_dir)} (nothing is deleted)"
        )


def aside_name(run_dir: Path) -> Path:
    """The first free ``<run_dir>.old-<n>``."""
    n = 1
    while (aside := run_dir.with_name(f"{run_dir.name}.old-{n}")).exists():
        n += 1
    return aside


def move_aside(run_dir: Path) -> Path | None:
    """Rename a non-empty ``run_dir`` to :func:`aside_name` and return the new path
    (None when there was nothing to move)."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    aside = aside_name(run_dir)
    os.replace(run_dir, aside)
    return aside


def resume_command(
    experiment: str, overrides: list[str], run_dir: Path, world_size: int = 1, nodes: int = 1, rendezvous_id: str = "rr"
) -> str:
    """The shell command that continues a run started with ``rr run experiment --set ...``.

    Under torchrun on one node it is the same torchrun launch with this many processes.
    On several nodes it is the launch to start on every node; torchrun does not tell its
    workers the rendezvous endpoint, so the command takes it from ``$RR_RDZV_ENDPOINT``
    (HOST:PORT) and stops, saying so, when that is unset.
    """
    words = ["run", experiment]
    for override in overrides:
        words += ["--set", override]
    words += ["--run-dir", str(run_dir), "--resume", "latest"]
    if world_size == 1:
        return shlex.join(["rr", *words])
    if nodes == 1:
        return shlex.join(["torchrun", f"--nproc_per_node={world_size}", "-m", "rrcore", *words])
    launcher = shlex.join(
        [
            "torchrun",
            f"--nnodes={nodes}",
            f"--nproc-per-node={world_size // nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-id={rendezvous_id}",
        ]
    )
    endpoint = '--rdzv-endpoint="${RR_RDZV_ENDPOINT:?set HOST:PORT of the rendezvous, as at the start}"'
    return f"{launcher} {endpoint} -m rrcore {shlex.join(words)}"


def write_resume_script(run_dir: Path, command: str) -> Path:
    """Record ``command`` in ``run_dir/resume.sh`` (to be run from any folder)."""
    path = run_dir / RESUME_SCRIPT
    path.write_text(
        "#!/bin/sh\n"
        "# Continues this run from its latest checkpoint (written by rr run).\n"
        f"cd {shlex.quote(os.getcwd())} || exit 2\n"
        f"exec {command}\n"
    )
    path.chmod(0o755)
    return path
