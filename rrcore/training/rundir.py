"""A run folder belongs to one run.

Starting a run in a folder that already holds another run's checkpoints or metrics
would mix the two (metrics appended with restarting steps, ``config.toml``
overwritten, checkpoints rotated across runs), so it is refused unless the run
resumes (``--resume``) or the user asks to ``--overwrite``, which moves the old
folder aside to ``<name>.old-<n>``; nothing is ever deleted.

One process writes a run folder at a time: ``rr run`` (rank 0 under torchrun) holds an
exclusive ``flock`` on ``RUN/.rr.lock`` from before it writes anything until it ends, and
a second ``rr run`` or ``--resume`` on the folder is refused, naming the holder's pid and
host (written in the file). The kernel drops the lock when its holder dies, so the folder
of a run that crashed or was killed is free at once. The lock file also marks the folder
as rr's: a non-empty folder without it (nor, as runs from before lock files have, a run's
checkpoints or metrics) holds someone else's files, and rr neither writes into it nor
moves it aside.

A run folder also records how to continue its run: ``resume.sh`` holds the exact
``rr run ... --resume latest`` command (same experiment file, every ``--set``, the
run folder), run from the folder the run was started in.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Any

import attrs

from rrcore.base import distributed
from rrcore.base.files import atomic_write_text
from rrcore.contracts.config import dump_experiment
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.experiment import Experiment
from rrcore.contracts.provenance import write_provenance
from rrcore.data.format import save_run_metadata
from rrcore.training.checkpoint import list_checkpoints

RESUME_SCRIPT = "resume.sh"
LOCK_FILE = ".rr.lock"


def default_run_dir(experiment: Experiment) -> Path:
    """``run.out_dir/run.name``: the run folder when ``--run-dir`` is not given."""
    return Path(experiment.run.out_dir) / experiment.run.name


def previous_run(run_dir: Path) -> str | None:
    """What shows that ``run_dir`` holds a run (its latest checkpoint or its metrics), or None."""
    checkpoints = run_dir / "checkpoints"
    saved = list_checkpoints(checkpoints)
    if (checkpoints / "latest").is_file():
        return f"checkpoints up to {(checkpoints / 'latest').read_text(errors='replace').strip()[:100]}"
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
    """Rename ``run_dir`` to :func:`aside_name` and return the new path (None when it
    held nothing but its lock file)."""
    if not run_dir.is_dir() or all(p.name == LOCK_FILE for p in run_dir.iterdir()):
        return None
    aside = aside_name(run_dir)
    os.replace(run_dir, aside)
    return aside


def is_run_folder(folder: Path) -> bool:
    """Whether rr wrote ``folder``: it holds rr's lock file or (a run from before lock
    files) a run's checkpoints or metrics."""
    return (folder / LOCK_FILE).is_file() or previous_run(folder) is not None


def check_own(run_dir: Path, overwrite: bool) -> None:
    """Raise :class:`ConfigError` (one line) when rr must not write ``run_dir``: a file, a
    non-empty folder that is not an rr run, or (``overwrite``) the current folder or one
    above it, which moving aside would pull from under the user."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: is a file, not a run folder; choose another --run-dir")
    if overwrite and _holds_current_folder(run_dir):
        raise ConfigError(
            f"--overwrite would move {run_dir} aside, and with it the current folder; "
            f"choose another --run-dir, or run rr from another folder"
        )
    if run_dir.is_dir() and not is_run_folder(run_dir):
        entries = sorted(p.name for p in run_dir.iterdir())
        if entries:
            raise ConfigError(
                f"{run_dir} holds {len(entries)} files or folders that are not an rr run (e.g. "
                f"{entries[0]!r}); rr writes a run only into a new or empty folder or a run folder "
                f"of its own (--overwrite too moves only rr runs aside): choose another --run-dir"
            )


def _holds_current_folder(run_dir: Path) -> bool:
    try:
        here, target = Path.cwd().resolve(), run_dir.resolve()
    except OSError:  # the current folder was deleted
        return False
    return here == target or target in here.parents


@attrs.define(eq=False)
class RunLock:
    """This process's exclusive lock on a run folder (see the module doc), from
    :func:`lock_run_dir`. The same process taking it again shares it (counted, given back
    by as many :meth:`release` calls), so a second :class:`~rrcore.training.loop.Trainer` on the
    folder in one Python session does not lock itself out."""

    run_dir: Path
    key: str
    fd: int
    holders: int = 1
    signed: bool = False

    def sign(self) -> None:
        """Write this process's pid and host into the lock file, for a refused run to name."""
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, record.encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, unsigned
            return
        self.signed = True

    def release(self) -> None:
        """Give the lock back (when this process's last holder does)."""
        self.holders -= 1
        if self.holders <= 0 and _held.get(self.key) is self:
            self._close()

    def _close(self) -> None:
        _held.pop(self.key, None)
        if self.signed:  # a clean end leaves no pid that could pass for a live holder's
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
        os.close(self.fd)  # which drops the flock


