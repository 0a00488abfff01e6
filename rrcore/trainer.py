"""The generic trainer: one process, or many under ``torchrun``.

The loop is short; the pieces it calls (data, ACT, checkpoints, EMA, schedule,
distributed set-up, logging) each live in their own module. One optimizer step
runs one ACT step for every row of the global batch (split over ranks and
gradient-accumulation micro-batches); rows that halt take the next examples of
the data stream. Nothing in the step waits for the GPU: metrics are summed on
the device and read back only every ``log_interval`` steps.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.distributed as dist

from rrcore import distributed
from rrcore.act import ACTModel, Carry, CompiledStep
from rrcore.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rank_state_for_layout,
    resolve_checkpoint,
    save_checkpoint,
)
from rrcore.config import ConfigError, Experiment, dump_experiment, tomllib
from rrcore.data import PuzzleDataset, StreamPosition, default_cache_dir, save_run_metadata
from rrcore.ema import EMA
from rrcore.evaluation import EvalContext
from rrcore.logging import JsonlLogger, JsonlLoggerConfig, ProgressLine
from rrcore.nn import SignSGD, SparsePuzzleEmbedding
from rrcore.protocols import ModelContext
from rrcore.registry import Registry, Spec, get_registry
from rrcore.rundir import (
    check_unused,
    default_run_dir,
    move_aside,
    resume_command,
    write_resume_script,
)
from rrcore.schedule import cosine_with_warmup


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint...)."""


@attrs.define
class RunContext:
    """What hooks and loggers see of a run."""

    experiment: Experiment
    run_dir: Path
    rank: int
    world_size: int
    device: torch.device
    registry: Registry
    metadata: Any = None
    total_steps: int = 0
    step: int = 0


@attrs.define
class TrainResult:
    """How a run ended: ``finished``, ``interrupted`` (by ``stop_signal``) — with the last results."""

    status: str
    step: int
    run_dir: Path
    checkpoint: Path | None
    eval_results: dict[str, float]
    train_metrics: dict[str, float]
    seconds: float
    stop_signal: int | None = None


