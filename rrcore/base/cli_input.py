"""Bad input to ``rr`` sub-commands, reported as one line.

Plugin commands (``rr sudoku``, ``rr arc``, ...) raise :class:`InputError` when a
path or option is wrong; click prints it as ``rr: error: <message>`` on stderr, the
style of the core's own commands, and exits with :data:`EXIT_BAD_INPUT` (2) — never
a traceback. The path checks below give every plugin the same wording, so a user
reads "no such file", "is a folder, not a file" and "is empty" the same way
whichever command they ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import click

EXIT_BAD_INPUT = 2


class InputError(click.ClickException):
    """Bad input to a command; the message names the path or option and what would be right."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"rr: error: {self.format_message()}", err=file is None, file=file)


def input_file(path: str | Path, what: str = "file", allow_empty: bool = False) -> Path:
    """``path`` as a :class:`Path` when it is a readable, non-empty file; else :class:`InputError`.

    ``what`` names the file in the message (``"puzzle file"``, ``"submission"``).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such {what}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not {_a(what)}")
    try:
        empty = path.stat().st_size == 0
    except OSError as error:
        raise InputError(f"{path}: cannot read the {what} ({error.strerror})") from None
    if empty and not allow_empty:
        raise InputError(f"{path}: the {what} is empty")
    return path


def input_folder(path: str | Path, what: str = "folder") -> Path:
    """``path`` as a :class:`Path` when it is an existing folder; else :class:`InputError`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such {what}")
    if not path.is_dir():
        raise InputError(f"{path}: is a file, not {_a(what)}")
    return path


def output_folder(path: str | Path, what: str = "folder") -> Path:
    """``path`` as a :class:`Path` when it is a folder or can become one;
    else :class:`InputError`."""
    path = Path(path).expanduser()
    for parent in (path, *path.parents):
        if parent.exists():
            if parent == path and not path.is_dir():
                raise InputError(f"{path}: is a file, not {_a(what)}")
            if not parent.is_dir():
                raise InputError(f"{path}: {parent} is a file, so it cannot hold {_a(what)}")
            break
    return path


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"
