"""``rr arc check-submission``; ``rr data build arc`` builds the data set."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rrcore.api import InputError, input_file


@click.group()
def arc() -> None:
    """ARC-AGI submissions (build data sets with rr data build arc)."""


@arc.command("check-submission")
@click.argument("submission")
@click.option(
    "--tasks",
    default=None,
    help="the tasks to check ids and counts against: a folder of <task_id>.json files, "
    "one <task_id>.json, a challenges JSON, or a built split's "
    "arc_test_tasks.json",
)
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
            message = f"{path}:" + message[len("submission:") :]
        raise InputError(message) from None
    click.echo(f"{path}: valid ARC Prize submission")
