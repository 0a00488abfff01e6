"""Stamps of source files for data set cache keys: a set is built anew when a source changes."""

from __future__ import annotations

from pathlib import Path


def source_stamp(path: str | Path) -> dict[str, object]:
    """``path`` (resolved), its size in bytes and its modification time in ns: the part of a
    data set's cache key (:func:`rrcore.data.cache.cached_build`) that a changed file changes."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    return {"path": str(resolved), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
