"""The code stays readable in pieces: no function in ``rrcore/`` or a bundled plugin runs over a screen."""

from __future__ import annotations

import ast
from pathlib import Path

import rrcore

MAX_FUNCTION_LINES = 60
"""Counted from the ``def`` line (decorators not included) through the function's last line."""
PLUGIN_PACKAGES = sorted(
    init.parent for init in (Path(__file__).resolve().parents[1] / "plugins").glob("rr-*/rr_*/__init__.py")
)
"""The bundled plugins' packages (``plugins/rr-*/rr_*``), their tests not included."""


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:function (N lines)`` for every function or method under ``root`` longer than ``limit``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root.parent).as_posix()}:{node.name} ({lines} lines)")
    return found


def test_no_function_in_rrcore_is_over_sixty_lines():
    found = long_functions(Path(rrcore.__file__).parent)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines; split them into named helpers: " + ", ".join(found)


def test_no_function_in_a_bundled_plugin_is_over_sixty_lines():
    assert PLUGIN_PACKAGES, "no plugin packages found under plugins/rr-*/rr_*"
    found = [name for package in PLUGIN_PACKAGES for name in long_functions(package)]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines; split them into named helpers: " + ", ".join(found)


def test_a_long_function_is_named_with_its_file_and_length(tmp_path):
    package = tmp_path / "pkg"
    (package / "templates").mkdir(parents=True)
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    method_body = "\n".join(f"        x{i} = {i}" for i in range(60))
    (package / "mod.py").write_text(f"def short():\n    return 1\n\n\nclass C:\n    def long(self):\n{method_body}\n")
    (package / "templates" / "model.py.tmpl").write_text(f"def long():\n{body}\n")
    assert long_functions(package) == ["pkg/mod.py:long (61 lines)"]
