"""``rr new-plugin``: write a pip-installable plugin package from the templates in ``rrcore/templates``.

A template tree per kind (``model``, ``task``) holds ``*.tmpl`` files; a path part
``__module__`` becomes the package's module (``rr_<name>``) and ``__name__`` the plugin's
name; in the text ``{{name}}``, ``{{module}}``, ``{{dist}}``, ``{{Class}}``,
``{{rrcore_range}}``, ``{{rrcore_version}}``, ``{{authors}}`` and ``{{urls}}`` are replaced.
The package registers its components under ``name`` through the ``rr`` entry point, and its
tests call the conformance kit (:mod:`rrcore.testing`).

The model template's ``examples/base/sudoku4x4.toml`` is a copy of rr's
``examples/base/sudoku4x4.toml`` (tests/test_new_plugin.py holds the two equal): the written
package carries what its example composes with, since ``pip install rrcore`` installs no
examples.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs

from rrcore import __version__

TEMPLATES = Path(__file__).parents[1] / "templates"
KINDS = ("model", "task")
REGISTERS = {"model": ("model",), "task": ("dataset", "evaluator")}
"""The registry kinds each template's plugin registers under its name."""

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class ScaffoldError(ValueError):
    """A name or folder ``rr new-plugin`` cannot use; the message says what would be right."""


@attrs.frozen
class PluginNames:
    """The names a new plugin goes by: ``name`` (entry point and registered components),
    ``module`` (``rr_<name>``), ``dist`` (``rr-<name>``, dashes) and ``Class`` (CamelCase)."""

    name: str
    module: str
    dist: str
    Class: str

    @classmethod
    def of(cls, name: str) -> PluginNames:
        if not _NAME.fullmatch(name):
            raise ScaffoldError(
                f"NAME {name!r} is not a plugin name: use 1-40 lowercase letters, digits and "
                f"'_', starting with a letter (e.g. 'mymodel')"
            )
        camel = "".join(part.capitalize() for part in name.split("_"))
        return cls(name, f"rr_{name}", f"rr-{name.replace('_', '-')}", camel)


def rrcore_range(version: str = __version__) -> str:
    """The rrcore versions a plugin built against ``version`` declares: from this minor release
    up to the next major one (``>=1.2,<2``), or, before 1.0, where a minor release may change
    the plugin contract, up to the next minor one (``>=0.1,<0.2``); the bundled plugins
    declare the same."""
    major, minor = (version.split(".") + ["0"])[:2]
    if not (major.isdigit() and minor.isdigit()):
        return ""
    upper = f"0.{int(minor) + 1}" if major == "0" else str(int(major) + 1)
    return f">={major}.{minor},<{upper}"


_AUTHOR = re.compile(r"\s*(?P<name>[^<>]*?)\s*(?:<(?P<email>[^<>\s]+@[^<>\s]+)>)?\s*")


def project_metadata(names: PluginNames, author: str | None = None, url: str | None = None) -> dict[str, str]:
    """The ``{{authors}}`` and ``{{urls}}`` of a new package's pyproject.toml: ``author``
    (``"Name <email>"`` or ``"Name"``; default "The rr-NAME authors") and ``url``, where its
    code lives (PyPI shows it as the Repository link; without it the table holds a comment)."""
    match = _AUTHOR.fullmatch(author if author is not None else f"The {names.dist} authors")
    if match is None or not match["name"]:
        raise ScaffoldError(
            f'--author {author!r}: expected "Name <email>" or "Name", e.g. "Ada Lovelace <ada@example.org>"'
        )
    entry = {"name": match["name"], **({"email": match["email"]} if match["email"] else {})}
    authors = "{ " + ", ".join(f"{key} = {json.dumps(value)}" for key, value in entry.items()) + " }"
    if url is None:
        urls = '# Repository = "https://..."   # where the code lives; PyPI links it (rr new-plugin --url)'
    elif re.fullmatch(r"https?://\S+", url):
        urls = f"Repository = {json.dumps(url)}"
    else:
        raise ScaffoldError(f"--url {url!r}: expected an http(s):// address, e.g. https://github.com/you/{names.dist}")
    return {"authors": authors, "urls": urls}


def check_output(output: Path) -> None:
    """``output`` must be a new or empty folder."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ScaffoldError(f"--output {output}: exists and is not an empty folder; choose a new folder")


def render(kind: str, names: PluginNames, output: Path, metadata: dict[str, str] | None = None) -> list[Path]:
    """Write the ``kind`` template for ``names`` into ``output``; return the files written.
    ``metadata``: :func:`project_metadata`'s (default: no author or URL given)."""
    check_output(output)
    root = TEMPLATES / kind
    values = {
        **attrs.asdict(names),
        "rrcore_range": rrcore_range(),
        "rrcore_version": __version__,
        **(metadata or project_metadata(names)),
    }
    written = []
    for template in sorted(root.rglob("*.tmpl")):
        relative = str(template.relative_to(root).with_suffix(""))
        relative = relative.replace("__module__", names.module).replace("__name__", names.name)
        text = template.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        target = output / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
