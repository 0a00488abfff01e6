"""``rr arc build`` and ``rr arc check-submission``."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def arc() -> None:
    """ARC-AGI data sets and submissions."""


@arc.command()
@click.option("--path", default="data/arc", show_default=True, help="folder holding the subsets (either layout)")
@click.option("--prefix", default="arc-agi", show_default=True, help="file prefix of the combined layout")
@click.option("--layout", type=click.Choice(["auto", "combined", "per_task"]), default="auto", show_default=True)
@click.option("--train-subsets", default="training,evaluation,concept", show_default=True,
              help="comma-separated subsets whose tasks are trained on")
@click.option("--test-subset", default="evaluation", show_default=True,
              help="subset whose test pairs are held out (its demonstrations are trained on)")
@click.option("--num-aug", default=1000, show_default=True, help="augmented versions per task")
@click.option("--seed", default=0, show_default=True)
@click.option("--no-translate", is_flag=True, help="keep every training grid at the top-left")
@click.option("--drop-leaks", is_flag=True, help="drop training pairs equal to held-out test pairs")
@click.option("--allow-leak", is_flag=True, help="build even when training holds held-out test pairs")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="write here instead of the rr cache (the folder must not exist)")
def build(path: str, prefix: str, layout: str, train_subsets: str, test_subset: str, num_aug: int, seed: int,
          no_translate: bool, drop_leaks: bool, allow_leak: bool, out: Path | None) -> None:
    """Build (or find in the cache) an augmented ARC data set and print where it is."""
    from rr_arc.build import ArcDataConfig, build_arc, build_dataset
    from rrcore.data import default_cache_dir

    config = ArcDataConfig(path=path, prefix=prefix, layout=layout,  # type: ignore[arg-type]
                           train_subsets=[s for s in train_subsets.split(",") if s], test_subset=test_subset,
                           num_aug=num_aug, seed=seed, translate=not no_translate, drop_leaks=drop_leaks,
                           allow_leak=allow_leak)
    if out is not None:
        if out.exists():
            raise click.UsageError(f"{out} exists; choose a new folder")
        summary = build_arc(config, out)
        click.echo(json.dumps(summary, indent=2))
        click.echo(str(out))
    else:
        click.echo(str(build_dataset(config, default_cache_dir())))


@arc.command("check-submission")
@click.argument("submission", type=click.Path(exists=True, path_type=Path))
@click.option("--tasks", type=click.Path(exists=True, path_type=Path), default=None,
              help="a challenges JSON or a built split's arc_test_tasks.json, to check ids and counts too")
@click.option("--attempts", default=2, show_default=True)
def check_submission(submission: Path, tasks: Path | None, attempts: int) -> None:
    """Check that SUBMISSION follows the ARC Prize format."""
    from rr_arc.evaluator import validate_submission
    from rr_arc.reader import ArcFormatError

    try:
        validate_submission(json.loads(submission.read_text()),
                            json.loads(tasks.read_text()) if tasks else None, attempts)
    except ArcFormatError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{submission}: valid ARC Prize submission")
