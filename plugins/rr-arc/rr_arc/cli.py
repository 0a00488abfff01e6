"""``rr arc build`` and ``rr arc check-submission``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rrcore.cli_input import InputError, input_file, output_folder

LAYOUTS = ("<prefix>_<subset>_challenges.json files (combined layout) or <subset>/ folders of "
           "<task_id>.json files (per-task layout)")

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
    from rr_arc.build import ArcDataConfig, ArcLeakError, build_arc, build_dataset
    from rr_arc.reader import ArcFormatError
    from rrcore.data import default_cache_dir

    root = Path(path).expanduser()
    if not root.is_dir():
        problem = "is a file, not a folder" if root.exists() else "no such folder"
        raise InputError(f"--path {root}: {problem}; it should hold the ARC subsets as {LAYOUTS}")
    config = ArcDataConfig(path=path, prefix=prefix, layout=layout,  # type: ignore[arg-type]
                           train_subsets=[s for s in train_subsets.split(",") if s], test_subset=test_subset,
                           num_aug=num_aug, seed=seed, translate=not no_translate, drop_leaks=drop_leaks,
                           allow_leak=allow_leak)
    if out is not None and out.exists():
        raise InputError(f"--out {out}: exists; choose a new folder")
    try:
        if out is not None:
            summary = build_arc(config, output_folder(out, "data set"))
            click.echo(json.dumps(summary, indent=2))
            click.echo(str(out))
        else:
            click.echo(str(build_dataset(config, default_cache_dir())))
    except (ArcFormatError, ArcLeakError) as error:
        raise InputError(str(error)) from None


@arc.command("check-submission")
@click.argument("submission")
@click.option("--tasks", default=None,
              help="the tasks to check ids and counts against: a folder of <task_id>.json files, "
                   "one <task_id>.json, a challenges JSON, or a built split's "
                   "arc_test_tasks.json")
@click.option("--attempts", default=2, show_default=True)
def check_submission(submission: str, tasks: str | None, attempts: int) -> None:
    """Check that SUBMISSION follows the ARC Prize format."""
    from rr_arc.evaluator import validate_submission
    from rr_arc.reader import ArcFormatError, read_tasks_file

    path = input_file(submission, "submission file")
    try:
        task_tests = None
        if tasks is not None:
            tasks_path = Path(tasks).expanduser()
            if not tasks_path.exists():
                raise InputError(f"--tasks {tasks_path}: no such file or folder")
            task_tests = read_tasks_file(tasks_path)
        text = path.read_text(encoding="utf-8-sig")
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not valid JSON ({error})") from None
        validate_submission(entries, task_tests, attempts)
    except ArcFormatError as error:
        message = str(error)
        if message.startswith("submission:"):  # name the file the user passed
            message = f"{path}:" + message[len("submission:"):]
        raise InputError(message) from None
    click.echo(f"{path}: valid ARC Prize submission")
