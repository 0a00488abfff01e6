"""Time a reference repository's own training step (HRM, TRM or URM) on one GPU.

    python benchmarks/reference/reference_step.py --repo DIR --arch trm|hrm|urm --data DATA \\
        --batch N [--set KEY=VALUE]... [--steps 30] [--warmup 5] --out OUT.json

DIR is the user's clone of the reference repository; nothing of it is copied into rr.
The script puts DIR on ``sys.path``, composes the reference's hydra config
(``config/cfg_pretrain.yaml`` with the ``--set`` overrides, as its command line would),
builds the train state with the reference's ``load_synced_config``, ``create_dataloader``
and ``init_train_state`` from its ``pretrain.py``, and times its ``train_batch`` (plus the
EMA update its training loop makes after each step when ``ema`` is on). DATA is a data set
in the references' layout, e.g. the folder ``rr data build EXPERIMENT.toml`` prints.

It writes the median step over ``--steps`` steady steps after ``--warmup`` untimed ones
(``torch.compile`` compiles in the first), the peak of ``torch.cuda.max_memory_allocated``
over the whole run (warm-up included, as ``rr bench`` reports), and the first step's
seconds. Refusals (not the expected repository, no CUDA, a missing package) are one line
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXIT_REFUSED = 2


class Refusal(Exception):
    """Why the reference step cannot run here; printed as one line."""


@dataclass(frozen=True)
class Reference:
    """What identifies one reference repository and how its config names the data."""

    github: str
    marker: str  # a file only this repository has
    data_key: str  # the hydra key of the data folder
    data_is_list: bool


REFERENCES = {
    "trm": Reference(
        "SamsungSAILMontreal/TinyRecursiveModels", "models/recursive_reasoning/trm.py", "data_paths", True
    ),
    "hrm": Reference("sapientinc/HRM", "models/hrm/hrm_act_v1.py", "data_path", False),
    "urm": Reference("zitian-gao/URM", "models/urm/urm.py", "data_path", False),
}

# Module a reference imports -> what to pip install for it.
PIP_PACKAGES = {
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "adam_atan2": "adam-atan2 (pip install --no-cache-dir --no-build-isolation adam-atan2; it builds a CUDA kernel)",
    "adam_atan2_backend": "adam-atan2 built against this torch "
    "(pip install --no-cache-dir --no-build-isolation --force-reinstall adam-atan2)",
    "flash_attn": "flash-attn (pip install flash-attn --no-build-isolation; HRM and URM need it)",
    "flash_attn_interface": "flash-attn (FlashAttention 3: the hopper/ folder of Dao-AILab/flash-attention)",
    "wandb": "wandb",
    "coolname": "coolname",
    "pydantic": "pydantic",
    "argdantic": "argdantic",
    "einops": "einops",
    "tqdm": "tqdm",
    "yaml": "pyyaml",
    "numba": "numba",
}


def pip_package(module: str) -> str:
    """The pip package that provides ``module`` (its top-level name), as the references name it."""
    top = module.split(".")[0]
    return PIP_PACKAGES.get(top, top)


def check_repo(repo: Path, arch: str) -> Path:
    """``repo`` resolved, or a refusal naming the repository expected for ``arch``."""
    reference = REFERENCES[arch]
    repo = Path(repo).resolve()
    missing = [
        name for name in ("pretrain.py", "config/cfg_pretrain.yaml", reference.marker) if not (repo / name).is_file()
    ]
    if missing:
        raise Refusal(
            f"{repo} is not a clone of {reference.github} (no {missing[0]}): "
            f"git clone https://github.com/{reference.github} and pass its folder as --repo"
        )
    return repo


def check_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise Refusal(f"no CUDA device (torch {torch.__version__}): the reference step runs on a GPU only")


def stage_data(data: Path, into: Path) -> Path:
    """A view of the built data set ``data`` that every reference's loader reads.

    The training split's arrays are linked, not copied; its ``dataset.json`` gains
    ``total_puzzles`` where it lacks it (TRM's metadata requires the key; rr's Sudoku
    builder, like HRM's and URM's, does not write it). Only ``train/`` is needed."""
    split = Path(data) / "train"
    if not (split / "dataset.json").is_file():
        raise Refusal(f"{data} is not a built data set (no train/dataset.json): pass the folder rr data build prints")
    metadata = json.loads((split / "dataset.json").read_text())
    if "total_puzzles" not in metadata:
        metadata["total_puzzles"] = sum(
            int(np.load(split / f"{name}__puzzle_identifiers.npy", mmap_mode="r").shape[0]) for name in metadata["sets"]
        )
    staged = Path(into) / "train"
    staged.mkdir(parents=True, exist_ok=True)
    for path in split.iterdir():
        if path.name != "dataset.json":
            (staged / path.name).symlink_to(path.resolve())
    (staged / "dataset.json").write_text(json.dumps(metadata, indent=2))
    return Path(into)


def hydra_overrides(arch: str, data: Path, batch: int, settings: list[str]) -> list[str]:
    """The reference's command-line overrides: the data folder, the global batch, then ``settings``."""
    reference = REFERENCES[arch]
    data_value = f"[{data}]" if reference.data_is_list else str(data)
    return [f"{reference.data_key}={data_value}", f"global_batch_size={batch}", *settings]


def import_reference(repo: Path) -> Any:
    """The reference's ``pretrain`` module, imported from ``repo``; a missing package is a refusal."""
    sys.path.insert(0, str(repo))
    try:
        return importlib.import_module("pretrain")
    except ModuleNotFoundError as error:
        raise Refusal(f"{repo}/pretrain.py needs {error.name!r}: pip install {pip_package(error.name or '')}") from None


