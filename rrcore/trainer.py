"""The training loop: one process, or many under ``torchrun``.

The parts of a run (data, model, ACT, loss head, optimizers, EMA, evaluators) are
built by :func:`rrcore.run.build_run`; this module steps them, logs, evaluates and
checkpoints on a cadence, and stops cleanly on SIGTERM/SIGINT. One optimizer step
runs one ACT step for every row of the global batch (split over ranks and
gradient-accumulation micro-batches); rows that halt take the next examples of the
data stream. Nothing in the step waits for the GPU: metrics are summed on the
device and read back only every ``log_interval`` steps.
"""

from __future__ import annotations

import signal
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.distributed as dist

from rrcore import distributed
from rrcore.act import Carry
from rrcore.checkpoint import (
    hold_checkpoint,
    load_checkpoint,
    load_parts,
    rank_state_for_layout,
    resolve_checkpoint,
    save_checkpoint,
    state_of,
)
from rrcore.clock import TrainingClock
from rrcore.config import ConfigError, Experiment, RunConfig, dump_experiment
from rrcore.data import StreamPosition, save_run_metadata
from rrcore.export import check_init_from, is_export
from rrcore.files import DiskFullError, atomic_write_text, disk_full_error
from rrcore.metrics import reduce_metrics
from rrcore.progress import TrainingProgress
from rrcore.protocols import RunContext
from rrcore.provenance import write_provenance
from rrcore.registry import Registry
from rrcore.run import Run, TrainingError, build, build_run, check_same_data, join, run_evaluation, saved_config
from rrcore.rundir import (
    claim,
    default_run_dir,
    resume_command,
    write_resume_script,
)

__all__ = [
    "RunContext",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "build",
    "evaluate_checkpoint",
    "run_evaluation",
    "train",
    "train_step",
]


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


class Carries(list):
    """The ACT carry of each micro-batch on this rank (empty before the first step); a
    checkpoint part of each rank."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device

    def state_dict(self) -> list[dict[str, Any]]:
        return [carry._asdict() for carry in self]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        self[:] = [Carry(**carry).to(self.device) for carry in state]


class RandomState:
    """This rank's random generators: torch's (CPU and CUDA), ACT exploration's and, when
    the data set plugin augments batches, the batch augmenter's; a checkpoint part of each rank."""

    def __init__(
        self, exploration: torch.Generator, device: torch.device, augmentation: torch.Generator | None = None
    ) -> None:
        self.exploration, self.device, self.augmentation = exploration, device, augmentation

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        state = {"torch": torch.get_rng_state(), "cuda": cuda, "exploration": self.exploration.get_state()}
        if self.augmentation is not None:
            state["augmentation"] = self.augmentation.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)
        self.exploration.set_state(state["exploration"])
        # A checkpoint saved without batch augmentation leaves the generator at its seed.
        if self.augmentation is not None and state.get("augmentation") is not None:
            self.augmentation.set_state(state["augmentation"])


def train_step(
    run: Run, carries: list[Carry], batch: dict[str, torch.Tensor], metric_sums: dict[str, torch.Tensor], step: int
) -> torch.Tensor:
    """Optimizer step ``step`` (0-based) over this rank's rows of ``batch``; ``carries``
    (one per micro-batch, made on the first call) and ``metric_sums`` are updated in
    place. Returns the (device) loss sum."""
    layout, act_model = run.layout, run.act_model
    run.loss_head.train()
    batch = run.augment(batch)  # fresh augmentations when the data set plugin draws them
    micro_batches = [
        {k: v[micro * layout.micro_batch : (micro + 1) * layout.micro_batch] for k, v in batch.items()}
        for micro in range(layout.grad_accum_steps)
    ]
    if not carries:
        carries.extend(run.loss_head.initial_carry(micro_batches[0]) for _ in micro_batches)
    total_loss = torch.zeros((), device=run.device)
    for micro, micro_batch in enumerate(micro_batches):
        exploration = (
            act_model.exploration(layout.micro_batch, run.device, layout.row_offset(micro))
            if act_model.explores
            else None
        )
        carries[micro], loss, metrics, _, _ = run.step_fn(carries[micro], micro_batch, exploration)
        (loss / layout.global_batch_size).backward()
        if layout.grad_accum_steps > 1:
            run.optimizers.accumulate()
        total_loss += loss.detach()
        for key, value in metrics.items():
            metric_sums[key] = metric_sums.get(key, 0) + value.detach().to(torch.float64)
    metric_sums["loss"] = metric_sums.get("loss", 0) + total_loss.to(torch.float64)
    run.optimizers.step(step)
    if run.ema is not None:
        run.ema.update(run.model, step)
    return total_loss


