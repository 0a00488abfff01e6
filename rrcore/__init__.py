"""rr core: protocols, plugin registry, experiments, ACT and the trainer.

Plugin authors need three names from here: :data:`hookimpl` to mark hook
implementations, the descriptor classes in :mod:`rrcore.contracts.registry` to return from
the registration hooks, and the protocols in :mod:`rrcore.contracts.protocols`.
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

PROJECT_NAME = "rr"
ENTRY_POINT_GROUP = "rr"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a function in a plugin module as the implementation of an rr hook."""

try:
    __version__ = version("rrcore")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "__version__", "hookimpl"]
