"""A built run: :class:`Run` holds the parts :func:`rrcore.training.build.build_run` makes.

The training loop (:mod:`rrcore.training.loop`), ``rr eval``, ``rr bench``, ``rr solve`` and the
inspection commands each take what they need from it. Checkpoints save and restore the
run's named stateful parts (:meth:`Run.checkpoint_parts`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import nn

from rrcore.training.checkpoint import Stateful, load_file, load_parts
from rrcore.training.ema import EMA
from rrcore.training.fits import check_fits, saved_config
from rrcore.training.weights import load_weights

if TYPE_CHECKING:  # the parts' types; build.py makes them
    from rrcore.contracts.experiment import Experiment
    from rrcore.contracts.protocols import Batch, BatchAugmenter
    from rrcore.contracts.registry import Registry
    from rrcore.data.loader import PuzzleDataset
    from rrcore.model.act import ACTModel
    from rrcore.model.compiled_step import CompiledStep
    from rrcore.training.optim import Optimizers


@attrs.frozen
class BatchLayout:
    """How one global batch is split: over ``world_size`` ranks, then into
    ``grad_accum_steps`` micro-batches per rank."""

    rank: int
    world_size: int
    global_batch_size: int
    grad_accum_steps: int

    @property
    def local_batch(self) -> int:
        return self.global_batch_size // self.world_size

    @property
    def micro_batch(self) -> int:
        return self.local_batch // self.grad_accum_steps

    def row_offset(self, micro: int) -> int:
        """The first global-batch row of this rank's micro-batch ``micro``."""
        return self.rank * self.local_batch + micro * self.micro_batch


@attrs.define
class Run:
    """Everything an experiment names, built: see :func:`~rrcore.training.build.build_run`.

    ``optimizers`` is None when built without them (``rr eval``); ``evaluators`` are
    ``(name, evaluator)`` pairs, empty without a test split or when not asked for.
    ``batch_augmenter`` is the data set plugin's (None without one) and
    ``augmentation_generator`` the generator it draws from.
    """

    experiment: Experiment
    registry: Registry
    device: torch.device
    layout: BatchLayout
    data_dir: Path
    train_data: PuzzleDataset
    eval_data: PuzzleDataset | None
    total_steps: int
    model: nn.Module
    act_model: ACTModel
    loss_head: nn.Module
    step_fn: CompiledStep
    ema: EMA | None
    optimizers: Optimizers | None
    evaluators: list[tuple[str, Any]]
    forward_dtype: torch.dtype = torch.float32
    batch_augmenter: BatchAugmenter | None = None
    augmentation_generator: torch.Generator | None = None

    @property
    def metadata(self) -> Any:
        return self.train_data.metadata

    def use_phase(self, step: int) -> None:
        """Give the model the ``[[train.curriculum]]`` keys in force at optimizer step ``step``
        (``[model]`` as written after the last phase). A compiled step sees a changed
        config and compiles once for each phase."""
        curriculum = self.experiment.train.curriculum
        if not curriculum:
            return
        keys = next((phase.model for phase in curriculum if step < phase.until_step), {})
        config = attrs.evolve(self.experiment.model.config, **keys)
        if self.model.config != config:
            self.model.config = config

    @property
    def headline(self) -> list[str]:
        """``evaluator/metric`` names shown in the summary line at the end of a run."""
        return [
            f"{name}/{metric}"
            for name, evaluator in self.evaluators
            for metric in getattr(evaluator, "headline_metrics", ("accuracy", "exact_accuracy"))
        ]

    def augment(self, batch: Batch) -> Batch:
        """This rank's rows of a training batch with fresh augmentations drawn by the data
        set plugin's :class:`~rrcore.contracts.protocols.BatchAugmenter`; ``batch`` itself without one."""
        if self.batch_augmenter is None:
            return batch
        layout = self.layout
        return self.batch_augmenter(
            batch, self.augmentation_generator, layout.rank * layout.local_batch, layout.global_batch_size
        )

    def checkpoint_parts(self) -> dict[str, Stateful]:
        """The stateful parts a checkpoint holds once for all ranks (``state.pt``)."""
        parts: dict[str, Stateful] = {"model": self.model}
        if self.ema is not None:
            parts["ema"] = self.ema
        if self.optimizers is not None:
            parts["optimizers"] = self.optimizers
        return parts

    def restore(self, path: Path, saved: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> None:
        """Load :meth:`checkpoint_parts` from the checkpoint folder ``path`` (``saved``: its
        ``state.pt``, ``config``: its ``config.toml``, each when already read), after checking
        that they fit this run."""
        saved = load_file(path / "state.pt") if saved is None else saved
        config = saved_config(path) if config is None else config
        check_fits(path, saved, config, self.experiment, self.model, self.optimizers)
        load_parts(self.checkpoint_parts(), saved, path / "state.pt")

    def start_from(self, source: Path, where: str | None = None) -> None:
        """Load the evaluation weights of ``source`` (an export folder or a checkpoint, see
        :func:`rrcore.training.weights.load_weights`) into the model as this run's starting point: the
        EMA, when kept, restarts from them; optimizers keep their fresh state. ``where``
        prefixes a mismatch error (the ``init_from`` key, say)."""
        load_weights(self.model, source, where)
        if self.ema is not None:
            self.ema = EMA(self.model, self.experiment.train.ema_rate, self.experiment.train.ema_start_step)

    def evaluation_weights(self) -> contextlib.AbstractContextManager[None]:
        """Within the block the model holds the weights evaluation uses: the EMA's when the
        run keeps one (restored afterwards), else the trained ones."""
        return self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext()
