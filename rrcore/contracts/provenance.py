"""What made a run or an export: the software it was trained or exported with.

:func:`record` lists the distribution and version of rrcore and of each plugin an
experiment uses (its data set and task, model, loss head, optimizers, evaluators and
loggers), the torch and Python versions, and the git commit of the working directory when
that is a git checkout (None otherwise). The trainer writes it to the run folder as
``provenance.json`` (:func:`write_provenance`, each time the run starts or resumes);
``rr export`` puts it in ``export.json`` under ``"provenance"``.

Loading a run or an export where one of the plugins it was made with is not loaded,
:func:`install_hint` reads the record back and says which package and version to install.
"""

from __future__ import annotations

import json
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rrcore import __version__
from rrcore.base.files import atomic_write_text

PROVENANCE_FILE = "provenance.json"
INFO_FILE = "export.json"  # an export folder's record (``rr export``), provenance under "provenance"
GIT_TIMEOUT_SECONDS = 2.0
_NOT_INSTALLABLE = {"", "local", "unknown"}  # modules registered in the process, not from a package


def git_commit(folder: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` in ``folder`` (default: the working directory), or None when it
    is not a git checkout, git is missing or does not answer within a couple of seconds."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    is_hash = len(commit) in (40, 64) and all(c in "0123456789abcdef" for c in commit)
    return commit if done.returncode == 0 and is_hash else None


def _plugins_used(experiment: Any) -> list[tuple[str, str, str]]:
    """(section, kind, plugin name) of every component the experiment names."""
    used = [
        ("data", "dataset", experiment.data.plugin),
        ("data", "task", experiment.data.plugin),  # rr solve reads puzzles through it
        ("model", "model", experiment.model.plugin),
        ("loss", "loss_head", experiment.loss.plugin),
        ("optimizer", "optimizer", experiment.optimizer.plugin),
    ]
    used += [(f"optimizer.groups.{name}", "optimizer", g.plugin) for name, g in experiment.optimizer.groups.items()]
    used += [(f"evaluators.{i}", "evaluator", s.plugin) for i, s in enumerate(experiment.evaluators)]
    used += [(f"loggers.{i}", "logger", s.plugin) for i, s in enumerate(experiment.loggers)]
    return used


def record(experiment: Any, registry: Any) -> dict[str, Any]:
    """The provenance of ``experiment`` as ``registry`` resolves it (see the module doc):
    ``distributions`` (name to version, rrcore first), ``plugins`` (each component with its
    section, kind, distribution and version), ``torch``, ``python`` and ``git_commit``."""
    import torch

    plugins, seen = [], set()
    for section, kind, name in _plugins_used(experiment):
        spec = registry.components[kind].get(name)
        if spec is None or (kind, name) in seen:  # a data set without a task; a repeated evaluator
            continue
        seen.add((kind, name))
        plugins.append(
            {
                "section": section,
                "kind": kind,
                "plugin": name,
                "distribution": spec.distribution,
                "version": spec.version,
            }
        )
    distributions = {"rrcore": __version__}
    for plugin in plugins:
        distributions.setdefault(plugin["distribution"], plugin["version"])
    return {
        "distributions": distributions,
        "plugins": plugins,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
    }


def write_provenance(run_dir: Path, experiment: Any, registry: Any) -> None:
    """Write :func:`record` to ``run_dir/provenance.json`` (atomically)."""
    atomic_write_text(Path(run_dir) / PROVENANCE_FILE, json.dumps(record(experiment, registry), indent=2) + "\n")


def recorded(folder: Path) -> dict[str, Any] | None:
    """The provenance recorded for the experiment saved in ``folder``: an export's (in its
    ``export.json``), a run folder's, or the run folder's of a checkpoint folder
    (``RUN/checkpoints/step_N``); None when there is none or it cannot be read."""
    folder = Path(folder)
    for path, key in (
        (folder / INFO_FILE, "provenance"),
        (folder / PROVENANCE_FILE, None),
        (folder.parent.parent / PROVENANCE_FILE, None),
    ):
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found = found.get(key) if key and isinstance(found, dict) else found
        if isinstance(found, dict):
            return found
    return None


def install_hint(folder: Path, registry: Any) -> str | None:
    """One sentence naming each package (and version) that made the run or export saved in
    ``folder`` and whose plugin ``registry`` lacks, with how to install it; None when every
    recorded plugin is loaded or nothing is recorded."""
    found = recorded(folder)
    missing: dict[str, list[str]] = {}  # distribution==version -> the plugins it provided
    for plugin in (found or {}).get("plugins", []):
        try:
            kind, name = plugin["kind"], plugin["plugin"]
            loaded = kind not in registry.components or name in registry.components[kind]
            package = (str(plugin.get("distribution", "")), str(plugin.get("version", "")))
        except (KeyError, TypeError):
            continue  # a record written by hand or damaged: no hint rather than an error
        if not loaded and name not in registry.ambiguous.get(kind, {}):  # ambiguity says its own
            missing.setdefault(package, []).append(f"{kind.replace('_', ' ')} {name!r}")
    if not missing:
        return None
    parts = []
    for (distribution, wanted), plugins in missing.items():
        made = f"{distribution} {wanted} ({', '.join(plugins)})"
        if distribution in _NOT_INSTALLABLE:
            parts.append(f"{made}, a module registered by hand: register it again")
            continue
        try:
            installed = version(distribution)
        except PackageNotFoundError:
            parts.append(f"{made}: pip install '{distribution}=={wanted}'")
        else:
            parts.append(
                f"{made}: {distribution} {installed} is installed but its plugin is not loaded "
                "(see RR_LOAD_PLUGINS, RR_DISABLE_PLUGINS and rr list-plugins)"
            )
    return f"made with {'; '.join(parts)}"
