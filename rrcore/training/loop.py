"""The training loop: :class:`Trainer` steps a built :class:`~rrcore.training.run.Run` in a
run folder, one process or many under ``torchrun``.

Each step is :func:`rrcore.training.step.train_step`; around it the loop logs every
``log_interval`` steps (metrics are read back from the device only then), evaluates and
checkpoints on a cadence, and stops cleanly on SIGTERM/SIGINT.
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

from rrcore.base import distributed
from rrcore.base.files import DiskFullError, disk_full_error
from rrcore.base.progress import TrainingProgress
from rrcore.contracts.config import dump_experiment
from rrcore.contracts.experiment import Experiment
from rrcore.contracts.protocols import RunContext
from rrcore.contracts.registry import Registry
from rrcore.data.loader import StreamPosition
from rrcore.model.metrics import reduce_metrics
from rrcore.training.build import build_run, join
from rrcore.training.checkpoint import resolve_checkpoint, save_checkpoint, state_of
from rrcore.training.clock import TrainingClock
from rrcore.training.evaluation import evaluate_run
from rrcore.training.guard import NonFiniteGuard
from rrcore.training.loggers import make_loggers
from rrcore.training.rank_state import Carries, RandomState
from rrcore.training.resume import resume
from rrcore.training.rundir import claim_on_rank0, default_run_dir, resume_command, write_run_folder
from rrcore.training.signals import StopSignals
from rrcore.training.step import train_step
from rrcore.training.weights import check_init_from


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


class Trainer:
    """Trains the :class:`~rrcore.training.run.Run` built from an experiment, in a run folder."""

    def __init__(
        self,
        experiment: Experiment,
        registry: Registry | None = None,
        resume: str | None = None,
        run_dir: str | Path | None = None,
        overwrite: bool = False,
    ) -> None:
        self._created = time.perf_counter()  # the training clock counts building the run too
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(experiment)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        init_from = None if resume else check_init_from(experiment)
        if resume:  # a missing checkpoint is refused before the run folder is touched
            resolve_checkpoint(resume, self.checkpoint_dir)
        # Claimed before any data is built, so refusing is quick; given back at the end of
        # train(), else when the trainer is dropped (or the process ends).
        lock = claim_on_rank0(self.run_dir, join(experiment).rank, resume=bool(resume), overwrite=overwrite)
        self._release_run_dir = weakref.finalize(self, lock.release) if lock is not None else (lambda: None)
        self.run = run = build_run(experiment, registry)
        if init_from is not None:
            run.start_from(init_from, f"{experiment.source}: train.init_from = {experiment.train.init_from!r}")
        self.eval_every = self._interval_steps(experiment.train.eval_interval)
        self.checkpoint_every = (
            experiment.train.checkpoint_every_steps
            or self._interval_steps(experiment.train.checkpoint_interval)
            or self.eval_every
        )
        self.step = 0
        self.position = StreamPosition()
        self.carries = Carries(run.device)
        self.random_state = RandomState(run.act_model.exploration_generator, run.device, run.augmentation_generator)
        self.last_checkpoint: Path | None = None
        self.stop = StopSignals()
        self._last_eval_step: int | None = None
        train_seconds = self._restore(resume) if resume else 0.0
        self.clock = TrainingClock(
            run.device, experiment.train.time_budget_minutes, experiment.train.eval_at_minutes, train_seconds
        )
        layout = run.layout
        self.context = RunContext(
            experiment,
            self.run_dir,
            layout.rank,
            layout.world_size,
            run.device,
            run.registry,
            run.metadata,
            run.total_steps,
            self.step,
        )

    def _interval_steps(self, epochs: float) -> int:
        return max(1, round(epochs * self.run.train_data.steps_per_epoch)) if epochs > 0 else 0

    # -- checkpoints -------------------------------------------------------------------

    def _rank_parts(self) -> dict[str, Any]:
        return {"rng": self.random_state, "carries": self.carries}

    def _progress(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "position": [self.position.epoch, self.position.offset],
            "world_size": self.run.layout.world_size,
            "grad_accum_steps": self.run.layout.grad_accum_steps,
            "total_steps": self.run.total_steps,
            "train_seconds": self.clock.seconds,
        }

    def save(self) -> Path:
        self.last_checkpoint = save_checkpoint(
            self.checkpoint_dir,
            self.step,
            state_of(self.run.checkpoint_parts()),
            state_of(self._rank_parts()),
            self._progress(),
            dump_experiment(self.run.experiment),
            rank=self.run.layout.rank,
            keep=self.run.experiment.train.keep_checkpoints,
        )
        return self.last_checkpoint

    def _restore(self, reference: str) -> float:
        """Load checkpoint ``reference`` (:func:`rrcore.training.resume.resume`); returns the
        training seconds it had run."""
        path = resolve_checkpoint(reference, self.checkpoint_dir)
        progress = resume(self.run, path, self._rank_parts())
        self.step = progress["step"]
        self.position = StreamPosition(*progress["position"])
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
        run, rank0 = self.run, self.run.layout.rank == 0
        command = self._continue_command(command)
        if rank0:
            write_run_folder(self.run_dir, run.experiment, run.registry, run.metadata, command)
        loggers = make_loggers(run.experiment, run.registry, self.context) if rank0 else []
        budget_left = (
            (lambda: self.clock.budget_seconds - self.clock.seconds)
            if run.experiment.train.time_budget_minutes
            else None
        )
        progress = TrainingProgress(run.total_steps, start_step=self.step, budget_left=budget_left) if rank0 else None
        self.stop.install()
        run.registry.hook.rr_on_train_start(context=self.context)
        try:
            status, train_metrics, eval_results = self._loop(loggers, progress)
        finally:
            self.stop.restore()
            run.registry.hook.rr_on_train_end(context=self.context, step=self.step)
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
            self.stop.signum if status == "interrupted" else None,
        )
        if rank0:
            self._say_how_it_ended(result, command)
        return result

    def _loop(
        self,
        loggers: list[Any],
        progress: TrainingProgress | None,
    ) -> tuple[str, dict[str, float], dict[str, float]]:
        """Steps until the end or a stop signal, then the final evaluation and checkpoint;
        returns (status, last training metrics, last evaluation results)."""
        run = self.run
        train = run.experiment.train
        metric_sums: dict[str, torch.Tensor] = {}
        window_steps, train_metrics, eval_results, status = 0, {}, {}, "finished"
        guard = NonFiniteGuard(run.device)
        batches = run.train_data.train_batches(self.position)
        self.clock.start(at=self._created)
        while self.step < run.total_steps:
            run.use_phase(self.step)
            self.position, batch = next(batches)
            loss = self.train_step(batch, metric_sums)
            guard.watch(loss, self.step)
            self.context.step = self.step
            window_steps += 1
            log_now = self.step % train.log_interval == 0 or self.step == run.total_steps
            if log_now:
                guard.check(run.layout.world_size, self.last_checkpoint)
                train_metrics = self._log_training(metric_sums, window_steps, loggers, progress)
                metric_sums, window_steps = {}, 0
            elif progress:  # the count moves every step; the numbers, read from the device, at log steps
                progress.advance(self.step)
            run.registry.hook.rr_on_step_end(
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
                guard.check(run.layout.world_size, self.last_checkpoint)
                self.save()
            if self.stop.requested(run.layout.world_size, run.device, sync=log_now):
                status = "interrupted"
                break
        guard.check(run.layout.world_size, self.last_checkpoint)
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
        if self.run.layout.world_size == 1:
            return question()
        if not log_now:
            return False
        return bool(distributed.from_rank0(question() if self.run.layout.rank == 0 else None))

    def _due(self, every: int) -> bool:
        """Whether a periodic evaluation or save falls on this step (the last step has its own)."""
        return bool(every) and self.step % every == 0 and self.step < self.run.total_steps

    def _log_training(
        self, metric_sums: dict[str, torch.Tensor], steps: int, loggers: list[Any], progress: TrainingProgress | None
    ) -> dict[str, float]:
        run = self.run
        metrics = reduce_metrics(
            metric_sums,
            run.loss_head.metric_reductions,
            steps,
            run.experiment.train.global_batch_size,
            "train",
            run.layout.world_size,
        )
        metrics.update(run.optimizers.lr_metrics())  # train/lr, and train/lr_NAME per group
        if run.layout.rank == 0:
            progress.update(self.step, metrics)
            for logger in loggers:
                logger.log(self.step, metrics)
        return metrics

    def _continue_command(self, command: str | None) -> str:
        config = str(self.run_dir / "config.toml")
        return command or resume_command(config, [], self.run_dir, self.run.layout.world_size)

    def disk_full(self, error: OSError, command: str | None = None) -> DiskFullError:
        """``error``, a write refused for want of space, as one line naming the file, what
        was kept and how to go on (the checkpoint being written is removed, see
        :func:`rrcore.training.checkpoint.save_checkpoint`)."""
        if self.last_checkpoint is not None:
            kept = f"the last checkpoint, {self.last_checkpoint}, is intact; free space and continue with: "
            kept += self._continue_command(command)
        else:
            kept = "no checkpoint was saved; free space and start the run again"
        return DiskFullError(error.filename or self.run_dir, kept)

    def _say_how_it_ended(self, result: TrainResult, command: str | None) -> None:
        parts = [f"rr: {result.status} {self.run.experiment.run.name} at step {result.step} in {result.seconds:.1f}s"]
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

    # -- evaluation --------------------------------------------------------------------

    def _evaluate_and_log(self, loggers: list[Any], progress: TrainingProgress | None) -> dict[str, float]:
        if self.run.eval_data is None or not self.run.evaluators:
            return {}
        train_seconds = self.clock.pause()
        results = self.evaluate()
        self._last_eval_step = self.step
        results["time/train_minutes"] = train_seconds / 60.0
        self.clock.resume()
        if self.run.layout.rank == 0:
            for logger in loggers:
                logger.log(self.step, results)
            if progress:
                shown = ", ".join(
                    f"{k} {v:.4f}"
                    for k, v in sorted(results.items())
                    if not k.startswith("eval/") or k.endswith("accuracy")
                )
                progress.message(f"rr: eval at step {self.step}: {shown}")
        self.run.registry.hook.rr_on_eval_end(context=self.context, step=self.step, results=results)
        return results

    def evaluate(self, output_dir: Path | None = None) -> dict[str, float]:
        """Every evaluator over the test split (:func:`~rrcore.training.evaluation.evaluate_run`), writing
        under ``eval/step_<step>`` of the run folder unless ``output_dir`` says otherwise."""
        return evaluate_run(self.run, output_dir or self.run_dir / "eval" / f"step_{self.step}")


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
