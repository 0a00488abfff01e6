"""Where data sets are built, and building one only when its cache key is new."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs

from rrcore.base.files import DiskFullError, is_disk_full


def default_cache_dir() -> Path:
    """``$RR_CACHE_DIR``, else ``$XDG_CACHE_HOME/rr``, else ``~/.cache/rr``."""
    if os.environ.get("RR_CACHE_DIR"):
        return Path(os.environ["RR_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rr"


def data_cache_dir(setting: str = "") -> Path:
    """Where data sets are built: ``[run] cache_dir`` when set, else :func:`default_cache_dir`."""
    return Path(setting).expanduser() if setting else default_cache_dir()


def config_hash(*parts: Any) -> str:
    """A short stable hash of JSON-able values or attrs instances (for cache folder names)."""

    def plain(value: Any) -> Any:
        return attrs.asdict(value) if attrs.has(type(value)) else value

    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached_build(cache_dir: Path, name: str, key: Any, build: Any) -> Path:
    """Return ``cache_dir/<name>-<hash(key)>``, building it first if absent.

    ``build(folder)`` must write the ``train/`` and ``test/`` splits into ``folder``
    (a fresh temporary folder); it is renamed into place only when ``build``
    returns, so an interrupted build never leaves a half-written data set behind (the
    temporary folder goes on any exception, ``KeyboardInterrupt`` and the ``rr`` command
    line's SIGTERM included; a full disk is a :class:`~rrcore.base.files.DiskFullError`).
    ``key`` must capture everything the result depends on (config, builder version,
    input file sizes and times).
    """
    target = Path(cache_dir) / f"{name}-{config_hash(key)}"
    if (target / "train" / "dataset.json").exists() and (target / "test" / "dataset.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        (tmp / "build.json").write_text(
            json.dumps(
                {"name": name, "key": key},
                indent=2,
                sort_keys=True,
                default=lambda v: attrs.asdict(v) if attrs.has(type(v)) else str(v),
            )
        )
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(error) and not isinstance(error, DiskFullError):
            raise DiskFullError(error.filename or target, "the partial data set was removed") from None
        raise
    return target
