"""Plugin discovery: entry-point loading, lookup by name, and :func:`build`, which makes a
component from its spec and names the plugin when it fails.

The registry loads the core's built-in plugins (``DEFAULT_PLUGINS``) and then
every module named under the ``rr`` entry-point group. A plugin that fails to
import is recorded in :attr:`Registry.failures` and the others still load (so is a
plugin whose entry-point name another plugin took). A name that two plugins register
for one kind is ambiguous: neither is used, looking it up is an
:class:`AmbiguousPluginError` naming both distributions, and every other name works.

Environment variables (useful when a broken plugin is installed):

``RR_DISABLE_PLUGINS``
    comma-separated entry-point names or distributions not to load.
``RR_LOAD_PLUGINS``
    if set, load only these external plugins (comma-separated); empty loads none.
"""

from __future__ import annotations

import difflib
import os
import traceback
from collections.abc import Iterable
from importlib import import_module
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import attrs
import pluggy

from rrcore import ENTRY_POINT_GROUP, PROJECT_NAME, __version__
from rrcore.base.files import is_disk_full
from rrcore.contracts import hookspecs
from rrcore.contracts.errors import CheckpointError, ConfigError, DataSourceError, TrainingError
from rrcore.contracts.specs import (
    DatasetSpec,
    EvaluatorSpec,
    LoggerSpec,
    LossHeadSpec,
    ModelSpec,
    OptimizerSpec,
    Spec,
    TaskSpec,
)

DEFAULT_PLUGINS = (
    "rrcore.training.builtin",
    "rrcore.tools.plots",
)
"""Core features that register through the same hooks as third-party plugins."""


class RegistryError(Exception):
    """A plugin problem that makes a name ambiguous or a descriptor unusable."""


