"""Every hook rr calls, in one place.

A plugin is a module of plain functions marked ``@rrcore.hookimpl`` whose names
match the specifications below; its distribution names that module under the
``rr`` entry-point group::

    [project.entry-points.rr]
    sudoku = "rr_sudoku.plugin"

Registration hooks return lists of descriptors (see :mod:`rrcore.contracts.specs`); the
registry records which distribution each descriptor came from. Lifecycle hooks
are called on every rank unless stated otherwise and must not block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from rrcore import PROJECT_NAME

if TYPE_CHECKING:
    import click

    from rrcore.contracts.protocols import RunContext
    from rrcore.contracts.specs import (
        DatasetSpec,
        EvaluatorSpec,
        LoggerSpec,
        LossHeadSpec,
        ModelSpec,
        OptimizerSpec,
        TaskSpec,
    )

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def rr_register_models() -> list[ModelSpec]:
    """Return the architectures this plugin provides.

    Called once when the registry loads. Each :class:`~rrcore.contracts.specs.ModelSpec`
    names a factory ``factory(config, context: ModelContext) -> torch.nn.Module``
    that builds the inner recurrence (see :class:`rrcore.contracts.protocols.Model`) for the
    data set, ACT-step batch size and dtype in :class:`~rrcore.contracts.protocols.ModelContext`.
    A factory (usually the model class) may declare ``predicts_q_continue``, read before
    the model is built to check ``[act] q_continue``.
    Implemented by architecture plugins (rr-trm, rr-hrm, rr-urm).
    """


@hookspec
def rr_register_datasets() -> list[DatasetSpec]:
    """Return the data sources this plugin can build.

    Each :class:`~rrcore.contracts.specs.DatasetSpec` names the plugin's one factory,
    ``build_dataset(config, cache_dir: Path) -> Path``, and the attrs class of its
    ``[data]`` keys. The factory returns a folder holding ``train/`` and ``test/``
    splits in the core's on-disk format (:mod:`rrcore.data.format`), built with
    :func:`rrcore.data.cache.cached_build` (the folder ``cache_dir/<name>-<hash of the
    config>``, reused when it exists) and written with :class:`rrcore.data.writer.SplitWriter`;
    it shows progress with :func:`rrcore.base.progress.progress` and raises
    :class:`rrcore.contracts.errors.DataSourceError` for bad input (a missing file, an unusable
    value). ``rr run`` calls it on every rank before training: rank 0 first, the others
    once rank 0 is done, so each finds rank 0's build in the cache and returns the same
    folder. ``rr data build`` calls it for an experiment or for the plugin's name, its
    ``--set`` keys being the config class's fields. Builders must be deterministic. A spec
    may also name a ``batch_augmenter(config, metadata)``: ``rr run`` calls it once on each
    rank after the build and
    applies the :class:`~rrcore.contracts.protocols.BatchAugmenter` it returns (None: none) to
    every training batch on the device, fresh augmentations each step (rr-sudoku's
    ``online_augment``). Implemented by task plugins (rr-sudoku, rr-arc, ...); the core
    registers ``built`` for folders made elsewhere.
    """


@hookspec
def rr_register_loss_heads() -> list[LossHeadSpec]:
    """Return loss heads: ``factory(config, model: ACTModel) -> LossHead``.

    The core registers ``act`` (LM loss + Q-halt/Q-continue BCE). A plugin adds
    one only for a different training objective.
    """


@hookspec
def rr_register_evaluators() -> list[EvaluatorSpec]:
    """Return evaluators: ``factory(config, context: EvalContext) -> Evaluator``.

    See :class:`rrcore.contracts.protocols.Evaluator` for the calls an evaluator receives.
    Implemented by task plugins (``sudoku``, ``arc``, ``maze``...); the core
    registers ``exact`` (token and exact-sequence accuracy for any task).
    """


@hookspec
def rr_register_optimizers() -> list[OptimizerSpec]:
    """Return optimizers: ``factory(param_groups, config) -> torch.optim.Optimizer``.

    ``param_groups`` is a list of dicts with ``params``, ``param_names``, ``lr``,
    ``weight_decay`` and ``betas`` already set from the experiment's ``[train]`` section
    (for an ``[optimizer.groups.NAME]`` table, from the group's keys, over the parameters it
    claims); the optimizer config holds only the optimizer's own extra keys. A factory that
    cannot train the parameters it is given (Muon: matrices only) raises
    :class:`rrcore.contracts.errors.ConfigError` saying which; the core adds the file and key. Sparse
    puzzle embeddings are not among the parameters: the core trains them with sign-SGD
    (``[optimizer.puzzle_emb]``). The core registers ``adam_atan2`` (default), ``adamw`` and
    ``muon_matrices``.
    """


@hookspec
def rr_register_loggers() -> list[LoggerSpec]:
    """Return metric loggers: ``factory(config, context: RunContext) -> Logger``.

    Loggers run on rank 0 only; ``log(step, metrics)`` gets the training metrics every
    ``train.log_interval`` steps and each evaluation's results; ``close()`` comes once at
    the end, however training ends. The core registers ``jsonl`` (always on), ``wandb``
    and ``tensorboard`` (optional packages: ``rrcore[wandb]``, ``rrcore[tensorboard]``).
    """


@hookspec
def rr_register_tasks() -> list[TaskSpec]:
    """Return how single puzzles of a data set are read, shown, checked and augmented.

    Each :class:`~rrcore.contracts.specs.TaskSpec` is named after a data set plugin and
    names a factory ``factory(data_config, metadata) -> PuzzleTask`` (see
    :class:`rrcore.contracts.protocols.PuzzleTask`). Used by ``rr solve`` (parse a puzzle the
    user typed, print and check the model's answer), by ``rr eval`` (readable
    ``predictions.jsonl``) and by test-time selection (augmentations and their
    inverses); its optional ``view`` draws the examples in ``rr report``. Implemented by
    task plugins (rr-sudoku, rr-maze, ...); a data set without one still evaluates, with
    predictions written as tokens.
    """


@hookspec
def rr_cli_commands(group: click.Group) -> None:
    """Add sub-commands to the ``rr`` command line, e.g. ``rr sudoku label``.

    Called once when ``rr`` starts, with the root click group; add commands or
    groups with ``group.add_command``. Keep imports inside the commands so that
    ``rr --help`` stays fast, and the commands in the plugin's ``cli.py``. A data
    set is built by the core's ``rr data build``, not by a plugin command.
    """


@hookspec
def rr_on_train_start(context: RunContext) -> None:
    """Called on every rank after the model, optimizers and data are set up,
    before the first step (also after a resume)."""


@hookspec
def rr_on_step_end(context: RunContext, step: int, metrics: dict[str, float] | None) -> None:
    """Called on every rank after each optimizer step; ``step`` (also
    ``context.step``) counts the steps taken.

    ``metrics`` holds the training metrics reduced over ranks on logging steps
    (``train.log_interval``, and the last step) and is ``None`` on the others, so
    implementations never force a host synchronisation.
    """


@hookspec
def rr_on_eval_end(context: RunContext, step: int, results: dict[str, Any]) -> None:
    """Called on every rank after an evaluation with the evaluators' results, keyed
    ``"<evaluator>/<metric>"``: complete on rank 0; other ranks may get none of them
    (an evaluator returns its metrics on rank 0 only)."""


@hookspec
def rr_on_train_end(context: RunContext, step: int) -> None:
    """Called on every rank when training stops: finished, interrupted or failed."""
