"""Plugins use rr through one public module, ``rrcore.api``.

The bundled plugins and the packages ``rr new-plugin`` writes are what third-party authors
copy; if one of them reaches into ``rrcore.model.layers`` or ``rrcore.data.format`` directly, the core can no
longer reshape those modules without breaking plugins it never sees.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rrcore.api
from rrcore.tools.scaffold import KINDS, PluginNames, render

REPO = Path(__file__).resolve().parents[1]
PUBLIC = "rrcore.api"


def private_rrcore_imports(source: str, filename: str) -> list[str]:
    """Every import of an ``rrcore`` module other than ``rrcore.api`` in ``source``, at any
    depth (inside functions and ``if TYPE_CHECKING:`` too), as ``file:line: import``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from rrcore import api` is the public module too; any other name from the root is not.
            names = [alias.name for alias in node.names]
            modules = [f"rrcore.{name}" for name in names] if node.module == "rrcore" else [node.module]
        else:
            continue
        for module in modules:
            if (module == "rrcore" or module.startswith("rrcore.")) and module != PUBLIC:
                found.append((node.lineno, f"{filename}:{node.lineno}: {ast.unparse(node)}"))
    return [line for _, line in sorted(found)]


def bundled_plugin_modules() -> list[Path]:
    return sorted(REPO.glob("plugins/rr-*/rr_*/**/*.py"))


def test_bundled_plugins_import_only_rrcore_api():
    modules = bundled_plugin_modules()
    assert len(modules) > 30, "the bundled plugins' modules were not found"
    offending = [
        line
        for path in modules
        for line in private_rrcore_imports(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]
    assert not offending, (
        f"bundled plugins must import rr from {PUBLIC} only (add the name there if it is "
        f"missing):\n" + "\n".join(offending)
    )


def test_new_plugin_packages_import_only_rrcore_api(tmp_path):
    for kind in KINDS:
        written = render(kind, PluginNames.of("probe"), tmp_path / kind)
        package = [path for path in written if path.suffix == ".py" and "tests" not in path.parts]
        assert package, f"the {kind} template wrote no module"
        offending = [
            line for path in package for line in private_rrcore_imports(path.read_text(encoding="utf-8"), path.name)
        ]
        assert not offending, f"`rr new-plugin --kind {kind}` writes imports other than {PUBLIC}:\n" + "\n".join(
            offending
        )


def test_every_public_name_exists():
    missing = [name for name in rrcore.api.__all__ if not hasattr(rrcore.api, name)]
    assert not missing, f"rrcore.api lists names it does not define: {missing}"


def test_the_check_names_file_line_and_import():
    source = (
        "from rrcore.api import hookimpl\n"
        "from rrcore import hookimpl\n"
        "def build():\n"
        "    from rrcore.data.format import SplitWriter\n"
        "import rrcore.model.layers as layers\n"
    )
    assert private_rrcore_imports(source, "rr_x/plugin.py") == [
        "rr_x/plugin.py:2: from rrcore import hookimpl",
        "rr_x/plugin.py:4: from rrcore.data.format import SplitWriter",
        "rr_x/plugin.py:5: import rrcore.model.layers as layers",
    ]
