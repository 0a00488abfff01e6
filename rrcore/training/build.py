"""One builder: :func:`build_run` turns an experiment into a :class:`~rrcore.training.run.Run`.

The data, the model and its ACT wrapper, the loss head and its (compiled) step, the
optimizers, the EMA and the evaluators are built here, in that order, once, by the named
builders :func:`build_run` composes. Every command takes what it needs from them: ``rr eval``
asks for no optimizers, ``rr bench`` for no evaluators, ``rr solve`` and ``rr export`` for
the model alone (:func:`build_model`, :func:`build_act`), ``rr data build`` for the data set
(:func:`build_dataset`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch import nn

from rrcore.base import distributed
from rrcore.base.validators import INT64_MAX, show
from rrcore.contracts.errors import ConfigError, TrainingError
from rrcore.contracts.experiment import MAIN_PART, PUZZLE_EMB_PART, Experiment
from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import BatchAugmenter, EvalContext, ModelContext
from rrcore.contracts.registry import Registry, build, get_registry
from rrcore.contracts.specs import DatasetSpec
from rrcore.data.cache import data_cache_dir
from rrcore.data.format import RUN_METADATA_FILE
from rrcore.data.loader import PuzzleDataset
from rrcore.model.act import ACTModel
from rrcore.model.puzzle_io import SparsePuzzleEmbedding
from rrcore.training.compiling import compiled_step, prepare_curriculum
from rrcore.training.ema import EMA
from rrcore.training.optim import LRSchedule, Optimizers, assign_parameters
from rrcore.training.run import BatchLayout, Run
from rrcore.training.sign_sgd import SignSGD
from rrcore.training.weights import is_export, load_weights


def join(experiment: Experiment) -> distributed.DistInfo:
    """This process's rank and device (joining the ``torchrun`` group when started by it)."""
    if experiment.run.device == "cuda" and not torch.cuda.is_available():
        build_kind = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
        raise ConfigError(
            f'{experiment.source}: run.device = "cuda" but torch {torch.__version__} sees no '
            f'CUDA device ({build_kind}); use "auto" or "cpu"'
        )
    info = distributed.setup(experiment.run.device)
    _use_threads(experiment, info.device)
    return info


def pick_run_device(experiment: Experiment, device: torch.device | None = None) -> torch.device:
    """Where a model runs outside training (``rr solve``, ``rr export``): ``device``, else
    ``run.device``'s, with ``run.cpu_threads`` applied as in training."""
    device = device if device is not None else distributed.pick_device(experiment.run.device)
    _use_threads(experiment, device)
    return device


def _use_threads(experiment: Experiment, device: torch.device) -> None:
    if device.type == "cpu" and experiment.run.cpu_threads:
        torch.set_num_threads(experiment.run.cpu_threads)


def forward_dtype(device: torch.device) -> torch.dtype:
    """The dtype models compute in on ``device``: bfloat16 on CUDA, float32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


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

    model = build_model(experiment, registry, train_data.metadata, info.device, layout.micro_batch, info.world_size)
    act_model, loss_head = build_act(experiment, registry, model, info.device)
    step_fn = compiled_step(experiment, loss_head, info.device)
    run_optimizers = build_optimizers(experiment, registry, loss_head, model, total_steps) if optimizers else None
    prepare_curriculum(experiment, model)
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
        forward_dtype(info.device),
    )
    run.batch_augmenter, run.augmentation_generator = build_batch_augmenter(run)
    if evaluators and eval_data is not None:
        run.evaluators = build_evaluators(run)
    return run


def build_data(experiment: Experiment, registry: Registry, rank: int = 0) -> Path:
    """The experiment's data set folder, built (rank 0 first) or found in the cache."""
    section = experiment.data
    spec = registry.get("dataset", section.plugin)
    return build_dataset(spec, section.config, data_cache_dir(experiment.run.cache_dir), rank)


def build_metadata(run_dir: Path, experiment: Experiment, registry: Registry) -> tuple[DatasetMetadata, str]:
    """The run's :class:`~rrcore.contracts.metadata.DatasetMetadata` and where it came from: the
    run (or export) folder's copy, else (runs made before it was written) the data set, built
    or cached."""
    saved = Path(run_dir) / RUN_METADATA_FILE
    if saved.exists():
        return DatasetMetadata.from_json(saved), str(saved)
    data_dir = build_data(experiment, registry)
    return DatasetMetadata.from_json(data_dir / "train" / "dataset.json"), str(data_dir / "train")


def build_trained_model(
    source: Path, experiment: Experiment, registry: Registry, device: torch.device | None = None
) -> tuple[nn.Module, DatasetMetadata, str, torch.device]:
    """The model of a checkpoint or export folder ``source``, built as its run built it and
    holding its evaluation weights; with the metadata, where that came from
    (:func:`build_metadata`) and the device (:func:`pick_run_device`)."""
    folder = source if is_export(source) else source.parent.parent
    metadata, metadata_source = build_metadata(folder, experiment, registry)
    device = pick_run_device(experiment, device)
    model = build_model(experiment, registry, metadata, device)
    load_weights(model, source)
    return model, metadata, metadata_source, device


def build_dataset(spec: DatasetSpec, config: Any, cache_dir: Path, rank: int = 0) -> Path:
    """The folder data plugin ``spec`` builds from ``config`` in ``cache_dir``; rank 0 builds,
    the others wait and then find the build in the cache."""
    path = build(spec, config, cache_dir) if rank == 0 else None
    distributed.barrier()
    if rank != 0:
        path = build(spec, config, cache_dir)
    path = Path(path)
    if not (path / "train" / "dataset.json").exists():
        raise TrainingError(f"data plugin {spec.name!r} returned {path}, which has no train/dataset.json")
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


def build_batch_augmenter(run: Run) -> tuple[BatchAugmenter | None, torch.Generator | None]:
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


def build_act(
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
            f"metric_reductions (see rrcore.contracts.protocols.LossHead)"
        )
    return act_model, loss_head


def build_model(
    experiment: Experiment,
    registry: Registry,
    metadata: DatasetMetadata,
    device: torch.device,
    micro_batch: int = 1,
    world_size: int = 1,
) -> nn.Module:
    """The ``[model]`` plugin's model on ``device``, for micro-batches of ``micro_batch`` rows
    (which size only the sparse puzzle embedding's training buffers)."""
    spec = registry.get("model", experiment.model.plugin)
    context = ModelContext(metadata, micro_batch, forward_dtype(device))
    model = build(spec, experiment.model.config, context).to(device)
    # Identical initial weights on every rank, whatever the plugin's init does.
    if world_size > 1:
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)
    return model


def build_optimizers(
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


def build_evaluators(run: Run) -> list[tuple[str, Any]]:
    """The ``[[evaluators]]``, each told this rank's part of the test split."""
    evaluators = []
    for section in run.experiment.evaluators:
        spec = run.registry.get("evaluator", section.plugin)
        context = EvalContext(run.metadata, run.data_dir / "test", run.layout.rank, run.layout.world_size, run.device)
        evaluators.append((section.plugin, build(spec, section.config, context)))
    return evaluators
