"""The typed sections of an experiment file, validated once when it is loaded
(:mod:`rrcore.contracts.config` reads the file into them).

Core sections (``[run]``, ``[act]``, ``[train]``, ``[eval]``) are attrs classes here; a plugin
section (``[data]``, ``[model]``, ``[loss]``, ``[optimizer]``, ``[[evaluators]]``,
``[[loggers]]``) is a :class:`PluginSection`: the ``plugin`` it names and that component's
own config. :class:`Experiment` holds them all.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from rrcore.base.validators import (
    RATE_MAX,
    STEP_COUNT_MAX,
    Each,
    OutOfRange,
    at_least,
    folder_name,
    fraction,
    in_range,
    non_negative,
    positive,
)


@attrs.define
class RunConfig:
    """``[run]``: naming, seeding and placement of a run.

    ``name``: the run folder's name in ``out_dir``, one folder name (:func:`~rrcore.base.validators.folder_name`).
    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    ``cache_dir``: where data sets are built and compiled code is cached, in ``compile/``
    (empty: ``$RR_CACHE_DIR`` or ``~/.cache/rr``; ``$TORCHINDUCTOR_CACHE_DIR`` overrides
    the compile cache's place).
    ``cpu_threads``: torch threads per process on CPU (0: torch's default). Tiny models
    run fastest on 1: several threads on a few busy cores spend their time waiting. At
    most 1024, beyond any machine's cores (tens of thousands cannot even be started).
    """

    name: str = attrs.field(default="rr-run", validator=folder_name)
    seed: int = attrs.field(default=0, validator=non_negative)
    out_dir: str = "runs"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: str = ""
    cpu_threads: int = attrs.field(default=0, validator=in_range(0, 1024))


@attrs.define
class CurriculumPhase:
    """One entry of ``[[train.curriculum]]``: until optimizer step ``until_step`` (and from
    the previous entry's), train with these ``[model]`` keys replaced (integers, e.g.
    ``{ H_cycles = 2, L_cycles = 1 }``). From the last ``until_step`` on, ``[model]`` holds
    as written: the model that evaluation after training, ``rr eval`` and ``rr export`` use."""

    until_step: int = attrs.field(validator=at_least(1))
    model: dict[str, int] = attrs.field(factory=dict)


@attrs.define
class TrainConfig:
    """``[train]``: optimisation, schedule, evaluation and checkpoint cadence.

    Intervals in epochs may be fractions; an epoch is every puzzle group once
    (``total_groups * mean_puzzle_examples / global_batch_size`` steps). ``lr``,
    ``weight_decay`` and ``betas`` are the ``[optimizer]`` plugin's; the puzzle
    embedding's sign-SGD has its own in ``[optimizer.puzzle_emb]``.
    ``init_from``: an export folder (``rr export``) or a checkpoint whose evaluation
    weights a new run starts from (fine-tuning: fresh optimizer state, step 0; checked
    when the run starts, by :func:`rrcore.training.weights.check_init_from`; a resumed run ignores it).
    ``ema_start_step``: the EMA copies the weights until this step and averages from it on
    (0: from the start). ``curriculum``: model keys for early steps (:class:`CurriculumPhase`;
    a depth curriculum sets ``H_cycles``/``L_cycles``), in increasing ``until_step`` order;
    an evaluation during training uses the phase in force, and each phase compiles once. ``time_budget_minutes``: stop
    (finished, with the final evaluation and checkpoint) once training has run this long,
    compilation counted, evaluation not (0: no budget). ``eval_at_minutes``: also evaluate
    when the training clock passes each of these minutes (the time-to-accuracy curve). Under
    ``torchrun`` rank 0's clock decides both, at ``log_interval`` steps, so all ranks agree.
    """

    global_batch_size: int = attrs.field(default=768, validator=at_least(1))
    epochs: float = attrs.field(default=1.0, validator=positive)
    max_steps: int = attrs.field(default=0, validator=non_negative)  # 0 = no cap
    grad_accum_steps: int = attrs.field(default=1, validator=at_least(1))
    lr: float = attrs.field(default=1e-4, validator=in_range(0, RATE_MAX, low_open=True))
    lr_min_ratio: float = attrs.field(default=1.0, validator=fraction)
    lr_warmup_steps: int = attrs.field(default=0, validator=non_negative)
    weight_decay: float = attrs.field(default=0.1, validator=in_range(0, RATE_MAX))
    betas: list[float] = attrs.field(factory=lambda: [0.9, 0.95], validator=Each(in_range(0, 1, high_open=True)))
    grad_clip: float = attrs.field(default=0.0, validator=non_negative)  # 0 = off
    ema: bool = False
    ema_rate: float = attrs.field(default=0.999, validator=in_range(0, 1, high_open=True))
    eval_interval: float = attrs.field(default=0.0, validator=non_negative)  # epochs; 0 = at the end
    eval_global_batch_size: int = attrs.field(default=0, validator=non_negative)  # 0 = global
    checkpoint_interval: float = attrs.field(default=0.0, validator=non_negative)  # 0 = with evals
    checkpoint_every_steps: int = attrs.field(default=0, validator=non_negative)  # 0 = off
    keep_checkpoints: int = attrs.field(default=3, validator=at_least(1))
    log_interval: int = attrs.field(default=10, validator=at_least(1))  # steps
    compile: Literal["auto", "on", "off"] = "auto"
    cuda_graphs: bool = True  # with compile on CUDA: replay the step as CUDA graphs
    autotune_pointwise: bool = False  # with compile on CUDA: time launch configs of element-wise kernels
    data_on_device: Literal["auto", "on", "off"] = "auto"
    init_from: str = ""  # empty: the model's own initialisation
    ema_start_step: int = attrs.field(default=0, validator=non_negative)
    curriculum: list[CurriculumPhase] = attrs.field(factory=list)
    time_budget_minutes: float = attrs.field(default=0.0, validator=non_negative)  # 0 = none
    eval_at_minutes: list[float] = attrs.field(factory=list, validator=Each(positive))

    def __attrs_post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        steps = [phase.until_step for phase in self.curriculum]
        if steps != sorted(set(steps)):
            raise ValueError(f"curriculum until_step values must increase, got {steps}")
        if self.eval_at_minutes != sorted(set(self.eval_at_minutes)):
            raise ValueError(f"eval_at_minutes must increase, got {self.eval_at_minutes}")
        if self.global_batch_size % self.grad_accum_steps:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not divisible by "
                f"grad_accum_steps {self.grad_accum_steps}"
            )


@attrs.define
class ACTConfig:
    """The ``[act]`` section of an experiment.

    ``halt_max_steps``: ACT steps before a row is forced to halt (evaluation always
    runs this many). ``halt_exploration_prob``: probability that a row gets a random
    minimum number of steps (2..halt_max_steps) before it may halt.
    ``q_continue``: also predict Q-continue, halt when q_halt > q_continue, and
    train it towards the bootstrapped target (HRM; one extra forward pass per step).
    Without it a row halts when q_halt > 0 (TRM, URM). In an experiment file it
    follows the model's ``predicts_q_continue`` when left out, and a value that
    contradicts the model is refused (:func:`rrcore.contracts.config.resolve`).
    """

    halt_max_steps: int = attrs.field(default=16, validator=in_range(1, STEP_COUNT_MAX))
    halt_exploration_prob: float = attrs.field(default=0.1, validator=fraction)
    q_continue: bool = False


@attrs.define
class EvalConfig:
    """The ``[eval]`` section: how evaluation runs the ACT loop.

    ``halting``: ``fixed`` runs every puzzle for the step cap (the papers' protocol);
    ``adaptive`` stops each puzzle when its Q-head says halt (q_halt > 0, or
    q_halt > q_continue when the experiment learns Q-continue) or at the cap, and
    its batch slot takes the next puzzle. ``max_steps``: the step cap (0:
    ``act.halt_max_steps``); above the training cap models think longer than they
    were trained to (inference-time scaling). ``sync_every``: ACT steps between
    the host's looks at how many puzzles are done. ``augmentations``: test-time
    selection over this many augmented copies of each puzzle (0: off; needs the
    task's ``augment``), with ``seed`` for drawing them.

    ``trajectories`` K: test-time selection over K runs of each puzzle (of each
    augmented copy, with ``augmentations``: K x A copies) that differ by Gaussian noise
    of std ``trajectory_noise`` on the model's latent (PTRM); 1: off. Trajectory 0 runs
    without noise, so its answer is exactly the plain evaluation's (accuracy@1) and
    K = 1 is the evaluation without trajectories. ``trajectory_noise_at``: ``start``
    adds the noise once, to the initial latent of each puzzle's run; ``every_step`` to
    the latent carried into every ACT step (the first included).
    ``trajectory_noise_states``: the model's carry states that get noise (TRM and
    HRM: ``z_H``, ``z_L``; empty: every floating-point state). The noise is drawn on
    the device from a generator seeded with ``seed``, so a rerun repeats it.
    :func:`rrcore.evaluation.split.select_over_copies` reports each selection rule beside accuracy@1.

    Training and ``rr eval`` both evaluate through :func:`rrcore.evaluation.split.evaluate_split`;
    left at the defaults, that is the papers' protocol (every puzzle runs ``halt_max_steps``).
    """

    halting: Literal["fixed", "adaptive"] = "fixed"
    max_steps: int = attrs.field(default=0, validator=in_range(0, STEP_COUNT_MAX))
    sync_every: int = attrs.field(default=8, validator=at_least(1))
    augmentations: int = attrs.field(default=0, validator=non_negative)
    seed: int = attrs.field(default=0, validator=non_negative)
    trajectories: int = attrs.field(default=1, validator=at_least(1))
    trajectory_noise: float = attrs.field(default=0.0, validator=non_negative)
    trajectory_noise_at: Literal["start", "every_step"] = "start"
    trajectory_noise_states: list[str] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.trajectories > 1 and not self.trajectory_noise:
            raise ValueError(
                f"trajectories = {self.trajectories} needs trajectory_noise > 0: without noise "
                f"every trajectory is the same run"
            )

    @property
    def selects(self) -> bool:
        """Whether evaluation also runs test-time selection (augmentations or trajectories)."""
        return self.augmentations > 0 or self.trajectories > 1

    @property
    def copies(self) -> int:
        """Runs of each puzzle in test-time selection: augmented copies x trajectories."""
        return max(self.augmentations, 1) * self.trajectories

    def step_cap(self, halt_max_steps: int) -> int:
        """The evaluation step cap given the training cap."""
        return self.max_steps or halt_max_steps


@attrs.define
class PuzzleEmbOptimizerConfig:
    """``[optimizer.puzzle_emb]``: sign-SGD for the sparse puzzle-embedding tables
    (:class:`rrcore.model.puzzle_io.SparsePuzzleEmbedding`), which the main optimizer never sees.

    ``lr`` follows the same warmup and decay as ``train.lr``; ``weight_decay`` is
    decoupled and applies only to the rows in the batch.
    """

    lr: float = attrs.field(default=1e-2, validator=in_range(0, RATE_MAX))
    weight_decay: float = attrs.field(default=0.1, validator=in_range(0, RATE_MAX))


MAIN_PART = "model"
"""The name of the ``[optimizer]`` plugin's part of :class:`rrcore.training.optim.Optimizers` (and of its checkpoint state)."""
PUZZLE_EMB_PART = "puzzle_emb"
"""The name of the sparse puzzle embedding's sign-SGD part."""
HIDDEN_MATRICES = "hidden_matrices"
"""The ``params`` entry that names the model's hidden weight matrices (:func:`rrcore.training.optim.hidden_matrices`)."""


def _parameter_selection(instance: Any, attribute: attrs.Attribute, value: list[str]) -> None:
    if not value or not all(value):
        raise OutOfRange(attribute.name, value, f'"{HIDDEN_MATRICES}" or glob patterns of parameter names')


def _two_betas(instance: Any, attribute: attrs.Attribute, value: list[float] | None) -> None:
    if value is not None:
        if len(value) != 2:
            raise OutOfRange(attribute.name, value, "two numbers")
        Each(in_range(0, 1, high_open=True))(instance, attribute, value)


@attrs.define
class OptimizerGroupConfig:
    """The core keys of ``[optimizer.groups.NAME]``: a part of the model trained by an
    optimizer of its own, stepped with the others and saved under ``NAME`` in checkpoints.

    ``plugin`` (handled by :func:`rrcore.contracts.config.resolve`): the group's optimizer (default:
    ``[optimizer]``'s, with its keys, which the group's override); every key of the table
    not listed here is that plugin's. ``params``: the trainable parameters the group takes,
    a list whose entries are ``"hidden_matrices"`` (:func:`rrcore.training.optim.hidden_matrices`) or glob
    patterns over the model's parameter names as in its state dict
    (``"net.blocks.*.mlp.*.weight"``; ``*`` also crosses dots); one string is a list of one.
    ``lr``: the group's base learning rate, which follows ``[train]``'s warmup and decay.
    ``weight_decay``, ``betas``: as ``[train]``'s when left out (filled in when the
    experiment is resolved, so ``rr validate`` prints them).

    A parameter belongs to at most one group; what no group claims stays with
    ``[optimizer]``. ``train.grad_clip`` clips the gradients of all parameters together.
    """

    params: list[str] = attrs.field(validator=_parameter_selection)
    lr: float = attrs.field(validator=in_range(0, RATE_MAX, low_open=True))
    weight_decay: float | None = attrs.field(default=None, validator=attrs.validators.optional(in_range(0, RATE_MAX)))
    betas: list[float] | None = attrs.field(default=None, validator=_two_betas)


@attrs.define
class PluginSection:
    """A plugin section after resolution: the component's name and its typed config."""

    plugin: str
    config: Any = None


@attrs.define
class OptimizerGroup(PluginSection):
    """One ``[optimizer.groups.NAME]``, resolved: its optimizer ``plugin`` and that plugin's
    ``config``, as any plugin section, and the group's own ``keys``
    (:class:`OptimizerGroupConfig`: ``params``, ``lr``, and ``weight_decay``
    and ``betas`` filled in from ``[train]`` when left out)."""

    keys: OptimizerGroupConfig = attrs.field(kw_only=True)


@attrs.define
class OptimizerSection(PluginSection):
    """``[optimizer]``: the plugin that trains the model's parameters (``lr``,
    ``weight_decay`` and ``betas`` from ``[train]``); ``[optimizer.groups.NAME]`` tables,
    each a part of the parameters trained by an optimizer, learning rate and weight decay
    of its own (:class:`OptimizerGroupConfig`; ``[optimizer]`` keeps what no
    group claims); and ``[optimizer.puzzle_emb]``, the sign-SGD that trains sparse puzzle
    embeddings."""

    puzzle_emb: PuzzleEmbOptimizerConfig = attrs.field(factory=PuzzleEmbOptimizerConfig)
    groups: dict[str, OptimizerGroup] = attrs.field(factory=dict)


@attrs.define
class Experiment:
    """A whole experiment, resolved and validated."""

    run: RunConfig
    data: PluginSection
    model: PluginSection
    act: ACTConfig
    loss: PluginSection
    optimizer: OptimizerSection
    train: TrainConfig
    evaluators: list[PluginSection]
    loggers: list[PluginSection]
    eval: EvalConfig = attrs.field(factory=EvalConfig)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (TOML-able) for the resolved config."""

        def section(s: PluginSection) -> dict[str, Any]:
            values = attrs.asdict(s.config) if s.config is not None else {}
            return {"plugin": s.plugin, **values}

        def group_dict(g: OptimizerGroup) -> dict[str, Any]:
            options = attrs.asdict(g.config) if g.config is not None else {}
            return {"plugin": g.plugin, **attrs.asdict(g.keys), **options}

        groups = self.optimizer.groups
        return {
            "run": attrs.asdict(self.run),
            "data": section(self.data),
            "model": section(self.model),
            "act": attrs.asdict(self.act),
            "loss": section(self.loss),
            "optimizer": {
                **section(self.optimizer),
                "puzzle_emb": attrs.asdict(self.optimizer.puzzle_emb),
                # Left out when empty: the config.toml of runs without groups stays as it was.
                **({"groups": {name: group_dict(g) for name, g in groups.items()}} if groups else {}),
            },
            "train": attrs.asdict(self.train),
            "evaluators": [section(s) for s in self.evaluators],
            "loggers": [section(s) for s in self.loggers],
            "eval": attrs.asdict(self.eval),
        }
