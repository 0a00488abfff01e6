"""The optimizers of a run stepped as one (:class:`Optimizers`): the model's optimizer,
those of the ``[optimizer.groups]`` (:func:`assign_parameters`) and the puzzle
embedding's sign-SGD."""

from __future__ import annotations

import fnmatch
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from rrcore.contracts.experiment import HIDDEN_MATRICES, MAIN_PART, PUZZLE_EMB_PART
from rrcore.model.layers import CastedEmbedding
from rrcore.model.puzzle_io import ReasoningHeads
from rrcore.training.schedule import cosine_with_warmup


def hidden_matrices(model: nn.Module) -> list[str]:
    """``params = "hidden_matrices"``: the names of ``model``'s trainable 2-D parameters,
    except those of embeddings (:class:`rrcore.model.layers.CastedEmbedding` — token and learned
    position embeddings — and ``torch.nn.Embedding``) and of the output heads
    (:class:`rrcore.model.puzzle_io.ReasoningHeads`: ``lm_head``, ``q_head``). Chosen by module type, so
    every architecture built from rrcore's layers gets its blocks' weight matrices (the
    sparse puzzle embedding holds buffers, never parameters)."""
    outside = {
        id(p)
        for m in model.modules()
        if isinstance(m, CastedEmbedding | nn.Embedding | ReasoningHeads)
        for p in m.parameters()
    }
    return [name for name, p in model.named_parameters() if p.requires_grad and p.ndim == 2 and id(p) not in outside]


def assign_parameters(
    model: nn.Module, named: list[tuple[str, Tensor]], groups: dict[str, list[str]]
) -> dict[str, list[tuple[str, Tensor]]]:
    """Split the trainable parameters ``named`` (``(name, tensor)`` pairs, in order) among the
    ``[optimizer.groups]``: ``groups`` maps each group name to its ``params`` entries.

    Returns ``{MAIN_PART: unclaimed, group: claimed, ...}``, each list in the order of
    ``named`` (with no groups: ``named`` itself, the run as before groups existed).
    Entries match the names in ``model`` (those of its state dict); a parameter outside
    ``model`` is matched by its name in ``named``. Raises ``ValueError`` naming
    ``optimizer.groups.NAME.params`` for an entry that matches no parameter, a parameter
    two groups claim, or groups that leave ``[optimizer]`` nothing.
    """
    if not groups:
        return {MAIN_PART: list(named)}
    model_names = {id(p): name for name, p in model.named_parameters()}
    names = [model_names.get(id(p), name) for name, p in named]
    hidden = set(hidden_matrices(model))
    owner: dict[int, str] = {}
    for group, entries in groups.items():
        for entry in entries:
            matched = [
                i
                for i, name in enumerate(names)
                if (name in hidden if entry == HIDDEN_MATRICES else fnmatch.fnmatchcase(name, entry))
            ]
            if not matched:
                examples = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                raise ValueError(
                    f"optimizer.groups.{group}.params: {entry!r} matches no trainable parameter "
                    f"(their names: {examples})"
                )
            for i in matched:
                if owner.setdefault(i, group) != group:
                    raise ValueError(
                        f"optimizer.groups.{group}.params: {names[i]} is also claimed by "
                        f"optimizer.groups.{owner[i]}; a parameter belongs to one group"
                    )
    if len(owner) == len(named):
        raise ValueError(
            f"optimizer.groups.{next(iter(groups))}.params: the groups claim every parameter, "
            "leaving [optimizer] none; narrow a group's params"
        )
    parts = {MAIN_PART: [pair for i, pair in enumerate(named) if i not in owner]}
    for group in groups:
        parts[group] = [pair for i, pair in enumerate(named) if owner.get(i) == group]
    return parts


@attrs.define
class LRSchedule:
    """``[train]``'s schedule: linear warmup, then cosine decay to ``min_ratio`` of each base rate."""

    warmup_steps: int
    total_steps: int
    min_ratio: float = 1.0

    def __call__(self, step: int, base_lr: float) -> float:
        return cosine_with_warmup(step, base_lr, self.warmup_steps, self.total_steps, self.min_ratio)


