"""``rr list-plugins`` and ``rr new-plugin``: the installed plugins, and a new one to start from."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs
import click

from rrcore.cli.common import EXIT_CONFIG, fail
from rrcore.contracts.registry import PluginFailure, get_registry


@click.command(name="list-plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_plugins(as_json: bool) -> None:
    """List installed plugins and what they register (and plugins that failed to load).

    A name two plugins register for one kind cannot be used; each such name ends the list
    with an error line naming both distributions, and the exit code is 2.
    """
    installed = get_registry()
    headers = ("kind", "name", "distribution", "version", "description")
    rows = [{header: getattr(spec, header) for header in headers} for spec in installed.all_components()]
    if as_json:
        without_traceback = attrs.filters.exclude(attrs.fields(PluginFailure).traceback)
        listing = {
            "components": rows,
            "plugins": [attrs.asdict(plugin) for plugin in installed.plugins],
            "failures": [attrs.asdict(failure, filter=without_traceback) for failure in installed.failures],
            "conflicts": installed.conflicts(),
        }
        click.echo(json.dumps(listing, indent=2))
    else:
        table = [headers] + [tuple(r[h] for h in headers) for r in rows]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(headers) - 1)]
        for row in table:
            click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
        for failure in installed.failures:
            click.echo(
                f"\nfailed to load plugin {failure.name!r} ({failure.distribution} {failure.version}): {failure.error}",
                err=True,
            )
        for conflict in installed.conflicts():
            click.echo(f"rr: error: {conflict}", err=True)
    if installed.conflicts():
        sys.exit(EXIT_CONFIG)


@click.command(name="new-plugin")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["model", "task"]),
    required=True,
    help="model: an architecture; task: a data set and its evaluator.",
)
@click.option("--output", type=click.Path(), help="Folder to write (new or empty; default: ./rr-NAME).")
@click.option(
    "--author",
    help='The author pyproject.toml names (PyPI shows it): "Name <email>" or "Name" (default: "The rr-NAME authors").',
)
@click.option("--url", help="Where the code lives: pyproject.toml's Repository link (default: none, a comment).")
def new_plugin(name: str, kind: str, output: str | None, author: str | None, url: str | None) -> None:
    """Write a plugin package NAME to start from.

    The package is pip-installable: pyproject.toml with the rr entry point, plugin.py, a
    config class, a small working model or task, a README with its keys and an example
    experiment, and tests that run rr's conformance kit (rrcore.testing).

    NAME (lowercase letters, digits, '_') is the entry point and the name the components are
    registered under; the package is rr_NAME, the distribution rr-NAME.
    """
    from rrcore.tools.scaffold import REGISTERS, PluginNames, ScaffoldError, check_output, project_metadata, render

    try:
        names = PluginNames.of(name)
        folder = Path(output) if output else Path(names.dist)
        check_output(folder)
        metadata = project_metadata(names, author, url)
    except ScaffoldError as error:
        fail(str(error), EXIT_CONFIG)
    installed = get_registry()
    for component in REGISTERS[kind]:
        taken = installed.components[component].get(name) or next(
            iter(installed.ambiguous[component].get(name, [])), None
        )
        if taken is not None:
            fail(
                f"NAME {name!r}: a {component} plugin of that name is installed ({taken.distribution} "
                f"{taken.version}); choose another name",
                EXIT_CONFIG,
            )
    written = render(kind, names, folder, metadata)
    click.echo(f"rr: wrote {kind} plugin {name!r} to {folder} ({len(written)} files); next:")
    example = folder / "examples" / ("sudoku4x4.toml" if kind == "model" else f"{name}-trm.toml")
    for line in (
        f"pip install -e {folder}",
        f"python -m pytest {folder / 'tests'}",
        "rr list-plugins",
        f"rr run {example}",
    ):
        click.echo(f"  {line}")


COMMANDS = (list_plugins, new_plugin)