def import_model_classes(pretrain: Any, config: Any) -> None:
    """Import the model and loss head modules now, so a missing package (flash-attn) is a
    refusal before anything is built; ``create_model`` imports them by name again."""
    try:
        pretrain.load_model_class(config.arch.name)
        pretrain.load_model_class(config.arch.loss.name)
    except ModuleNotFoundError as error:
        raise Refusal(f"{config.arch.name} needs {error.name!r}: pip install {pip_package(error.name or '')}") from None


def compose_config(repo: Path, overrides: list[str]) -> Any:
    """cfg_pretrain.yaml with ``overrides``, as the reference's ``@hydra.main`` composes it."""
    try:
        from hydra import compose, initialize_config_dir
    except ModuleNotFoundError:
        raise Refusal("hydra is missing: pip install hydra-core") from None
    with initialize_config_dir(config_dir=str(repo / "config"), version_base=None):
        return compose(config_name="cfg_pretrain", overrides=overrides)


def _call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a reference function with the keyword arguments its signature takes (HRM's
    ``init_train_state`` has no ``rank``; TRM's and URM's do)."""
    accepted = inspect.signature(function).parameters
    return function(*args, **{k: v for k, v in kwargs.items() if k in accepted})


def _commit(repo: Path) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def time_reference(repo: Path, arch: str, overrides: list[str], steps: int, warmup: int) -> dict[str, Any]:
    """Build the reference's train state from its config and time its training step."""
    import torch

    pretrain = import_reference(repo)
    config = pretrain.load_synced_config(compose_config(repo, overrides), rank=0, world_size=1)
    import_model_classes(pretrain, config)
    torch.random.manual_seed(config.seed)
    # As the reference's launch(): one loader iteration covers eval_interval epochs.
    epochs_per_iter = config.eval_interval if config.eval_interval is not None else config.epochs
    train_loader, train_metadata = pretrain.create_dataloader(
        config,
        "train",
        test_set_mode=False,
        epochs_per_iter=epochs_per_iter,
        global_batch_size=config.global_batch_size,
        rank=0,
        world_size=1,
    )
    torch.cuda.reset_peak_memory_stats()
    train_state = _call(pretrain.init_train_state, config, train_metadata, rank=0, world_size=1)
    ema_helper = None
    if getattr(config, "ema", False):  # TRM and URM; HRM has no EMA
        ema_helper = pretrain.EMAHelper(mu=config.ema_rate)
        ema_helper.register(train_state.model)
    train_state.model.train()

    # Each step is timed on the host between two torch.cuda.synchronize() calls. That adds no
    # synchronisation the reference's own loop lacks: its train_batch already waits for the GPU
    # every step on rank 0 (it copies the step's metrics to the CPU with .cpu().numpy()). The
    # next batch comes from the reference's DataLoader (one worker, prefetching) inside the
    # timed window, as in its loop and in rr bench's.
    durations: list[float] = []
    first_step_seconds = None
    batches = iter(train_loader)
    torch.cuda.synchronize()
    for i in range(warmup + steps):
        started = time.perf_counter()
        try:
            _set_name, batch, global_batch_size = next(batches)
        except StopIteration:
            raise Refusal(f"the training set ran out after {i} batches: raise eval_interval or epochs") from None
        metrics = _call(
            pretrain.train_batch, config, train_state, batch, global_batch_size, rank=0, world_size=1
        )  # fmt: skip
        if metrics is None:  # the reference skips steps past total_steps (URM: and mid-accumulation)
            raise Refusal(f"train_batch did no optimizer step at step {i} (total_steps {train_state.total_steps})")
        if ema_helper is not None:
            ema_helper.update(train_state.model)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        if i == 0:
            first_step_seconds = seconds
        if i >= warmup:
            durations.append(1000 * seconds)

    return {
        "reference": REFERENCES[arch].github,
        "commit": _commit(repo),
        "arch": arch,
        "arch_name": config.arch.name,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "compile": "DISABLE_COMPILE" not in os.environ,
        "ema": ema_helper is not None,
        "parameters": sum(p.numel() for p in train_state.model.parameters()),
        "global_batch_size": config.global_batch_size,
        "overrides": overrides,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "first_step_seconds": round(first_step_seconds or 0.0, 2),
        "step_ms": round(statistics.median(durations), 2),
        "mean_step_ms": round(statistics.fmean(durations), 2),
        "step_ms_each": [round(ms, 2) for ms in durations],
        "train_examples_per_second": round(config.global_batch_size * 1000 / statistics.median(durations), 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, type=Path, help="the clone of the reference repository")
    parser.add_argument("--arch", required=True, choices=sorted(REFERENCES))
    parser.add_argument("--data", required=True, type=Path, help="a built data set (train/dataset.json and arrays)")
    parser.add_argument("--batch", required=True, type=int, help="global batch size")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a hydra override of the reference's config (repeatable)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=30, help="timed steps after warm-up")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation)")
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.steps < 1 or args.warmup < 1:
            raise Refusal("--steps and --warmup must be at least 1 (the first step compiles)")
        repo = check_repo(args.repo, args.arch)
        check_cuda()
        with tempfile.TemporaryDirectory(prefix="rr-reference-data-") as staging:
            data = stage_data(args.data, Path(staging) / "data")
            overrides = hydra_overrides(args.arch, data, args.batch, args.settings)
            figures = time_reference(repo, args.arch, overrides, args.steps, args.warmup)
    except Refusal as refusal:
        print(f"reference_step: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    text = json.dumps(figures, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