def build(spec: Spec, *args: Any) -> Any:
    """``spec.factory(*args)``; a failure becomes a :class:`TrainingError` naming the plugin
    and its distribution (the original exception stays chained for debugging)."""
    try:
        return spec.factory(*args)
    except (TrainingError, CheckpointError):
        raise
    except Exception as error:
        raise TrainingError(f"{spec.kind.replace('_', ' ')} plugin {spec.name!r} ({spec.distribution} "
                            f"{spec.version}) failed: {type(error).__name__}: {error}") from error


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def _compile_enabled(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


class Trainer:
    """Builds everything an experiment names and runs the training loop."""

    def __init__(self, experiment: Experiment, registry: Registry | None = None,
                 resume: str | None = None, run_dir: str | Path | None = None,
                 overwrite: bool = False) -> None:
        self.experiment = experiment
        self.registry = registry or get_registry()
        if experiment.run.device == "cuda" and not torch.cuda.is_available():
            build_kind = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
            raise ConfigError(f"{experiment.source}: run.device = \"cuda\" but torch {torch.__version__} sees no "
                              f"CUDA device ({build_kind}); use \"auto\" or \"cpu\"")
        self.dist = distributed.setup(experiment.run.device)
        self.device = self.dist.device
        if self.device.type == "cpu" and experiment.run.cpu_threads:
            torch.set_num_threads(experiment.run.cpu_threads)
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        train_cfg = experiment.train
        if train_cfg.global_batch_size % (self.world_size * train_cfg.grad_accum_steps):
            raise TrainingError(f"train.global_batch_size {train_cfg.global_batch_size} must divide into "
                                f"{self.world_size} ranks x {train_cfg.grad_accum_steps} accumulation steps")
        self.local_batch = train_cfg.global_batch_size // self.world_size
        self.micro_batch = self.local_batch // train_cfg.grad_accum_steps
        self.forward_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(experiment)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self._stop_signal: int | None = None
        if not resume:
            self._claim_run_dir(overwrite)

        _seed_everything(experiment.run.seed)
        self.data_dir = self._build_data()
        self.train_data = PuzzleDataset(
            self.data_dir / "train", global_batch_size=train_cfg.global_batch_size, rank=self.rank,
            world_size=self.world_size, seed=experiment.run.seed, device=self.device,
            on_device={"auto": "auto", "on": True, "off": False}[train_cfg.data_on_device])
        self.metadata = self.train_data.metadata
        if train_cfg.global_batch_size > self.train_data.examples_per_epoch:
            # Each batch would repeat the whole data set, several times over.
            raise ConfigError(f"{experiment.source}: train.global_batch_size = {train_cfg.global_batch_size} is "
                              f"larger than the training set ({self.train_data.examples_per_epoch} examples "
                              f"per epoch in {self.data_dir / 'train'}); use at most that many")
        eval_batch = train_cfg.eval_global_batch_size or train_cfg.global_batch_size
        self.eval_data = (PuzzleDataset(self.data_dir / "test", global_batch_size=eval_batch, rank=self.rank,
                                        world_size=self.world_size, seed=experiment.run.seed, device=self.device,
                                        on_device=self.train_data.on_device)
                          if (self.data_dir / "test" / "dataset.json").exists() else None)

        self.steps_per_epoch = self.train_data.steps_per_epoch
        self.total_steps = max(1, int(train_cfg.epochs * self.steps_per_epoch))
        if train_cfg.max_steps:
            self.total_steps = min(self.total_steps, train_cfg.max_steps)
        self.eval_every = self._interval_steps(train_cfg.eval_interval)
        self.checkpoint_every = (train_cfg.checkpoint_every_steps
                                 or self._interval_steps(train_cfg.checkpoint_interval) or self.eval_every)

        self._build_model()
        self._build_optimizers()
        self.ema = EMA(self.model, train_cfg.ema_rate) if train_cfg.ema else None

        self.step = 0
        self.position = StreamPosition()
        self.carries: list[Carry] | None = None
        self._headline: list[str] = []
        if resume:
            self._restore(resume)

        self.context = RunContext(experiment, self.run_dir, self.rank, self.world_size, self.device,
                                  self.registry, self.metadata, self.total_steps, self.step)

    # -- construction ------------------------------------------------------------------

    def _claim_run_dir(self, overwrite: bool) -> None:
        """A new run gets a folder of its own: refuse one holding another run, or (with
        ``overwrite``) move that run aside. Before any data is built, so refusing is quick."""
        if not overwrite:
            check_unused(self.run_dir)
            return
        if self.rank == 0:
            aside = move_aside(self.run_dir)
            if aside is not None:
                print(f"rr: moved the previous run in {self.run_dir} to {aside}", file=sys.stderr)
        distributed.barrier()

    def _interval_steps(self, epochs: float) -> int:
        return max(1, round(epochs * self.steps_per_epoch)) if epochs > 0 else 0

    def _build_data(self) -> Path:
        section = self.experiment.data
        spec = self.registry.get("dataset", section.plugin)
        cache_dir = Path(self.experiment.run.cache_dir).expanduser() if self.experiment.run.cache_dir \
            else default_cache_dir()
        # Rank 0 builds; the others wait and then find the build in the cache.
        path = build(spec, section.config, cache_dir) if self.rank == 0 else None
        distributed.barrier()
        if self.rank != 0:
            path = build(spec, section.config, cache_dir)
        path = Path(path)
        if not (path / "train" / "dataset.json").exists():
            raise TrainingError(f"data plugin {section.plugin!r} returned {path}, which has no train/dataset.json")
        return path

    def _build_model(self) -> None:
        experiment = self.experiment
        spec = self.registry.get("model", experiment.model.plugin)
        context = ModelContext(self.metadata, self.micro_batch, self.forward_dtype)
        inner = build(spec, experiment.model.config, context).to(self.device)
        # Identical initial weights on every rank, whatever the plugin's init does.
        if self.world_size > 1:
            for tensor in list(inner.parameters()) + list(inner.buffers()):
                dist.broadcast(tensor.data, src=0)
        self.model = inner
        self.act_model = ACTModel(inner, experiment.act)
        self.act_model.global_batch_size = experiment.train.global_batch_size
        generator = torch.Generator(device=self.device)
        generator.manual_seed(experiment.run.seed + 1)
        self.act_model.exploration_generator = generator
        loss_spec = self.registry.get("loss_head", experiment.loss.plugin)
        self.loss_head = build(loss_spec, experiment.loss.config, self.act_model).to(self.device)
        self.compiled = _compile_enabled(experiment.train.compile, self.device)
        # CUDA graphs replay one recorded step; gradient accumulation would need the
        # gradients of several replays alive at once, so it keeps plain compilation.
        self.cuda_graphs = (self.compiled and self.device.type == "cuda" and experiment.train.cuda_graphs
                            and experiment.train.grad_accum_steps == 1)
        self.step_fn = CompiledStep(self.loss_head, compile=self.compiled, cuda_graphs=self.cuda_graphs)

    def _build_optimizers(self) -> None:
        train = self.experiment.train
        named = [(name, p) for name, p in self.loss_head.named_parameters() if p.requires_grad]
        self.parameters = [p for _, p in named]
        # param_names (torch's convention) lets optimizers such as Muon route by name.
        groups = [{"params": self.parameters, "param_names": [name for name, _ in named], "lr": train.lr,
                   "weight_decay": train.weight_decay, "betas": tuple(train.betas)}]
        spec = self.registry.get("optimizer", self.experiment.optimizer.plugin)
        self.optimizer = build(spec, groups, self.experiment.optimizer.config)
        self.optimizers: list[tuple[torch.optim.Optimizer, float]] = [(self.optimizer, train.lr)]
        embeddings = [m for m in self.model.modules() if isinstance(m, SparsePuzzleEmbedding)]
        self.sparse_optimizer = None
        if embeddings:
            self.sparse_optimizer = SignSGD(embeddings, lr=train.puzzle_emb_lr,
                                            weight_decay=train.puzzle_emb_weight_decay)
            self.optimizers.append((self.sparse_optimizer, train.puzzle_emb_lr))

    # -- checkpoints -------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        shared = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizers": [opt.state_dict() for opt, _ in self.optimizers],
        }
        per_rank = {
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "exploration_rng": self.act_model.exploration_generator.get_state(),
            "carries": [c._asdict() for c in self.carries] if self.carries else None,
        }
        trainer_state = {"step": self.step, "position": [self.position.epoch, self.position.offset],
                         "world_size": self.world_size, "grad_accum_steps": self.experiment.train.grad_accum_steps,
                         "total_steps": self.total_steps}
        return shared, per_rank, trainer_state

    def save(self) -> Path:
        shared, per_rank, trainer_state = self._state()
        path = save_checkpoint(self.checkpoint_dir, self.step, shared, per_rank, trainer_state,
                               dump_experiment(self.experiment), rank=self.rank,
                               keep=self.experiment.train.keep_checkpoints)
        self.last_checkpoint = path
        return path

    def _restore(self, reference: str) -> None:
        path = resolve_checkpoint(reference, self.checkpoint_dir)
        shared, per_rank, trainer_state = load_checkpoint(path, self.rank)
        self._check_checkpoint_fits(path, shared)
        self.model.load_state_dict(shared["model"])
        if self.ema is not None and shared.get("ema") is not None:
            self.ema.load_state_dict(shared["ema"])
        for (opt, _), state in zip(self.optimizers, shared["optimizers"]):
            opt.load_state_dict(state)
        self.step = int(trainer_state["step"])
        self.position = StreamPosition(*trainer_state["position"])
        train = self.experiment.train
        same_layout = (trainer_state.get("world_size") == self.world_size
                       and trainer_state.get("grad_accum_steps") == train.grad_accum_steps)
        if not same_layout:
            per_rank = rank_state_for_layout(path, trainer_state, self.rank, self.world_size,
                                             train.grad_accum_steps, train.global_batch_size)
            if self.rank == 0:
                was = f"{trainer_state.get('world_size')} x {trainer_state.get('grad_accum_steps')}"
                now = f"{self.world_size} x {train.grad_accum_steps}"
                what = ("regrouped" if per_rank["carries"]
                        else "restarted (the global batch size changed)")
                print(f"rr: resuming {path} with a different rank/accumulation layout "
                      f"(ranks x accumulation steps {was}, now {now}): ACT carries {what}",
                      file=sys.stderr)
        if per_rank is not None:
            torch.set_rng_state(per_rank["torch_rng"])
            if per_rank.get("cuda_rng") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(per_rank["cuda_rng"], self.device)
            self.act_model.exploration_generator.set_state(per_rank["exploration_rng"])
            if per_rank.get("carries"):
                self.carries = [Carry(**c).to(self.device) for c in per_rank["carries"]]
        self.last_checkpoint = path

    def _check_checkpoint_fits(self, path: Path, shared: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` saying what differs when the checkpoint's model or
        optimizer is not this experiment's (loading would fail later, deep in torch)."""
        saved_config = path / "config.toml"
        saved = tomllib.loads(saved_config.read_text()) if saved_config.exists() else {}
        mine = self.experiment.to_dict()
        advice = "resume with the experiment it was trained with, or start a new run (another --run-dir)"
        for section in ("model", "optimizer"):
            was, now = saved.get(section, {}).get("plugin"), mine[section]["plugin"]
            if was is not None and was != now:
                raise ConfigError(f"{path} was trained with {section} {was!r}, this experiment uses {now!r}; "
                                  f"{advice}")
        model_state, expected = shared["model"], self.model.state_dict()
        if model_state.keys() != expected.keys() or any(
                model_state[k].shape != expected[k].shape for k in expected):
            changed = [f"model.{k} = {saved['model'][k]!r} there, {v!r} here"
                       for k, v in mine["model"].items() if k in saved.get("model", {}) and saved["model"][k] != v]
            what = "; ".join(changed) or _state_difference(model_state, expected)
            raise ConfigError(f"{path} does not fit this model ({what}); {advice}")
        groups_saved = [[len(g["params"]) for g in state["param_groups"]] for state in shared["optimizers"]]
        groups_now = [[len(g["params"]) for g in opt.state_dict()["param_groups"]] for opt, _ in self.optimizers]
        if groups_saved != groups_now:
            raise ConfigError(f"{path}: the optimizer state has parameter groups of {groups_saved} tensors, this "
                              f"experiment {groups_now}; {advice}")

    # -- the loop ----------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        def request_stop(signum: int, frame: Any) -> None:
            self._stop_signal = signum

        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[signum] = signal.signal(signum, request_stop)
            except ValueError:  # not the main thread
                pass
        return previous

    def _stop_requested(self, sync: bool) -> bool:
        if self.world_size == 1:
            return self._stop_signal is not None
        if not sync:
            return False
        # Every rank stops, and learns the signal (for its exit code) even if only one got it.
        signum = torch.tensor([self._stop_signal or 0], device=self.device)
        dist.all_reduce(signum, op=dist.ReduceOp.MAX)
        self._stop_signal = int(signum.item()) or None
        return self._stop_signal is not None

    def _set_learning_rates(self) -> None:
        train = self.experiment.train
        for opt, base_lr in self.optimizers:
            lr = cosine_with_warmup(self.step, base_lr, train.lr_warmup_steps, self.total_steps, train.lr_min_ratio)
            for group in opt.param_groups:
                group["lr"] = lr

    def train_step(self, batch: dict[str, torch.Tensor], metric_sums: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimizer step over this rank's rows (advances ``step``); returns the (device) loss sum."""
        train = self.experiment.train
        self.loss_head.train()
        if self.carries is None:
            self.carries = [self.loss_head.initial_carry({k: v[: self.micro_batch] for k, v in batch.items()})
                            for _ in range(train.grad_accum_steps)]
        total_loss = torch.zeros((), device=self.device)
        for micro in range(train.grad_accum_steps):
            rows = slice(micro * self.micro_batch, (micro + 1) * self.micro_batch)
            micro_batch = {k: v[rows] for k, v in batch.items()}
            self.act_model.row_offset = self.rank * self.local_batch + micro * self.micro_batch
            exploration = (self.act_model.exploration(self.micro_batch, self.device)
                           if self.act_model.explores else None)
            carry, loss, metrics, _, _ = self.step_fn(self.carries[micro], micro_batch, exploration)
            self.carries[micro] = carry
            (loss / train.global_batch_size).backward()
            if self.sparse_optimizer is not None and train.grad_accum_steps > 1:
                self.sparse_optimizer.accumulate()
            total_loss += loss.detach()
            for key, value in metrics.items():
                metric_sums[key] = metric_sums.get(key, 0) + value.detach().to(torch.float64)
        metric_sums["loss"] = metric_sums.get("loss", 0) + total_loss.to(torch.float64)
        distributed.all_reduce_gradients(self.parameters)
        if train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, train.grad_clip, foreach=True)
        self._set_learning_rates()
        for opt, _ in self.optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return total_loss

    def _reduce_metrics(self, sums: dict[str, torch.Tensor], steps: int, prefix: str) -> dict[str, float]:
        """Turn summed metrics into means (a host synchronisation: logging steps only)."""
        if not sums:
            return {}
        keys = sorted(sums)
        stacked = torch.stack([sums[k].to(torch.float64) for k in keys])
        if self.world_size > 1:
            dist.all_reduce(stacked)
        values = dict(zip(keys, stacked.tolist()))
        count = max(values.pop("count", 0.0), 1.0)
        examples = max(1, steps * self.experiment.train.global_batch_size)
        # Losses are sums over every row; the other metrics sums over rows that halted.
        out = {f"{prefix}/{key}": value / (examples if key == "loss" or key.endswith("_loss") else count)
               for key, value in values.items()}
        out[f"{prefix}/halted"] = count / examples
        return out

    def train(self, command: str | None = None) -> TrainResult:
        """Run until ``total_steps`` (or a signal); evaluate, checkpoint and log on the way.

        ``command`` continues this run (``rr run ... --resume latest``) and is recorded in
        the run folder's ``resume.sh``; by default it runs the folder's own ``config.toml``.
        """
        started = time.perf_counter()
        is_main = self.rank == 0
        train = self.experiment.train
        if is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.toml").write_text(dump_experiment(self.experiment))
            save_run_metadata(self.run_dir, self.metadata)
            command = command or resume_command(str(self.run_dir / "config.toml"), [], self.run_dir,
                                                self.world_size)
            write_resume_script(self.run_dir, command)
        loggers = self._make_loggers() if is_main else []
        progress = ProgressLine(self.total_steps, start_step=self.step) if is_main else None
        previous_handlers = self._install_signal_handlers()
        self.last_checkpoint = getattr(self, "last_checkpoint", None)
        self.registry.hook.rr_on_train_start(context=self.context)
        metric_sums: dict[str, torch.Tensor] = {}
        window_steps = 0
        first_bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        train_metrics: dict[str, float] = {}
        eval_results: dict[str, float] = {}
        status = "finished"
        batches = self.train_data.train_batches(self.position)
        try:
            while self.step < self.total_steps:
                self.position, batch = next(batches)
                loss = self.train_step(batch, metric_sums)
                first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss),
                                             torch.full_like(first_bad_step, self.step), first_bad_step)
                self.context.step = self.step
                window_steps += 1
                log_now = self.step % train.log_interval == 0 or self.step == self.total_steps
                metrics = None
                if log_now:
                    self._check_finite(first_bad_step)
                    train_metrics = self._reduce_metrics(metric_sums, window_steps, "train")
                    train_metrics["train/lr"] = self.optimizer.param_groups[0]["lr"]
                    metric_sums, window_steps = {}, 0
                    metrics = train_metrics
                    if is_main:
                        progress.update(self.step, train_metrics)
                        for logger in loggers:
                            logger.log(self.step, train_metrics)
                self.registry.hook.rr_on_step_end(context=self.context, step=self.step, metrics=metrics)
                if self.eval_every and self.step % self.eval_every == 0 and self.step < self.total_steps:
                    eval_results = self._evaluate_and_log(loggers, progress)
                if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.step < self.total_steps:
                    self._check_finite(first_bad_step)
                    self.save()
                if self._stop_requested(sync=log_now):
                    status = "interrupted"
                    break
            self._check_finite(first_bad_step)
            if status == "finished":
                eval_results = self._evaluate_and_log(loggers, progress)
            self.save()
            if is_main and progress:
                progress.message(f"rr: checkpoint {self.last_checkpoint}")
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self.registry.hook.rr_on_train_end(context=self.context, step=self.step)
            for logger in loggers:
                logger.close()
            if progress:
                progress.close()
        seconds = time.perf_counter() - started
        result = TrainResult(status, self.step, self.run_dir, self.last_checkpoint, eval_results, train_metrics,
                             seconds, self._stop_signal if status == "interrupted" else None)
        if is_main:
            print(self._summary(result), file=sys.stderr, flush=True)
            if result.stop_signal is not None:
                name = signal.Signals(result.stop_signal).name
                print(f"rr: interrupted by {name} at step {result.step} (checkpoint saved; the command is also "
                      f"in {self.run_dir / 'resume.sh'}); continue with: {command}", file=sys.stderr, flush=True)
        return result

    def _summary(self, result: TrainResult) -> str:
        parts = [f"rr: {result.status} {self.experiment.run.name} at step {result.step} in "
                 f"{result.seconds:.1f}s"]
        parts += [f"{k} {result.eval_results[k]:.4f}" for k in self._headline if k in result.eval_results]
        return " | ".join(parts)

    def _check_finite(self, first_bad_step: torch.Tensor) -> None:
        bad = int(first_bad_step.item())
        if self.world_size > 1:
            flag = torch.tensor([bad], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = int(flag.item())
        if bad >= 0:
            last = getattr(self, "last_checkpoint", None)
            where = f"the last good checkpoint is {last}" if last else "no checkpoint was saved before it"
            raise TrainingError(f"loss became NaN or infinite at step {bad}; stopped without saving; {where} "
                                f"(resume with --resume latest and a lower train.lr or train.grad_clip)")

    def _make_loggers(self) -> list[Any]:
        loggers = [JsonlLogger(JsonlLoggerConfig(), self.context)]
        for section in self.experiment.loggers:
            if section.plugin == "jsonl":
                continue
            spec = self.registry.get("logger", section.plugin)
            loggers.append(build(spec, section.config, self.context))
        return loggers

    # -- evaluation --------------------------------------------------------------------

    def _evaluate_and_log(self, loggers: list[Any], progress: ProgressLine | None) -> dict[str, float]:
        if self.eval_data is None or not self.experiment.evaluators:
            return {}
        results = self.evaluate()
        if self.rank == 0:
            for logger in loggers:
                logger.log(self.step, results)
            if progress:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(results.items())
                                  if not k.startswith("eval/") or k.endswith("accuracy"))
                progress.message(f"rr: eval at step {self.step}: {shown}")
        self.registry.hook.rr_on_eval_end(context=self.context, step=self.step, results=results)
        return results

    def evaluate(self, output_dir: Path | None = None, *, predictions: bool = False,
                 trace: bool = False) -> dict[str, float]:
        """Run every evaluator over the test split (EMA weights when enabled).

        ``predictions`` (``rr eval``) also writes ``predictions.jsonl`` and ``steps.json``
        to ``output_dir`` (with each step's prediction when ``trace``); see
        :func:`rrcore.inference.evaluate_split`.
        """
        output_dir = output_dir or self.run_dir / "eval" / f"step_{self.step}"
        evaluators = []
        for section in self.experiment.evaluators:
            spec = self.registry.get("evaluator", section.plugin)
            context = EvalContext(self.metadata, self.data_dir / "test", output_dir / section.plugin,
                                  self.rank, self.world_size, self.device)
            evaluators.append((section.plugin, build(spec, section.config, context)))
        self._headline = [f"{name}/{metric}" for name, evaluator in evaluators
                          for metric in getattr(evaluator, "headline_metrics", ("accuracy", "exact_accuracy"))]
        with self.evaluation_weights():
            return self._run_evaluation(evaluators, output_dir, predictions, trace)

    def evaluation_weights(self) -> contextlib.AbstractContextManager[None]:
        """Within the block the model holds the weights evaluation uses: the EMA's when the
        run keeps one (restored afterwards), else the trained ones."""
        return self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext()

    def _run_evaluation(self, evaluators: list[tuple[str, Any]], output_dir: Path, predictions: bool,
                        trace: bool) -> dict[str, float]:
        """The papers' batched loop, unless ``[eval]`` asks for more or ``rr eval`` reports more."""
        from rrcore.inference import EvalConfig, evaluate_split, task_for

        if self.experiment.eval == EvalConfig() and not (predictions or trace):
            return run_evaluation(self.loss_head, self.eval_data, evaluators, self.experiment.act.halt_max_steps,
                                  self.world_size, step=self.step_fn)
        wants_task = predictions or self.experiment.eval.augmentations > 0
        task = task_for(self.registry, self.experiment.data, self.metadata) if wants_task else None
        return evaluate_split(self.loss_head, self.eval_data, evaluators, self.experiment.eval,
                              halt_max_steps=self.experiment.act.halt_max_steps,
                              q_continue=self.experiment.act.q_continue, step=self.step_fn,
                              output_dir=output_dir, predictions=predictions, trace=trace, task=task,
                              rank=self.rank)


def _state_difference(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """The first difference between two state dicts, in words."""
    for key in expected:
        if key not in saved:
            return f"{key} is missing from the checkpoint"
        if saved[key].shape != expected[key].shape:
            return f"{key} has shape {tuple(saved[key].shape)} there, {tuple(expected[key].shape)} here"
    return f"{next(k for k in saved if k not in expected)} is not part of this model"


@torch.no_grad()
def run_evaluation(loss_head: torch.nn.Module, data: PuzzleDataset, evaluators: list[tuple[str, Any]],
                   halt_max_steps: int, world_size: int = 1, step: Any = None) -> dict[str, float]:
    """Every evaluation batch through ``halt_max_steps`` ACT steps, then the evaluators.

    ``step``: how to run one ACT step (the trainer's compiled :class:`CompiledStep`);
    the loss head itself by default.
    """
    step = step or loss_head
    was_training = loss_head.training
    loss_head.eval()
    for _, evaluator in evaluators:
        evaluator.begin_eval()
    try:
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
    finally:
        loss_head.train(was_training)


def train(experiment: Experiment, *, registry: Registry | None = None, resume: str | None = None,
          run_dir: str | Path | None = None, overwrite: bool = False,
          command: str | None = None) -> TrainResult:
    """Train an experiment (the body of ``rr run``); ``overwrite`` moves a previous run in
    the run folder aside; ``command`` is how to continue the run (see :meth:`Trainer.train`)."""
    trainer = Trainer(experiment, registry=registry, resume=resume, run_dir=run_dir, overwrite=overwrite)
    try:
        result = trainer.train(command)
        # No rank exits before every rank has saved and rank 0 has said how the run ended:
        # under torchrun the first worker to exit gets the others terminated.
        distributed.barrier()
        return result
    finally:
        distributed.teardown()


def evaluate_checkpoint(experiment: Experiment, checkpoint: Path, output_dir: Path | None = None,
                        registry: Registry | None = None, *, predictions: bool = False,
                        trace: bool = False) -> dict[str, float] | None:
    """Evaluate a saved checkpoint (the body of ``rr eval``); results on rank 0, else None.
    ``predictions`` and ``trace``: see :meth:`Trainer.evaluate`."""
    checkpoint = Path(checkpoint)
    run_dir = checkpoint.parent.parent
    trainer = Trainer(experiment, registry=registry, resume=str(checkpoint), run_dir=run_dir)
    try:
        if trainer.eval_data is None:
            raise TrainingError(f"{trainer.data_dir}: no test split to evaluate")
        results = trainer.evaluate(output_dir or run_dir / "eval" / f"{checkpoint.name}-rr-eval",
                                   predictions=predictions, trace=trace)
        return results if trainer.rank == 0 else None
    finally:
        distributed.teardown()
