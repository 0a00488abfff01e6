"""The checks of .ci/packages, in two steps.

``dist DIST``: DIST holds exactly one sdist and one wheel of rrcore and of each bundled plugin
(plugins/rr-*), and each wheel carries what PyPI and pip read from it: its pyproject's ``rr``
entry points, the README as a Markdown long description, the licence text, and its own package
whole (every module and template), nothing else.
``twine check --strict`` (run by .ci/packages) renders the descriptions.

``installed VENV``: in VENV, a fresh environment that installed only those wheels, ``rr
list-plugins --json`` loads every bundled plugin from the installed distributions, none fails,
and every rr module imports from VENV, not from this checkout.
"""

from __future__ import annotations

import configparser
import email
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def projects() -> list[tuple[Path, dict]]:
    """(folder, [project] table) of rrcore and of each bundled plugin."""
    folders = [ROOT, *sorted(p for p in (ROOT / "plugins").glob("rr-*") if (p / "pyproject.toml").exists())]
    return [(f, tomllib.loads((f / "pyproject.toml").read_text(encoding="utf-8"))["project"]) for f in folders]


def fail(message: str) -> None:
    sys.exit(f"packages: {message}")


def check_dist(dist: Path) -> None:
    expected = set()
    for folder, project in projects():
        stem = f"{project['name'].replace('-', '_')}-{project['version']}"
        wheel, sdist = dist / f"{stem}-py3-none-any.whl", dist / f"{stem}.tar.gz"
        expected |= {wheel.name, sdist.name}
        if not wheel.exists() or not sdist.exists():
            fail(f"{folder.name}: expected {wheel.name} and {sdist.name} in {dist}")
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            info = f"{stem}.dist-info"
            entry_points = configparser.ConfigParser(delimiters=("=",))
            entry_points.optionxform = str  # entry point names are case-sensitive
            if f"{info}/entry_points.txt" in names:
                entry_points.read_string(archive.read(f"{info}/entry_points.txt").decode())
            metadata = email.message_from_string(archive.read(f"{info}/METADATA").decode("utf-8"))
        declared = project.get("entry-points", {}).get("rr", {})
        found = dict(entry_points["rr"]) if entry_points.has_section("rr") else {}
        if found != declared:
            fail(f"{wheel.name}: entry points [rr] {found} != pyproject.toml's {declared}")
        packages = {name.split("/")[0] for name in names} - {info}
        module = "rrcore" if folder == ROOT else project["name"].replace("-", "_")
        if packages != {module}:
            fail(f"{wheel.name}: holds {sorted(packages)}; expected only the package {module}/")
        sources = {
            path.relative_to(folder).as_posix()
            for pattern in ("*.py", "*.tmpl")  # modules, and rr new-plugin's templates
            for path in (folder / module).rglob(pattern)
            if "__pycache__" not in path.parts
        }
        if sources - set(names):
            fail(f"{wheel.name}: lacks {sorted(sources - set(names))}")
        if f"{info}/licenses/LICENSE" not in names or metadata["License-Expression"] != project["license"]:
            fail(f"{wheel.name}: no licence text (dist-info/licenses/LICENSE) or expression {project['license']}")
        readme = (folder / "README.md").read_text(encoding="utf-8")
        if metadata["Description-Content-Type"] != "text/markdown" or metadata.get_payload().strip() != readme.strip():
            fail(f"{wheel.name}: the long description is not {folder.name}/README.md as text/markdown")
        with tarfile.open(sdist) as archive:
            members = {name.split("/", 1)[-1] for name in archive.getnames()}
        if not {"pyproject.toml", "README.md", "LICENSE"} <= members:
            fail(f"{sdist.name}: lacks pyproject.toml, README.md or LICENSE")
    extra = {p.name for p in dist.iterdir()} - expected
    if extra:
        fail(f"{dist}: unexpected files {sorted(extra)}")
    print(f"packages: {len(expected)} distributions: entry points, README, licence and contents as declared")


def check_installed(venv: Path) -> None:
    venv = venv.resolve()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RR_LOAD_PLUGINS", "VIRTUAL_ENV")}
    with tempfile.TemporaryDirectory() as elsewhere:  # not the checkout: nothing imports from its folders
        listing = subprocess.run(
            [str(venv / "bin" / "rr"), "list-plugins", "--json"], cwd=elsewhere, env=env, capture_output=True, text=True
        )
        if listing.returncode != 0:
            fail(f"rr list-plugins --json failed in {venv}:\n{listing.stderr}")
        report = json.loads(listing.stdout)
        loaded = {(p["name"], p["module"], p["distribution"]) for p in report["plugins"]}
        modules = []
        for _, project in projects():
            for name, module in project.get("entry-points", {}).get("rr", {}).items():
                modules.append(module)
                if (name, module, project["name"]) not in loaded:
                    fail(f"rr list-plugins in {venv} does not list {name} = {module} of {project['name']}")
        if report["failures"] or report["conflicts"]:
            fail(f"rr list-plugins in {venv}: failures {report['failures']}, conflicts {report['conflicts']}")
        where = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sys, importlib; [print(importlib.import_module(m).__file__) "
             "for m in sys.argv[1:]]", "rrcore", *modules],
            cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
    outside = [path for path in where if not Path(path).resolve().is_relative_to(venv)]
    if outside:
        fail(f"imported from outside {venv}: {outside}")
    print(f"packages: rr in {venv} lists all {len(modules)} bundled plugins, each from its installed wheel")


if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    {"dist": check_dist, "installed": check_installed}[step](folder)
