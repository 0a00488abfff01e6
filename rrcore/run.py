"""A run built once: :func:`build_run` turns an experiment into its parts.

The data, the model and its ACT wrapper, the loss head and its (compiled) step, the
optimizers, the EMA and the evaluators are built here, in that order, once. The
training loop (:mod:`rrcore.trainer`), ``rr eval``, ``rr bench``, ``rr solve`` and the
inspection commands each take what they need from the :class:`Run`: ``rr eval`` asks
for no optimizers, ``rr bench`` and ``rr solve`` for no evaluators.

Checkpoints save and restore the run's named stateful parts (:meth:`Run.checkpoint_parts`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch import nn

from rrcore import distributed
from rrcore.act import ACTModel, CompiledStep
from rrcore.checkpoint import CheckpointError, Stateful, load_file, load_parts
from rrcore.config import ConfigError, Experiment, dumps_toml, read_toml, tomllib
from rrcore.data import DataSourceError, PuzzleDataset, data_cache_dir
from rrcore.ema import EMA
from rrcore.files import is_disk_full
from rrcore.inference import eval_mode
from rrcore.nn import SignSGD, SparsePuzzleEmbedding
from rrcore.optim import MAIN_PART, PUZZLE_EMB_PART, LRSchedule, Optimizers, assign_parameters
from rrcore.protocols import Batch, BatchAugmenter, EvalContext, ModelContext
from rrcore.registry import Registry, Spec, get_registry
from rrcore.validators import INT64_MAX, show


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint...)."""


def build(spec: Spec, *args: Any) -> Any:
    """``spec.factory(*args)``; a failure becomes a :class:`TrainingError` naming the plugin
    and its distribution (the original exception stays chained for debugging)."""
    try:
        return spec.factory(*args)
    except (TrainingError, CheckpointError, ConfigError):  # a plugin's ConfigError: it refuses the input
        raise
    except DataSourceError as error:  # the input is wrong, not the plugin: exit 2, one line
        raise ConfigError(f"data plugin {spec.name!r}: {error}") from error
    except Exception as error:
        if is_disk_full(error):  # the disk, not the plugin: one line naming the file
            raise
        raise TrainingError(
            f"{spec.kind.replace('_', ' ')} plugin {spec.name!r} ({spec.distribution} "
            f"{spec.version}) failed: {type(error).__name__}: {error}"
        ) from error


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


def join(experiment: Experiment) -> distributed.DistInfo:
    """This process's rank and device (joining the ``torchrun`` group when started by it)."""
    if experiment.run.device == "cuda" and not torch.cuda.is_available():
        build_kind = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
        raise ConfigError(
            f'{experiment.source}: run.device = "cuda" but torch {torch.__version__} sees no '
            f'CUDA device ({build_kind}); use "auto" or "cpu"'
        )
    info = distributed.setup(experiment.run.device)
    if info.device.type == "cpu" and experiment.run.cpu_threads:
        torch.set_num_threads(experiment.run.cpu_threads)
    return info


