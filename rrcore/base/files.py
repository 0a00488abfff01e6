"""Writing files so that a full disk or a crash leaves what was there before.

:func:`atomic_write_text` writes a temporary file beside the target and renames it into
place: a reader sees the old file or the new one, never a part (a full disk at the start
of a run leaves no empty ``config.toml``). A write that fails for want of space (ENOSPC,
or EDQUOT: over quota) becomes a :class:`DiskFullError`, whose message is one line naming
the path; ``rr`` prints it as ``rr: error: no space left on device writing PATH`` and
exits 2, as for other input the user has to change (here: free space).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """A write that failed because the device (or the user's quota) is full; ``detail``
    says what was kept and how to go on."""

    def __init__(self, path: str | Path, detail: str = "") -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        self.detail = detail

    def __str__(self) -> str:
        return f"no space left on device writing {self.filename}" + (f"; {self.detail}" if self.detail else "")


def disk_full_error(error: BaseException | None) -> OSError | None:
    """The write refused for want of space that ``error`` is, or was raised while
    handling, else None. ``torch.save`` into a full disk raises a RuntimeError
    ("unexpected pos") while the ENOSPC is being handled."""
    for _ in range(8):  # a chain of exceptions is short; a cycle is not followed forever
        if error is None:
            return None
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return error
        error = error.__cause__ or error.__context__
    return None


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` comes from a write refused for want of space."""
    return disk_full_error(error) is not None


@contextlib.contextmanager
def reporting_full_disk(path: str | Path) -> Iterator[None]:
    """Turn a full disk while the body writes ``path`` into a :class:`DiskFullError` naming
    it (a failed ``write()`` or ``flush()`` names no file of its own)."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:
        full = disk_full_error(error)
        if full is None:
            raise
        raise DiskFullError(full.filename or path) from None


def atomic_write_text(path: str | Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place (with
    permissions ``mode`` when given); on failure the old file, if any, is left as it was
    and the temporary file removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with reporting_full_disk(path):
            with open(tmp, "w") as handle:
                handle.write(text)
            if mode is not None:
                tmp.chmod(mode)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
