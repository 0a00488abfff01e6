"""How a run's ACT step is compiled: ``train.compile`` and ``train.cuda_graphs``, torch's
compile caches kept beside the data sets, inductor's settings and the curriculum's recompiles."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import torch
from torch import nn

from rrcore.contracts.errors import ConfigError
from rrcore.contracts.experiment import Experiment
from rrcore.data.cache import data_cache_dir
from rrcore.model.compiled_step import CompiledStep


def compile_enabled(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def compiled_step(experiment: Experiment, loss_head: nn.Module, device: torch.device) -> CompiledStep:
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


def prepare_curriculum(experiment: Experiment, model: nn.Module) -> None:
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
