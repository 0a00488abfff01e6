"""The ``rr`` command group: its commands, plugin commands, and how any of them fails.

``rr run``, ``rr validate``, ``rr export``, ``rr import``, ``rr sweep``, ``rr eval``, ``rr bench``, ``rr list-plugins``, ``rr solve``,
``rr report``, ``rr analyze``, ``rr data build`` and ``rr new-plugin`` are the core's; plugins add their own sub-commands through
``rr_cli_commands``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

import click

from rrcore import __version__
from rrcore.cli import evaluate, inspect, plugins, train
from rrcore.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_SIGNAL, fail, signal_number


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, as Ctrl-C raises KeyboardInterrupt: what
    cleans up after Ctrl-C (a data build's temporary folder, a pool of worker processes)
    cleans up after SIGTERM too. ``rr run`` takes SIGTERM over once training starts."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate_handler(owner: int) -> Any:
    """The SIGTERM handler of process ``owner``: raise :class:`Terminated` there; in a
    child forked before it set handlers of its own (a worker process starting), exit
    quietly as the default action would."""

    def terminate(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            os._exit(EXIT_SIGNAL + signum)
        raise Terminated(signum)

    return terminate


class _RrGroup(click.Group):
    """The ``rr`` command group. For every command, plugin commands included, SIGTERM
    interrupts as Ctrl-C does (:class:`Terminated`), and what a command did not report
    itself is one line and an exit code: a config or registry error is bad input, 2; a
    training, checkpoint or data failure (or a batch size rr bench --largest-batch could
    not time), 1; an interruption 128 + N; a full disk 2 (the message names the file)."""

    def invoke(self, ctx: click.Context) -> Any:
        previous = None
        with contextlib.suppress(ValueError):  # signals can be set in the main thread only
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                previous = signal.signal(signal.SIGTERM, _terminate_handler(os.getpid()))
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            signum = signal_number(interrupt)
            fail(f"interrupted by {signal.Signals(signum).name}", EXIT_SIGNAL + signum)
        except Exception as error:
            known = _known_failure(error)
            if known is None:
                raise
            fail(*known)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _known_failure(error: Exception) -> tuple[str, int] | None:
    """The line and exit code of an error the command did not report, or None for a bug."""
    if isinstance(error, (click.ClickException, click.exceptions.Exit, click.exceptions.Abort)):
        return None  # click reports these itself (and --help is fast without the imports below)
    from rrcore.base.files import DiskFullError, disk_full_error
    from rrcore.contracts.errors import CheckpointError, ConfigError, TrainingError
    from rrcore.contracts.metadata import DataFormatError
    from rrcore.contracts.registry import RegistryError
    from rrcore.tools.batchsearch import BatchSearchError

    if isinstance(error, (ConfigError, RegistryError)):
        return str(error), EXIT_CONFIG
    if isinstance(error, (TrainingError, CheckpointError, DataFormatError, BatchSearchError)):
        return str(error), EXIT_FAILED
    full = disk_full_error(error) if isinstance(error, (OSError, RuntimeError)) else None  # torch.save: RuntimeError
    if full is None:
        return None
    if isinstance(full, DiskFullError):
        return str(full), EXIT_CONFIG
    return "no space left on device" + (f" writing {full.filename}" if full.filename else ""), EXIT_CONFIG


@click.group(cls=_RrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rr")
def main() -> None:
    """rr: recursive reasoning models (HRM, TRM, URM) from TOML experiment files."""


for _module in (train, evaluate, inspect, plugins):
    for _command in _module.COMMANDS:
        main.add_command(_command)


def _add_plugin_commands() -> None:
    try:
        from rrcore.contracts.registry import get_registry

        get_registry().hook.rr_cli_commands(group=main)
    except Exception as error:  # a broken plugin must not take the CLI down
        click.echo(f"rr: warning: plugin commands unavailable: {error}", err=True)


_add_plugin_commands()