def compile_enabled(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


@attrs.define
class Run:
    """Everything an experiment names, built: see :func:`build_run`.

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
        set plugin's :class:`~rrcore.protocols.BatchAugmenter`; ``batch`` itself without one."""
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

    def restore(self, path: Path, saved: dict[str, Any] | None = None) -> None:
        """Load :meth:`checkpoint_parts` from the checkpoint folder ``path`` (``saved``: its
        ``state.pt``, when already read), after checking that they fit this run."""
        saved = load_file(path / "state.pt") if saved is None else saved
        self.check_fits(path, saved)
        load_parts(self.checkpoint_parts(), saved, path / "state.pt")

    def start_from(self, source: Path, where: str | None = None) -> None:
        """Load the evaluation weights of ``source`` (an export folder or a checkpoint, see
        :func:`rrcore.export.load_weights`) into the model as this run's starting point: the
        EMA, when kept, restarts from them; optimizers keep their fresh state. ``where``
        prefixes a mismatch error (the ``init_from`` key, say)."""
        from rrcore.export import load_weights

        load_weights(self.model, source, where)
        if self.ema is not None:
            self.ema = EMA(self.model, self.experiment.train.ema_rate, self.experiment.train.ema_start_step)

    def check_fits(self, path: Path, saved: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` saying what differs when a checkpoint's model or
        optimizer is not this experiment's (loading would fail later, deep in torch)."""
        config = saved_config(path)
        mine = self.experiment.to_dict()
        advice = "resume with the experiment it was trained with, or start a new run (another --run-dir)"
        for section in ("model", "optimizer") if self.optimizers is not None else ("model",):
            was, now = config.get(section, {}).get("plugin"), mine[section]["plugin"]
            if was is not None and was != now:
                raise ConfigError(f"{path} was trained with {section} {was!r}, this experiment uses {now!r}; {advice}")
        saved_groups = config.get("optimizer", {}).get("groups", {}) if self.optimizers is not None else {}
        for name, group in mine["optimizer"].get("groups", {}).items():
            was = saved_groups.get(name, {}).get("plugin")
            if was is not None and was != group["plugin"]:
                raise ConfigError(
                    f"{path} was trained with optimizer.groups.{name}.plugin {was!r}, this experiment "
                    f"uses {group['plugin']!r}; {advice}"
                )
        model_state, expected = saved.get("model"), self.model.state_dict()
        if (
            model_state is not None
            and model_state.keys() != expected.keys()
            or any(model_state[k].shape != expected[k].shape for k in expected)
        ):
            changed = [
                f"model.{k} = {config['model'][k]!r} there, {v!r} here"
                for k, v in mine["model"].items()
                if k in config.get("model", {}) and config["model"][k] != v
            ]
            what = "; ".join(changed) or _state_difference(model_state, expected)
            raise ConfigError(f"{path} does not fit this model ({what}); {advice}")
        if self.optimizers is not None and saved.get("optimizers") is not None:
            groups_saved = self.optimizers.group_sizes(saved["optimizers"])
            groups_now = self.optimizers.group_sizes()
            if groups_saved != groups_now:

                def sizes(groups: dict[str, list[int]]) -> str:
                    return ", ".join(f"{name} {tensors}" for name, tensors in groups.items())

                raise ConfigError(
                    f"{path}: the optimizer state has parameter groups of {sizes(groups_saved)} tensors, "
                    f"this experiment {sizes(groups_now)}; {advice}"
                )

    def evaluation_weights(self) -> contextlib.AbstractContextManager[None]:
        """Within the block the model holds the weights evaluation uses: the EMA's when the
        run keeps one (restored afterwards), else the trained ones."""
        return self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext()

    def evaluate(self, output_dir: Path, *, predictions: bool = False, trace: bool = False) -> dict[str, float]:
        """Run every evaluator over the test split (EMA weights when enabled); each
        evaluator writes under ``output_dir / <its name>``.

        ``predictions`` (``rr eval``) also writes ``predictions.jsonl`` and ``steps.json``
        to ``output_dir`` (with each step's prediction when ``trace``); see
        :func:`rrcore.inference.evaluate_split`.
        """
        from rrcore.inference import EvalConfig, evaluate_split, task_for

        if self.eval_data is None:
            raise TrainingError(f"{self.data_dir}: no test split to evaluate")
        experiment = self.experiment
        with self.evaluation_weights():
            if experiment.eval == EvalConfig() and not (predictions or trace):
                return run_evaluation(
                    self.loss_head,
                    self.eval_data,
                    self.evaluators,
                    experiment.act.halt_max_steps,
                    self.layout.world_size,
                    step=self.step_fn,
                    output_dir=output_dir,
                )
            wants_task = predictions or experiment.eval.augmentations > 0
            task = task_for(self.registry, experiment.data, self.metadata) if wants_task else None
            return evaluate_split(
                self.loss_head,
                self.eval_data,
                self.evaluators,
                experiment.eval,
                halt_max_steps=experiment.act.halt_max_steps,
                q_continue=experiment.act.q_continue,
                step=self.step_fn,
                output_dir=output_dir,
                predictions=predictions,
                trace=trace,
                task=task,
                rank=self.layout.rank,
            )


def _state_difference(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """The first difference between two state dicts, in words."""
    for key in expected:
        if key not in saved:
            return f"{key} is missing from the checkpoint"
        if saved[key].shape != expected[key].shape:
            return f"{key} has shape {tuple(saved[key].shape)} there, {tuple(expected[key].shape)} here"
    return f"{next(k for k in saved if k not in expected)} is not part of this model"


def build_run(
    experiment: Experiment, registry: Registry | None = None, *, optimizers: bool = True, evaluators: bool = True
) -> Run:
    """Build the parts of ``experiment`` on this rank: data (rank 0 builds it first), model,
    ACT wrapper, loss head, compiled step, ``optimizers`` (unless False), EMA and
    ``evaluators`` (unless False; only with a test split). Seeds torch with ``run.seed``
    first, so the same experiment builds the same initial weights."""
    registry = registry or get_registry()
    info = join(experiment)
    train = experiment.train
    if train.global_batch_size % (info.world_size * train.grad_accum_steps):
        raise TrainingError(
            f"train.global_batch_size {train.global_batch_size} must divide into "
            f"{info.world_size} ranks x {train.grad_accum_steps} accumulation steps"
        )
    layout = BatchLayout(info.rank, info.world_size, train.global_batch_size, train.grad_accum_steps)
    torch.manual_seed(experiment.run.seed)
    data_dir = build_data(experiment, registry, info.rank)
    train_data, eval_data = _open_data(experiment, data_dir, layout, info.device)
    total_steps = _total_steps(experiment, train_data.steps_per_epoch)

    forward_dtype = torch.bfloat16 if info.device.type == "cuda" else torch.float32
    model = _build_model(
        experiment, registry, ModelContext(train_data.metadata, layout.micro_batch, forward_dtype), info
    )
    act_model, loss_head = _build_act(experiment, registry, model, info.device)
    step_fn = _compiled_step(experiment, loss_head, info.device)
    run_optimizers = _build_optimizers(experiment, registry, loss_head, model, total_steps) if optimizers else None
    _prepare_curriculum(experiment, model)
    ema = EMA(model, train.ema_rate, train.ema_start_step) if train.ema else None
    run = Run(
        experiment,
        registry,
        info.device,
        layout,
        data_dir,
        train_data,
        eval_data,
        total_steps,
        model,
        act_model,
        loss_head,
        step_fn,
        ema,
        run_optimizers,
        [],
        forward_dtype,
    )
    run.batch_augmenter, run.augmentation_generator = _build_batch_augmenter(run)
    if evaluators and eval_data is not None:
        run.evaluators = _build_evaluators(run)
    return run


def _compiled_step(experiment: Experiment, loss_head: nn.Module, device: torch.device) -> CompiledStep:
    """The ACT step as ``train.compile`` and ``train.cuda_graphs`` ask, on ``device``."""
    train = experiment.train
    compiled = compile_enabled(train.compile, device)
    if compiled:
        use_compile_cache(data_cache_dir(experiment.run.cache_dir))
        autotune_pointwise(train.autotune_pointwise)
    # CUDA graphs replay one recorded step; gradient accumulation would need the
    # gradients of several replays alive at once, so it keeps plain compilation.
    cuda_graphs = compiled and device.type == "cuda" and train.cuda_graphs and train.grad_accum_steps == 1
    return CompiledStep(loss_head, compile=compiled, cuda_graphs=cuda_graphs)


def _prepare_curriculum(experiment: Experiment, model: nn.Module) -> None:
    """Check that ``[[train.curriculum]]`` can change the model's keys, and let torch compile
    every phase: each compiles the training and the evaluation step once more, and past
    torch's limit of compilations per function it would fall back to eager steps silently."""
    curriculum = experiment.train.curriculum
    if not curriculum:
        return
    if not attrs.has(type(getattr(model, "config", None))):
        raise ConfigError(
            f"{experiment.source}: train.curriculum: model {experiment.model.plugin!r} keeps no attrs "
            "config in model.config for the curriculum to change"
        )
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 8 + 2 * len(curriculum))


def use_compile_cache(cache_dir: Path) -> None:
    """Keep ``torch.compile``'s caches (inductor's compiled graphs, AOTAutograd's, Triton's
    kernels) in ``cache_dir/compile`` beside the data sets, unless
    ``TORCHINDUCTOR_CACHE_DIR`` names a folder. Torch's default is the temporary folder,
    which clusters often empty after every job; kept, a later run of the same shapes skips
    most compilation (HRM at batch 32 on 2 CPU cores: first step 58.5 s cold, 18.1 s
    from the cache)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir / "compile"))


def autotune_pointwise(on: bool) -> None:
    """``train.autotune_pointwise``: whether inductor compiles several launch configurations
    of each element-wise Triton kernel and times them at its first call, or takes its
    heuristic one (rr's default). On one H200, with an empty compile cache, skipping it took
    HRM's first step 40.8 -> 33.1 s and TRM-MLP's 39.3 -> 34.6 s, their steps unchanged
    (39.4 -> 39.0 ms, 127.4 -> 128.2 ms: within run-to-run spread). Reductions, whose
    launch configuration matters more, are timed either way."""
    import torch._inductor.config as inductor_config

    inductor_config.triton.autotune_pointwise = on


def build_data(experiment: Experiment, registry: Registry, rank: int = 0) -> Path:
    """The experiment's data set folder, built (rank 0 first) or found in the cache."""
    section = experiment.data
    spec = registry.get("dataset", section.plugin)
    cache_dir = data_cache_dir(experiment.run.cache_dir)
    # Rank 0 builds; the others wait and then find the build in the cache.
    path = build(spec, section.config, cache_dir) if rank == 0 else None
    distributed.barrier()
    if rank != 0:
        path = build(spec, section.config, cache_dir)
    path = Path(path)
    if not (path / "train" / "dataset.json").exists():
        raise TrainingError(f"data plugin {section.plugin!r} returned {path}, which has no train/dataset.json")
    return path


def _total_steps(experiment: Experiment, steps_per_epoch: float) -> int:
    """The run's optimizer steps: ``train.epochs`` of ``steps_per_epoch``, at most
    ``train.max_steps``. A key counted in epochs (``epochs`` unless ``max_steps`` caps the
    run, ``eval_interval``, ``checkpoint_interval``) that comes to more steps than an int64
    holds is a :class:`ConfigError` naming it: checked before training, so no work is lost."""
    train = experiment.train
    keys = ([] if train.max_steps else ["epochs"]) + ["eval_interval", "checkpoint_interval"]
    for key in keys:
        epochs = getattr(train, key)
        if epochs * steps_per_epoch > INT64_MAX:
            raise ConfigError(
                f"{experiment.source}: train.{key} = {show(epochs)}: at {steps_per_epoch:g} steps per epoch "
                f"that is more than 2**63 - 1 steps; use at most {INT64_MAX / steps_per_epoch:g}"
            )
    steps = train.epochs * steps_per_epoch
    return max(1, int(min(steps, train.max_steps) if train.max_steps else steps))


def saved_config(checkpoint: Path) -> dict[str, Any]:
    """The experiment a checkpoint folder was saved with (its ``config.toml``), as plain
    data; empty when it has none (checkpoints of early versions)."""
    file = checkpoint / "config.toml"
    if not file.exists():
        return {}
    try:
        return read_toml(file, "saved experiment")
    except ConfigError as error:
        raise CheckpointError(f"{error}; the checkpoint is damaged") from None


def check_same_data(checkpoint: Path, experiment: Experiment, saved: dict[str, Any]) -> None:
    """Refuse (:class:`ConfigError`, naming each changed key with both values) to resume
    ``checkpoint`` on other data than it was trained on: ``experiment``'s ``[data]`` must
    match the checkpoint's (``saved``, its :func:`saved_config`), key by key (a key only one
    of them has, as after an upgrade of the data plugin, is not compared)."""
    was = saved.get("data", {})
    now = tomllib.loads(dumps_toml({"data": experiment.to_dict()["data"]}))["data"]  # as the file writes it
    keys = ["plugin"] if was.get("plugin", now["plugin"]) != now["plugin"] else [k for k in now if k in was]
    changed = [f"data.{key} = {show(was[key])} there, {show(now[key])} here" for key in keys if was[key] != now[key]]
    if changed:
        raise ConfigError(
            f"{checkpoint} was trained on other data ({'; '.join(changed)}); resume with the [data] it "
            f"was trained with, or start a new run from its weights with train.init_from = {str(checkpoint)!r}"
        )


def _open_data(
    experiment: Experiment, data_dir: Path, layout: BatchLayout, device: torch.device
) -> tuple[PuzzleDataset, PuzzleDataset | None]:
    train = experiment.train
    train_data = PuzzleDataset(
        data_dir / "train",
        global_batch_size=train.global_batch_size,
        rank=layout.rank,
        world_size=layout.world_size,
        seed=experiment.run.seed,
        device=device,
        on_device={"auto": "auto", "on": True, "off": False}[train.data_on_device],
    )
    if train.global_batch_size > train_data.examples_per_epoch:
        # Each batch would repeat the whole data set, several times over.
        raise ConfigError(
            f"{experiment.source}: train.global_batch_size = {train.global_batch_size} is "
            f"larger than the training set ({train_data.examples_per_epoch} examples "
            f"per epoch in {data_dir / 'train'}); use at most that many"
        )
    if not (data_dir / "test" / "dataset.json").exists():
        return train_data, None
    eval_data = PuzzleDataset(
        data_dir / "test",
        global_batch_size=layout.world_size,  # batched below, once the split's size is known
        rank=layout.rank,
        world_size=layout.world_size,
        seed=experiment.run.seed,
        device=device,
        on_device=train_data.on_device,
    )
    return train_data, eval_data.rebatched(_eval_batch_size(experiment, eval_data.num_examples, layout))


def _eval_batch_size(experiment: Experiment, examples: int, layout: BatchLayout) -> int:
    """The evaluation's global batch: ``train.eval_global_batch_size`` (0: the training
    batch), but one set above the padded test set (its examples rounded up to a multiple of
    the ranks) is that: every example is then in one batch, and more rows would be padding
    only, memory and time spent on nothing. A user would mean just that, and evaluation
    results do not change (each row is evaluated alone), so the value is lowered, with a note."""
    train = experiment.train
    whole = max(1, -(-examples // layout.world_size)) * layout.world_size
    if train.eval_global_batch_size > whole:
        if layout.rank == 0:
            print(
                f"rr: note: train.eval_global_batch_size = {train.eval_global_batch_size} is more than the "
                f"{examples} test examples; evaluating in one batch of {whole}",
                file=sys.stderr,
            )
        return whole
    batch = train.eval_global_batch_size or train.global_batch_size
    if batch % layout.world_size:
        raise ConfigError(
            f"{experiment.source}: train.eval_global_batch_size = {batch} does not divide into "
            f"{layout.world_size} ranks; use a multiple of {layout.world_size}"
        )
    return batch


def _build_batch_augmenter(run: Run) -> tuple[BatchAugmenter | None, torch.Generator | None]:
    """The data set plugin's batch augmenter for this run (None when it offers none or its
    ``[data]`` keys ask for none) and the generator it draws from, on the device and seeded
    from ``run.seed`` alike on every rank (apart from ACT exploration's)."""
    experiment = run.experiment
    spec = run.registry.get("dataset", experiment.data.plugin)
    if spec.batch_augmenter is None:
        return None, None
    # Through build(), so that a failure names the plugin and its distribution.
    augmenter = build(attrs.evolve(spec, factory=spec.batch_augmenter), experiment.data.config, run.metadata)
    if augmenter is None:
        return None, None
    generator = torch.Generator(device=run.device)
    generator.manual_seed(experiment.run.seed + 2)
    return augmenter, generator


def _build_act(
    experiment: Experiment, registry: Registry, model: nn.Module, device: torch.device
) -> tuple[ACTModel, nn.Module]:
    """The ACT wrapper (its exploration generator seeded from ``run.seed``) and the loss head around it."""
    generator = torch.Generator(device=device)
    generator.manual_seed(experiment.run.seed + 1)
    act_model = ACTModel(
        model, experiment.act, generator=generator, global_batch_size=experiment.train.global_batch_size
    )
    spec = registry.get("loss_head", experiment.loss.plugin)
    loss_head = build(spec, experiment.loss.config, act_model).to(device)
    if not isinstance(getattr(loss_head, "metric_reductions", None), dict):
        raise TrainingError(
            f"loss head plugin {spec.name!r} ({spec.distribution} {spec.version}) declares no "
            f"metric_reductions (see rrcore.protocols.LossHead)"
        )
    return act_model, loss_head


def _build_model(
    experiment: Experiment, registry: Registry, context: ModelContext, info: distributed.DistInfo
) -> nn.Module:
    spec = registry.get("model", experiment.model.plugin)
    model = build(spec, experiment.model.config, context).to(info.device)
    # Identical initial weights on every rank, whatever the plugin's init does.
    if info.world_size > 1:
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)
    return model


def _build_optimizers(
    experiment: Experiment, registry: Registry, loss_head: nn.Module, model: nn.Module, total_steps: int
) -> Optimizers:
    """The ``[optimizer]`` plugin over the trainable parameters no ``[optimizer.groups]``
    table claims, each group's plugin over its own, and sign-SGD over the model's sparse
    puzzle embeddings (tables of buffers no other optimizer could train)."""
    train, section = experiment.train, experiment.optimizer
    named = [(name, p) for name, p in loss_head.named_parameters() if p.requires_grad]
    try:
        assigned = assign_parameters(model, named, {name: group.keys.params for name, group in section.groups.items()})
    except ValueError as error:
        raise ConfigError(f"{experiment.source}: {error}") from None
    # Each part's plugin section, the key its errors name, and its lr, weight decay and betas.
    settings = {MAIN_PART: (section, "optimizer.plugin", train.lr, train.weight_decay, train.betas)}
    for name, group in section.groups.items():
        keys = group.keys
        settings[name] = (group, f"optimizer.groups.{name}.params", keys.lr, keys.weight_decay, keys.betas)
    parts = {}
    for name, part in assigned.items():
        plugin, key, lr, weight_decay, betas = settings[name]
        # param_names (torch's convention) lets optimizers such as Muon route by name.
        group = {
            "params": [p for _, p in part],
            "param_names": [n for n, _ in part],
            "lr": lr,
            "weight_decay": weight_decay,
            "betas": tuple(betas),
        }
        try:
            parts[name] = (build(registry.get("optimizer", plugin.plugin), [group], plugin.config), lr)
        except ConfigError as error:
            raise ConfigError(f"{experiment.source}: {key}: {error}") from None
    embeddings = [m for m in model.modules() if isinstance(m, SparsePuzzleEmbedding)]
    if embeddings:
        puzzle_emb = section.puzzle_emb
        parts[PUZZLE_EMB_PART] = (
            SignSGD(embeddings, lr=puzzle_emb.lr, weight_decay=puzzle_emb.weight_decay),
            puzzle_emb.lr,
        )
    schedule = LRSchedule(train.lr_warmup_steps, total_steps, train.lr_min_ratio)
    return Optimizers(parts, [p for _, p in named], schedule, train.grad_clip)


def _build_evaluators(run: Run) -> list[tuple[str, Any]]:
    evaluators = []
    for section in run.experiment.evaluators:
        spec = run.registry.get("evaluator", section.plugin)
        context = EvalContext(run.metadata, run.data_dir / "test", run.layout.rank, run.layout.world_size, run.device)
        evaluators.append((section.plugin, build(spec, section.config, context)))
    return evaluators


@torch.no_grad()
def run_evaluation(
    loss_head: torch.nn.Module,
    data: PuzzleDataset,
    evaluators: list[tuple[str, Any]],
    halt_max_steps: int,
    world_size: int = 1,
    step: Any = None,
    output_dir: Path | None = None,
) -> dict[str, float]:
    """Every evaluation batch through ``halt_max_steps`` ACT steps, then the evaluators
    (each told to write under ``output_dir / <its name>``).

    ``step``: how to run one ACT step (the run's compiled :class:`CompiledStep`);
    the loss head itself by default.
    """
    step = step or loss_head
    for name, evaluator in evaluators:
        evaluator.begin_eval(output_dir / name)
    with eval_mode(loss_head):
        for batch in data.eval_batches():
            carry = loss_head.initial_carry(batch)
            for _ in range(halt_max_steps):
                carry, _, _, outputs, _ = step(carry, batch)
            for _, evaluator in evaluators:
                evaluator.update_batch(batch, outputs)
        results: dict[str, float] = {}
        for name, evaluator in evaluators:
            values = evaluator.result()
            if values:
                results.update({f"{name}/{k}": float(v) for k, v in values.items()})
        return results
