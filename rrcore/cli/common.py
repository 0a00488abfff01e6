"""What the ``rr`` commands share: exit codes, the one-line error, and the options several commands take."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import NoReturn

import click

EXIT_FAILED = 1
EXIT_CONFIG = 2  # bad input: the message says what to change
EXIT_SIGNAL = 128  # interrupted by signal N (after saving): 128 + N, as shells report it


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"rr: error: {message}", err=True)
    sys.exit(code)


def signal_number(interrupt: KeyboardInterrupt) -> int:
    return getattr(interrupt, "signum", signal.SIGINT)


@contextlib.contextmanager
def bad_input(*errors: type[Exception]) -> Iterator[None]:
    """``errors`` are bad input here (exit 2) whatever the ``rr`` group would make of them."""
    try:
        yield
    except errors as error:
        fail(str(error), EXIT_CONFIG)


@contextlib.contextmanager
def interrupted_before(what: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt as interrupt:
        signum = signal_number(interrupt)
        fail(f"interrupted by {signal.Signals(signum).name} before {what}; nothing was saved", EXIT_SIGNAL + signum)


set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of the experiment, e.g. --set train.lr=3e-4 (repeatable).",
)
run_argument = click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
checkpoint_option = click.option(
    "--checkpoint",
    default="latest",
    show_default=True,
    help="Which checkpoint of the run: 'latest', 'step_N' or a checkpoint folder.",
)
trajectories_option = click.option(
    "--trajectories",
    type=int,
    metavar="K",
    help="Also run each puzzle K times, all but the first with Gaussian noise on the model's "
    "latent, and select among the K answers (eval.trajectories; needs a noise: "
    "--trajectory-noise or eval.trajectory_noise; where it goes: eval.trajectory_noise_at).",
)
trajectory_noise_option = click.option(
    "--trajectory-noise",
    type=float,
    metavar="STD",
    help="Standard deviation of the --trajectories noise (eval.trajectory_noise).",
)


def trajectory_settings(trajectories: int | None, noise: float | None) -> list[str]:
    """``--set`` strings for --trajectories and --trajectory-noise, refusing a bad value
    in one line that names the option."""
    if trajectories is not None and trajectories < 1:
        fail(f"--trajectories {trajectories}: must be >= 1 (the runs of each puzzle; 1: no selection)", EXIT_CONFIG)
    if noise is not None and not noise >= 0:
        fail(f"--trajectory-noise {noise:g}: must be a number >= 0 (a standard deviation)", EXIT_CONFIG)
    settings = []
    if trajectories is not None:
        settings.append(f"eval.trajectories={trajectories}")
    if noise is not None:
        settings.append(f"eval.trajectory_noise={noise!r}")
    return settings