class UnknownPluginError(KeyError):
    """A name that no loaded plugin registered; the message lists the names available."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class AmbiguousPluginError(UnknownPluginError, RegistryError):
    """A name that several plugins registered for one kind; the message names their
    distributions and how to keep one."""


def build(spec: Spec, *args: Any) -> Any:
    """``spec.factory(*args)``; a failure becomes a :class:`~rrcore.contracts.errors.TrainingError`
    naming the plugin and its distribution (the original exception stays chained)."""
    try:
        return spec.factory(*args)
    except (TrainingError, CheckpointError, ConfigError):  # a plugin's ConfigError: it refuses the input
        raise
    except DataSourceError as error:  # the input is wrong, not the plugin: exit 2, one line
        raise ConfigError(f"data plugin {spec.name!r}: {error}") from error
    except Exception as error:
        if is_disk_full(error):  # the disk, not the plugin: one line naming the file
            raise
        raise TrainingError(
            f"{spec.kind.replace('_', ' ')} plugin {spec.name!r} ({spec.distribution} "
            f"{spec.version}) failed: {type(error).__name__}: {error}"
        ) from error


_HOOK_FOR_KIND: dict[str, tuple[str, type[Spec]]] = {
    "model": ("rr_register_models", ModelSpec),
    "dataset": ("rr_register_datasets", DatasetSpec),
    "loss_head": ("rr_register_loss_heads", LossHeadSpec),
    "evaluator": ("rr_register_evaluators", EvaluatorSpec),
    "optimizer": ("rr_register_optimizers", OptimizerSpec),
    "logger": ("rr_register_loggers", LoggerSpec),
    "task": ("rr_register_tasks", TaskSpec),
}
KINDS = tuple(_HOOK_FOR_KIND)


@attrs.frozen
class PluginInfo:
    """One loaded plugin module and where it came from."""

    name: str
    module: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


@attrs.frozen
class PluginFailure:
    """A plugin that could not be loaded, with the error it raised."""

    name: str
    distribution: str
    version: str
    error: str
    traceback: str


def _split_env(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


class Registry:
    """The loaded plugins and every component they registered, by kind and name."""

    def __init__(self) -> None:
        self.plugin_manager = pluggy.PluginManager(PROJECT_NAME)
        self.plugin_manager.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []
        self.components: dict[str, dict[str, Spec]] = {kind: {} for kind in KINDS}
        self.ambiguous: dict[str, dict[str, list[Spec]]] = {kind: {} for kind in KINDS}
        """Names registered more than once for a kind, with every registration (none of
        them is in :attr:`components`)."""
        self._origin: dict[int, tuple[str, str]] = {}

    @property
    def hook(self) -> Any:
        """The pluggy hook relay, e.g. ``registry.hook.rr_on_step_end(...)``."""
        return self.plugin_manager.hook

    # -- loading ---------------------------------------------------------------------

    def register_module(self, module: ModuleType, *, name: str, distribution: str, version: str) -> None:
        """Register a plugin module and collect the components it registers."""
        if self.plugin_manager.has_plugin(name):
            raise RegistryError(
                f"two plugins are named {name!r}: {distribution} and "
                f"{self._origin[id(self.plugin_manager.get_plugin(name))][0]}"
            )
        self.plugin_manager.register(module, name=name)
        self._origin[id(module)] = (distribution, version)
        hooks = tuple(sorted(caller.name for caller in self.plugin_manager.get_hookcallers(module) or []))
        self.plugins.append(PluginInfo(name, module.__name__, distribution, version, hooks))
        for kind, (hook_name, spec_class) in _HOOK_FOR_KIND.items():
            for impl in getattr(self.plugin_manager.hook, hook_name).get_hookimpls():
                if impl.plugin is module:
                    self._collect(kind, spec_class, impl.function(), name, distribution, version)

    def _collect(
        self,
        kind: str,
        spec_class: type[Spec],
        specs: Iterable[Spec] | None,
        plugin: str,
        distribution: str,
        version: str,
    ) -> None:
        for spec in specs or ():
            if not isinstance(spec, spec_class):
                raise RegistryError(
                    f"plugin {plugin!r} ({distribution}) returned {spec!r} from "
                    f"{_HOOK_FOR_KIND[kind][0]}; expected {spec_class.__name__}"
                )
            spec = attrs.evolve(spec, distribution=distribution, version=version)
            existing = self.components[kind].pop(spec.name, None)
            if existing is not None or spec.name in self.ambiguous[kind]:
                self.ambiguous[kind].setdefault(spec.name, [existing]).append(spec)
            else:
                self.components[kind][spec.name] = spec

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load every plugin of the entry-point group, isolating import failures."""
        disabled = _split_env("RR_DISABLE_PLUGINS") or set()
        only = _split_env("RR_LOAD_PLUGINS")
        for entry_point in sorted(entry_points(group=group), key=lambda ep: ep.name):
            dist = entry_point.dist
            dist_name = dist.metadata["Name"] if dist is not None else "unknown"
            dist_version = dist.version if dist is not None else "unknown"
            if entry_point.name in disabled or dist_name in disabled:
                continue
            if only is not None and entry_point.name not in only and dist_name not in only:
                continue
            if self.plugin_manager.has_plugin(entry_point.name):
                first = self._origin[id(self.plugin_manager.get_plugin(entry_point.name))][0]
                error = (
                    f"another plugin is named {entry_point.name!r} ({first}); uninstall one "
                    f"or set RR_DISABLE_PLUGINS={dist_name}"
                )
                self.failures.append(PluginFailure(entry_point.name, dist_name, dist_version, error, error))
                continue
            try:
                module = entry_point.load()
                self.register_module(module, name=entry_point.name, distribution=dist_name, version=dist_version)
            except RegistryError:
                raise
            except Exception as error:  # a broken plugin must not take rr down
                if self.plugin_manager.has_plugin(entry_point.name):
                    self.plugin_manager.unregister(name=entry_point.name)
                self.failures.append(
                    PluginFailure(
                        entry_point.name,
                        dist_name,
                        dist_version,
                        f"{type(error).__name__}: {error}",
                        traceback.format_exc(),
                    )
                )

    # -- lookup ----------------------------------------------------------------------

    def ambiguity(self, kind: str, name: str) -> str | None:
        """Why ``name`` of ``kind`` cannot be used (the distributions that registered it),
        or None when at most one plugin registered it."""
        specs = self.ambiguous[kind].get(name)
        if not specs:
            return None
        times, others = (
            ("twice", "the other or naming it")
            if len(specs) == 2
            else (f"{len(specs)} times", "the others or naming them")
        )
        by = " and by ".join(spec.distribution for spec in specs)
        return (
            f"{kind.replace('_', ' ')} {name!r} is registered {times}: by {by}; keep one by "
            f"uninstalling {others} in RR_DISABLE_PLUGINS (e.g. RR_DISABLE_PLUGINS={specs[-1].distribution})"
        )

    def conflicts(self) -> list[str]:
        """:meth:`ambiguity` of every ambiguous name, by kind then name."""
        return [self.ambiguity(kind, name) or "" for kind in KINDS for name in sorted(self.ambiguous[kind])]

    def find(self, kind: str, name: str) -> Spec | None:
        """The component ``name`` of ``kind``, or None when no plugin registered it; an
        ambiguous name raises :class:`AmbiguousPluginError`."""
        why = self.ambiguity(kind, name)
        if why is not None:
            raise AmbiguousPluginError(why)
        return self.components[kind].get(name)

    def get(self, kind: str, name: str) -> Spec:
        """The component ``name`` of ``kind``; unknown names list what is available."""
        available = self.components[kind]
        found = self.find(kind, name)
        if found is not None:
            return found
        message = (
            f"unknown {kind.replace('_', ' ')} plugin {name!r}; available: {', '.join(sorted(available)) or 'none'}"
        )
        close = difflib.get_close_matches(name, available, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        broken = [f.name for f in self.failures]
        if broken:
            message += f"; plugins that failed to load: {', '.join(broken)} (see `rr list-plugins`)"
        raise UnknownPluginError(message)

    def all_components(self) -> list[Spec]:
        """Every registered component, sorted by kind then name."""
        return [spec for kind in KINDS for _, spec in sorted(self.components[kind].items())]


def load_registry(
    *, entry_point_group: str | None = ENTRY_POINT_GROUP, extra_modules: Iterable[ModuleType] = ()
) -> Registry:
    """Build a registry: built-ins, then the entry-point group, then ``extra_modules``."""
    registry = Registry()
    for module_name in DEFAULT_PLUGINS:
        registry.register_module(
            import_module(module_name), name=module_name.rsplit(".", 1)[-1], distribution="rrcore", version=__version__
        )
    if entry_point_group is not None:
        registry.load_entry_points(entry_point_group)
    for module in extra_modules:
        registry.register_module(module, name=module.__name__, distribution="local", version="0")
    return registry


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry


def set_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (tests; ``None`` reloads on next use)."""
    global _registry
    _registry = registry