class Trainer:
    """Trains the :class:`~rrcore.run.Run` built from an experiment, in a run folder."""

    def __init__(
        self,
        experiment: Experiment,
        registry: Registry | None = None,
        resume: str | None = None,
        run_dir: str | Path | None = None,
        overwrite: bool = False,
    ) -> None:
        self._created = time.perf_counter()  # the training clock counts building the run too
        info = join(experiment)
        self.rank, self.world_size = info.rank, info.world_size
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(experiment)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        init_from = None if resume else check_init_from(experiment)
        if resume:  # a missing checkpoint is refused before the run folder is touched
            resolve_checkpoint(resume, self.checkpoint_dir)
        self._release_run_dir = self._claim_run_dir(overwrite, bool(resume))
        self.run = run = build_run(experiment, registry)
        if init_from is not None:
            run.start_from(init_from, f"{experiment.source}: train.init_from = {experiment.train.init_from!r}")
        self.experiment, self.registry, self.device = experiment, run.registry, run.device
        self.train_data, self.eval_data, self.metadata = run.train_data, run.eval_data, run.metadata
        self.model, self.act_model, self.loss_head, self.ema = run.model, run.act_model, run.loss_head, run.ema
        self.total_steps = run.total_steps
        self.eval_every = self._interval_steps(experiment.train.eval_interval)
        self.checkpoint_every = (
            experiment.train.checkpoint_every_steps
            or self._interval_steps(experiment.train.checkpoint_interval)
            or self.eval_every
        )
        self.step = 0
        self.position = StreamPosition()
        self.carries = Carries(self.device)
        self.random_state = RandomState(self.act_model.exploration_generator, self.device, run.augmentation_generator)
        self.last_checkpoint: Path | None = None
        self._stop_signal: int | None = None
        self._last_eval_step: int | None = None
        train_seconds = 0.0
        if resume:
            train_seconds = self._restore(resume)
        self.clock = TrainingClock(
            self.device, experiment.train.time_budget_minutes, experiment.train.eval_at_minutes, train_seconds
        )
        self.context = RunContext(
            experiment,
            self.run_dir,
            self.rank,
            self.world_size,
            self.device,
            self.registry,
            self.metadata,
            self.total_steps,
            self.step,
        )

    def _claim_run_dir(self, overwrite: bool, resume: bool) -> Callable[[], Any]:
        """Make this run its folder's one writer (:func:`rrcore.rundir.claim`; rank 0 holds the
        lock): refuse a folder of other files or one another run writes; a new run also refuses
        one holding another run, or (with ``overwrite``) moves that run aside. Before any data
        is built, so refusing is quick. Returns what gives the lock back: called at the end of
        :meth:`train`, else when the trainer is dropped (or the process ends)."""
        refusal, lock = None, None
        if self.rank == 0:
            try:
                lock, aside = claim(self.run_dir, resume=resume, overwrite=overwrite)
            except ConfigError as error:
                refusal = str(error)
            else:
                if aside is not None:
                    print(f"rr: moved the previous run in {self.run_dir} to {aside}", file=sys.stderr)
        refusal = distributed.from_rank0(refusal)  # every rank stops, with rank 0's reason
        if refusal is not None:
            raise ConfigError(refusal)
        return weakref.finalize(self, lock.release) if lock is not None else (lambda: None)

    def _interval_steps(self, epochs: float) -> int:
        return max(1, round(epochs * self.train_data.steps_per_epoch)) if epochs > 0 else 0

    # -- checkpoints -------------------------------------------------------------------

    def _rank_parts(self) -> dict[str, Any]:
        return {"rng": self.random_state, "carries": self.carries}

    def _progress(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "position": [self.position.epoch, self.position.offset],
            "world_size": self.world_size,
            "grad_accum_steps": self.experiment.train.grad_accum_steps,
            "total_steps": self.total_steps,
            "train_seconds": self.clock.seconds,
        }

    def save(self) -> Path:
        self.last_checkpoint = save_checkpoint(
            self.checkpoint_dir,
            self.step,
            state_of(self.run.checkpoint_parts()),
            state_of(self._rank_parts()),
            self._progress(),
            dump_experiment(self.experiment),
            rank=self.rank,
            keep=self.experiment.train.keep_checkpoints,
        )
        return self.last_checkpoint

    def _restore(self, reference: str) -> float:
        """Load checkpoint ``reference``; returns the training seconds it had run. A checkpoint
        of other data is refused (:func:`~rrcore.run.check_same_data`); with another global
        batch the run goes on from the same place in the data stream, its ACT carries restarted
        (each row then starts its next example afresh), as with another rank layout."""
        path = resolve_checkpoint(reference, self.checkpoint_dir)
        saved = saved_config(path)
        check_same_data(path, self.experiment, saved)
        shared, per_rank, progress = load_checkpoint(path, self.rank)  # trainer.json checked
        self.run.restore(path, shared)
        self.step = progress["step"]
        self.position = StreamPosition(*progress["position"])
        train = self.experiment.train
        saved_batch = saved.get("train", {}).get("global_batch_size", train.global_batch_size)
        if saved_batch != train.global_batch_size and self.rank == 0:
            print(
                f"rr: resuming {path} with train.global_batch_size = {train.global_batch_size} (it was "
                f"{saved_batch}): the data stream goes on where it stopped, ACT carries restarted",
                file=sys.stderr,
            )
        layout = (progress.get("world_size"), progress.get("grad_accum_steps"))
        if layout != (self.world_size, train.grad_accum_steps) or saved_batch != train.global_batch_size:
            per_rank = rank_state_for_layout(
                path, progress, self.rank, self.world_size, train.grad_accum_steps, train.global_batch_size
            )
            if self.rank == 0 and layout != (self.world_size, train.grad_accum_steps):
                was = f"{progress.get('world_size')} x {progress.get('grad_accum_steps')}"
                what = "regrouped" if per_rank["carries"] else "restarted (the global batch size changed)"
                print(
                    f"rr: resuming {path} with a different rank/accumulation layout (ranks x accumulation "
                    f"steps {was}, now {self.world_size} x {train.grad_accum_steps}): ACT carries {what}",
                    file=sys.stderr,
                )
        if per_rank is not None:
            load_parts(self._rank_parts(), per_rank, path / f"rank{self.rank}.pt")
        self.last_checkpoint = path
        return float(progress.get("train_seconds", 0.0))

    # -- the loop ----------------------------------------------------------------------

    def train_step(self, batch: dict[str, torch.Tensor], metric_sums: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimizer step over this rank's rows (advances ``step``); returns the (device) loss sum."""
        loss = train_step(self.run, self.carries, batch, metric_sums, self.step)
        self.step += 1
        return loss

    def train(self, command: str | None = None) -> TrainResult:
        """Run until ``total_steps`` (or a signal); evaluate, checkpoint and log on the way.

        ``command`` continues this run (``rr run ... --resume latest``) and is recorded in
        the run folder's ``resume.sh``; by default it runs the folder's own ``config.toml``.
        """
        started = time.perf_counter()
        command = self._write_run_folder(command)
        loggers = self._make_loggers() if self.rank == 0 else []
        budget_left = (
            (lambda: self.clock.budget_seconds - self.clock.seconds)
            if self.experiment.train.time_budget_minutes
            else None
        )
        progress = (
            TrainingProgress(self.total_steps, start_step=self.step, budget_left=budget_left)
            if self.rank == 0
            else None
        )
        previous_handlers = self._install_signal_handlers()
        self.registry.hook.rr_on_train_start(context=self.context)
        try:
            status, train_metrics, eval_results = self._loop(loggers, progress)
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self.registry.hook.rr_on_train_end(context=self.context, step=self.step)
            for logger in loggers:
                logger.close()
            if progress:
                progress.close()
            self._release_run_dir()  # everything is written: another run may take the folder
        result = TrainResult(
            status,
            self.step,
            self.run_dir,
            self.last_checkpoint,
            eval_results,
            train_metrics,
            time.perf_counter() - started,
            self._stop_signal if status == "interrupted" else None,
        )
        if self.rank == 0:
            self._say_how_it_ended(result, command)
        return result

    def _loop(
        self,
        loggers: list[Any],
        progress: TrainingProgress | None,
    ) -> tuple[str, dict[str, float], dict[str, float]]:
        """Steps until the end or a stop signal, then the final evaluation and checkpoint;
        returns (status, last training metrics, last evaluation results)."""
        train = self.experiment.train
        metric_sums: dict[str, torch.Tensor] = {}
        window_steps, train_metrics, eval_results, status = 0, {}, {}, "finished"
        first_bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        batches = self.train_data.train_batches(self.position)
        self.clock.start(at=self._created)
        while self.step < self.total_steps:
            self.run.use_phase(self.step)
            self.position, batch = next(batches)
            loss = self.train_step(batch, metric_sums)
            first_bad_step = torch.where(
                (first_bad_step < 0) & ~torch.isfinite(loss), torch.full_like(first_bad_step, self.step), first_bad_step
            )
            self.context.step = self.step
            window_steps += 1
            log_now = self.step % train.log_interval == 0 or self.step == self.total_steps
            if log_now:
                self._check_finite(first_bad_step)
                train_metrics = self._log_training(metric_sums, window_steps, loggers, progress)
                metric_sums, window_steps = {}, 0
            elif progress:  # the count moves every step; the numbers, read from the device, at log steps
                progress.advance(self.step)
            self.registry.hook.rr_on_step_end(
                context=self.context, step=self.step, metrics=train_metrics if log_now else None
            )
            marks, budget = bool(train.eval_at_minutes), bool(train.time_budget_minutes)
            # The budget first: a run out of time ends with the final evaluation, at its budget,
            # not with a mark's evaluation a moment before it.
            if budget and self._clock_says(self.clock.out_of_time, log_now):
                if progress:
                    progress.message(f"rr: time budget of {train.time_budget_minutes:g} minutes reached")
                break
            if self._due(self.eval_every) or (marks and self._clock_says(self.clock.eval_due, log_now)):
                eval_results = self._evaluate_and_log(loggers, progress)
            if self._due(self.checkpoint_every):
                self._check_finite(first_bad_step)
                self.save()
            if self._stop_requested(sync=log_now):
                status = "interrupted"
                break
        self._check_finite(first_bad_step)
        if status == "finished" and self._last_eval_step != self.step:  # a mark may have evaluated this step
            eval_results = self._evaluate_and_log(loggers, progress)
        self.save()
        if progress:
            progress.message(f"rr: checkpoint {self.last_checkpoint}")
        return status, train_metrics, eval_results

    def _clock_says(self, question: Callable[[], bool], log_now: bool) -> bool:
        """The training clock's answer to ``question`` (an ``eval_at_minutes`` mark passed, the
        time budget spent). Under torchrun rank 0's clock answers for every rank, at log steps
        (where the ranks meet anyway): each rank's own clock could pass a mark a step before
        another's, and a rank that evaluated or stopped alone would leave the others waiting
        in a collective. Asked only when the experiment sets marks or a budget (the same on
        every rank): the answer costs a collective at each log step."""
        if self.world_size == 1:
            return question()
        if not log_now:
            return False
        return bool(distributed.from_rank0(question() if self.rank == 0 else None))

    def _due(self, every: int) -> bool:
        """Whether a periodic evaluation or save falls on this step (the last step has its own)."""
        return bool(every) and self.step % every == 0 and self.step < self.total_steps

    def _log_training(
        self, metric_sums: dict[str, torch.Tensor], steps: int, loggers: list[Any], progress: TrainingProgress | None
    ) -> dict[str, float]:
        metrics = reduce_metrics(
            metric_sums,
            self.loss_head.metric_reductions,
            steps,
            self.experiment.train.global_batch_size,
            "train",
            self.world_size,
        )
        metrics.update(self.run.optimizers.lr_metrics())  # train/lr, and train/lr_NAME per group
        if self.rank == 0:
            progress.update(self.step, metrics)
            for logger in loggers:
                logger.log(self.step, metrics)
        return metrics

    def _write_run_folder(self, command: str | None) -> str | None:
        """``config.toml`` and ``resume.sh`` (rank 0); returns the command that continues the run."""
        if self.rank != 0:
            return command
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Atomic: a full disk here leaves the previous config.toml (resuming), not an empty one.
        atomic_write_text(self.run_dir / "config.toml", dump_experiment(self.experiment))
        save_run_metadata(self.run_dir, self.metadata)  # rr solve reads it instead of the data set
        write_provenance(self.run_dir, self.experiment, self.registry)  # what made the run: versions, commit
        command = self._continue_command(command)
        write_resume_script(self.run_dir, command)
        return command

    def _continue_command(self, command: str | None) -> str:
        return command or resume_command(str(self.run_dir / "config.toml"), [], self.run_dir, self.world_size)

    def disk_full(self, error: OSError, command: str | None = None) -> DiskFullError:
        """``error``, a write refused for want of space, as one line naming the file, what
        was kept and how to go on (the checkpoint being written is removed, see
        :func:`rrcore.checkpoint.save_checkpoint`)."""
        if self.last_checkpoint is not None:
            kept = f"the last checkpoint, {self.last_checkpoint}, is intact; free space and continue with: "
            kept += self._continue_command(command)
        else:
            kept = "no checkpoint was saved; free space and start the run again"
        return DiskFullError(error.filename or self.run_dir, kept)

    def _say_how_it_ended(self, result: TrainResult, command: str | None) -> None:
        parts = [f"rr: {result.status} {self.experiment.run.name} at step {result.step} in {result.seconds:.1f}s"]
        parts += [f"{k} {result.eval_results[k]:.4f}" for k in self.run.headline if k in result.eval_results]
        print(" | ".join(parts), file=sys.stderr, flush=True)
        if result.stop_signal is not None:
            name = signal.Signals(result.stop_signal).name
            print(
                f"rr: interrupted by {name} at step {result.step} (checkpoint saved; the command is also "
                f"in {self.run_dir / 'resume.sh'}); continue with: {command}",
                file=sys.stderr,
                flush=True,
            )

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

    def _check_finite(self, first_bad_step: torch.Tensor) -> None:
        bad = int(first_bad_step.item())
        if self.world_size > 1:
            flag = torch.tensor([bad], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = int(flag.item())
        if bad >= 0:
            last = self.last_checkpoint
            where = f"the last good checkpoint is {last}" if last else "no checkpoint was saved before it"
            raise TrainingError(
                f"loss became NaN or infinite at step {bad}; stopped without saving; {where} "
                f"(resume with --resume latest and a lower train.lr or train.grad_clip)"
            )

    def _make_loggers(self) -> list[Any]:
        """The ``[[loggers]]``, built through the registry; ``jsonl`` first, always, once."""
        sections = [("jsonl", None)] + [(s.plugin, s.config) for s in self.experiment.loggers if s.plugin != "jsonl"]
        loggers = []
        try:
            for name, config in sections:
                loggers.append(build(self.registry.get("logger", name), config, self.context))
        except BaseException:
            for logger in loggers:  # e.g. jsonl's open file when wandb is missing
                logger.close()
            raise
        return loggers

    # -- evaluation --------------------------------------------------------------------

    def _evaluate_and_log(self, loggers: list[Any], progress: TrainingProgress | None) -> dict[str, float]:
        if self.eval_data is None or not self.run.evaluators:
            return {}
        train_seconds = self.clock.pause()
        results = self.evaluate()
        self._last_eval_step = self.step
        results["time/train_minutes"] = train_seconds / 60.0
        self.clock.resume()
        if self.rank == 0:
            for logger in loggers:
                logger.log(self.step, results)
            if progress:
                shown = ", ".join(
                    f"{k} {v:.4f}"
                    for k, v in sorted(results.items())
                    if not k.startswith("eval/") or k.endswith("accuracy")
                )
                progress.message(f"rr: eval at step {self.step}: {shown}")
        self.registry.hook.rr_on_eval_end(context=self.context, step=self.step, results=results)
        return results

    def evaluate(self, output_dir: Path | None = None) -> dict[str, float]:
        """Every evaluator over the test split (see :meth:`rrcore.run.Run.evaluate`), writing
        under ``eval/step_<step>`` of the run folder unless ``output_dir`` says otherwise."""
        return self.run.evaluate(output_dir or self.run_dir / "eval" / f"step_{self.step}")


def train(
    experiment: Experiment,
    *,
    registry: Registry | None = None,
    resume: str | None = None,
    run_dir: str | Path | None = None,
    overwrite: bool = False,
    command: str | None = None,
) -> TrainResult:
    """Train an experiment (the body of ``rr run``); ``overwrite`` moves a previous run in
    the run folder aside; ``command`` is how to continue the run (see :meth:`Trainer.train`)."""
    trainer = Trainer(experiment, registry=registry, resume=resume, run_dir=run_dir, overwrite=overwrite)
    try:
        result = trainer.train(command)
        # No rank exits before every rank has saved and rank 0 has said how the run ended:
        # under torchrun the first worker to exit gets the others terminated.
        distributed.barrier()
        return result
    except (OSError, RuntimeError) as error:  # torch.save reports ENOSPC as a RuntimeError
        full = disk_full_error(error)
        if full is None:
            raise
        raise trainer.disk_full(full, command) from None
    finally:
        distributed.teardown()


def default_eval_dir(source: Path) -> Path:
    """Where ``rr eval`` writes by default: ``eval/<checkpoint>-rr-eval`` in the run folder,
    or ``runs/<export folder>-rr-eval`` for an export (which may be shared or read-only)."""
    if is_export(source):
        return Path(RunConfig().out_dir) / f"{Path(source).resolve().name}-rr-eval"
    return Path(source).parent.parent / "eval" / f"{Path(source).name}-rr-eval"


def evaluate_checkpoint(
    experiment: Experiment,
    checkpoint: Path,
    output_dir: Path | None = None,
    registry: Registry | None = None,
    *,
    predictions: bool = False,
    trace: bool = False,
) -> dict[str, float] | None:
    """Evaluate a saved checkpoint or an export folder (the body of ``rr eval``); results on
    rank 0, else None. Builds no optimizers. ``predictions`` and ``trace``: see
    :meth:`rrcore.run.Run.evaluate`."""
    checkpoint = Path(checkpoint)
    run_dir = checkpoint.parent.parent
    try:
        if is_export(checkpoint):
            run = build_run(experiment, registry, optimizers=False)
            run.start_from(checkpoint)
        else:
            with hold_checkpoint(str(checkpoint), run_dir / "checkpoints") as path:
                run = build_run(experiment, registry, optimizers=False)
                run.restore(path)
        results = run.evaluate(output_dir or default_eval_dir(checkpoint), predictions=predictions, trace=trace)
        return results if run.layout.rank == 0 else None
    finally:
        distributed.teardown()