def _group_sizes(state: dict[str, Any]) -> list[int]:
    """Tensors per parameter group in one optimizer's state dict; a wrapper's state that holds
    its inner optimizers' states instead (rr-urm's ``muon``: ``{"muon": ..., "adamw": ...}``)
    counts theirs, in order."""
    if "param_groups" in state:
        return [len(group["params"]) for group in state["param_groups"]]
    return [size for inner in state.values() if isinstance(inner, dict) for size in _group_sizes(inner)]


class Optimizers:
    """Every optimizer of a run, by name, with its base learning rate: ``model`` (the
    ``[optimizer]`` plugin, over the trainable parameters no group claims), one per
    ``[optimizer.groups.NAME]`` under its ``NAME`` and, when the model has sparse puzzle
    embeddings, ``puzzle_emb`` (:class:`rrcore.training.sign_sgd.SignSGD`).

    One :meth:`step` clips the gradients (all ``parameters`` together; the caller sums them
    over ranks first), sets every learning rate for the step (one schedule, each part's own
    base rate) and steps every optimizer; the checkpoint saves its :meth:`state_dict`, by part name.
    """

    def __init__(
        self,
        parts: dict[str, tuple[torch.optim.Optimizer, float]],
        parameters: list[Tensor],
        schedule: LRSchedule,
        grad_clip: float = 0.0,
    ) -> None:
        self.parts = parts
        self.parameters = parameters
        self.schedule = schedule
        self.grad_clip = grad_clip

    @property
    def lr(self) -> float:
        """The main optimizer's current learning rate (logged as ``train/lr``)."""
        return self.parts[MAIN_PART][0].param_groups[0]["lr"]

    def lr_metrics(self) -> dict[str, float]:
        """The learning rates to log: ``train/lr`` (the ``[optimizer]`` plugin's) and
        ``train/lr_NAME`` for each ``[optimizer.groups.NAME]``."""
        metrics = {"train/lr": self.lr}
        for name, (optimizer, _) in self.parts.items():
            if name not in (MAIN_PART, PUZZLE_EMB_PART):
                metrics[f"train/lr_{name}"] = optimizer.param_groups[0]["lr"]
        return metrics

    def accumulate(self) -> None:
        """Between gradient-accumulation micro-batches: keep the sparse gradients, whose
        buffers the next micro-batch refills with other rows."""
        if PUZZLE_EMB_PART in self.parts:
            self.parts[PUZZLE_EMB_PART][0].accumulate()

    def step(self, step: int) -> None:
        """Apply the gradients of optimizer step ``step`` (0-based), summed over ranks, and clear them."""
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip, foreach=True)
        for optimizer, base_lr in self.parts.values():
            lr = self.schedule(step, base_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
        for optimizer, _ in self.parts.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def group_sizes(self, state: dict[str, Any] | None = None) -> dict[str, list[int]]:
        """Tensors per parameter group of each optimizer, here or in a saved ``state``."""
        state = self.state_dict() if state is None else self._named(state)
        return {name: _group_sizes(part) for name, part in state.items()}

    def state_dict(self) -> dict[str, Any]:
        return {name: optimizer.state_dict() for name, (optimizer, _) in self.parts.items()}

    def load_state_dict(self, state: dict[str, Any] | list[Any]) -> None:
        state = self._named(state)
        missing = sorted(set(self.parts) - set(state))
        if missing:
            raise KeyError(f"no state for optimizer {missing[0]!r} (saved: {', '.join(sorted(state)) or 'none'})")
        for name, (optimizer, _) in self.parts.items():
            optimizer.load_state_dict(state[name])

    def _named(self, state: dict[str, Any] | list[Any]) -> dict[str, Any]:
        # Checkpoints before named parts saved a list: the model's optimizer, then sign-SGD.
        return dict(zip(self.parts, state)) if isinstance(state, list) else state