_held: dict[str, RunLock] = {}
"""The run folders this process holds, by real path."""


def lock_run_dir(run_dir: Path) -> RunLock:
    """Take ``run_dir``'s lock, creating the folder and its lock file; :class:`ConfigError`
    naming the holder's pid and host when another process has it."""
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key].holders += 1
        return _held[key]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise ConfigError(f"{run_dir}: cannot write the run folder ({error.strerror or error})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise ConfigError(
            f"{run_dir} is in use by another rr run ({holder}); wait for it to end, or choose another --run-dir"
        ) from None
    except OSError:  # a file system without locks: one writer is then up to the user
        pass
    _held[key] = lock = RunLock(run_dir, key, fd)
    return lock


def _holder(fd: int) -> str:
    """Who holds a lock, from its file: ``pid 123 on host gpu01``."""
    try:
        record = json.loads(os.pread(fd, 4096, 0))
        host = "".join(c for c in str(record["host"]) if c.isprintable())[:100]
        return f"pid {int(record['pid'])} on host {host}"
    except (OSError, ValueError, TypeError, KeyError):
        return "pid not written yet: it is starting"


def claim(run_dir: Path, *, resume: bool = False, overwrite: bool = False) -> tuple[RunLock, Path | None]:
    """Make this process the one writer of ``run_dir``: its lock, and where ``overwrite``
    moved the run it held (None when it held none). Refused, with one line
    (:class:`ConfigError`): a folder rr must not write (:func:`check_own`), one another
    process writes, and for a new run without ``overwrite`` one that holds a run."""
    check_own(run_dir, overwrite)
    if not (resume or overwrite) and not (run_dir / LOCK_FILE).exists():
        check_unused(run_dir)  # a run from before lock files: refused without writing one
    lock = lock_run_dir(run_dir)
    aside = None
    try:
        if overwrite and (aside := move_aside(run_dir)) is not None:
            lock._close()  # its file went aside with the old run, which it still marks as rr's
            lock = lock_run_dir(run_dir)
        elif not (resume or overwrite):
            check_unused(run_dir)
    except BaseException:
        lock.release()
        raise
    lock.sign()
    return lock, aside


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
    atomic_write_text(
        path,
        "#!/bin/sh\n"
        "# Continues this run from its latest checkpoint (written by rr run).\n"
        f"cd {shlex.quote(os.getcwd())} || exit 2\n"
        f"exec {command}\n",
        mode=0o755,
    )
    return path


def claim_on_rank0(run_dir: Path, rank: int, *, resume: bool, overwrite: bool) -> RunLock | None:
    """:func:`claim` by rank 0 (which holds the lock, returned; None on other ranks), every
    rank refused with rank 0's reason."""
    refusal, lock = None, None
    if rank == 0:
        try:
            lock, aside = claim(run_dir, resume=resume, overwrite=overwrite)
        except ConfigError as error:
            refusal = str(error)
        else:
            if aside is not None:
                print(f"rr: moved the previous run in {run_dir} to {aside}", file=sys.stderr)
    refusal = distributed.from_rank0(refusal)
    if refusal is not None:
        raise ConfigError(refusal)
    return lock


def write_run_folder(run_dir: Path, experiment: Experiment, registry: Any, metadata: Any, command: str) -> None:
    """What a run folder records at the start: ``config.toml``, the data set's metadata
    (``rr solve`` reads it instead of the data set), the provenance (versions, commit) and
    ``resume.sh`` running ``command``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # Atomic: a full disk here leaves the previous config.toml (resuming), not an empty one.
    atomic_write_text(run_dir / "config.toml", dump_experiment(experiment))
    save_run_metadata(run_dir, metadata)
    write_provenance(run_dir, experiment, registry)
    write_resume_script(run_dir, command)
