"""Resuming a run from one of its checkpoints, on the same data, whatever the rank layout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rrcore.training.checkpoint import Stateful, load_checkpoint, load_parts, rank_state_for_layout
from rrcore.training.fits import check_same_data, saved_config
from rrcore.training.run import Run


def resume(run: Run, path: Path, rank_parts: dict[str, Stateful]) -> dict[str, Any]:
    """Load the checkpoint folder ``path`` into ``run`` and into this rank's ``rank_parts``;
    returns its progress (``trainer.json``: step, position in the data stream, training
    seconds). A checkpoint of other data is refused (:func:`~rrcore.training.fits.check_same_data`);
    with another global batch the run goes on from the same place in the data stream, its ACT
    carries restarted (each row then starts its next example afresh), as with another rank layout."""
    saved = saved_config(path)
    check_same_data(path, run.experiment, saved)
    rank, world_size = run.layout.rank, run.layout.world_size
    shared, per_rank, progress = load_checkpoint(path, rank)  # trainer.json checked
    run.restore(path, shared, saved)
    train = run.experiment.train
    saved_batch = saved.get("train", {}).get("global_batch_size", train.global_batch_size)
    if saved_batch != train.global_batch_size and rank == 0:
        print(
            f"rr: resuming {path} with train.global_batch_size = {train.global_batch_size} (it was "
            f"{saved_batch}): the data stream goes on where it stopped, ACT carries restarted",
            file=sys.stderr,
        )
    layout = (progress.get("world_size"), progress.get("grad_accum_steps"))
    if layout != (world_size, train.grad_accum_steps) or saved_batch != train.global_batch_size:
        per_rank = rank_state_for_layout(
            path, progress, rank, world_size, train.grad_accum_steps, train.global_batch_size
        )
        if rank == 0 and layout != (world_size, train.grad_accum_steps):
            was = f"{progress.get('world_size')} x {progress.get('grad_accum_steps')}"
            what = "regrouped" if per_rank["carries"] else "restarted (the global batch size changed)"
            print(
                f"rr: resuming {path} with a different rank/accumulation layout (ranks x accumulation "
                f"steps {was}, now {world_size} x {train.grad_accum_steps}): ACT carries {what}",
                file=sys.stderr,
            )
    if per_rank is not None:
        load_parts(rank_parts, per_rank, path / f"rank{rank}.pt")
    return progress
