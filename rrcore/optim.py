"""The optimizers of a run: rr's AdamAtan2, and :class:`Optimizers`, which steps the
model's optimizer, those of the ``[optimizer.groups]`` (:func:`assign_parameters`) and
the puzzle embedding's sign-SGD as one.

AdamAtan2 is the papers' optimizer, its update compiled on CUDA.

The update is the original CUDA AdamATan2's (Everett et al., "Scaling Exponents
Across Parameterizations and Optimizers", 2024), with adam-atan2-pytorch's optional
scales ``a`` and ``b``::

    m = lerp(m, g, 1 - beta1);  v = lerp(v, g * g, 1 - beta2)
    p *= 1 - lr * weight_decay
    p -= lr * a * atan2(m / (1 - beta1**t), b * sqrt(v / (1 - beta2**t)))

Per-parameter state is ``steps`` (an int), ``exp_avg`` and ``exp_avg_sq``, the
layout of adam-atan2-pytorch 0.4.1, so checkpoints of either load in the other.

On CPU the update runs eagerly with Python scalars, operation for operation as
adam-atan2-pytorch (the pinned CPU trajectory depends on it). On CUDA the whole
update of a parameter group is one ``torch.compile``d kernel over flat tensors: the
moments live in two flat buffers (each parameter's state a view into them), parameters
and gradients are gathered with one ``cat`` each and written back with one
``_foreach_copy_``. The learning rate and bias corrections live in a small device
tensor (filled each step, so no recompilation when the schedule moves them and no host
synchronisation). Compiled over lists of parameters, as before, inductor generated a
combined kernel with a part per parameter, slow to build: the flat update took HRM's
first step with an empty compile cache from 44.0 to 40.8 s on an H200.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from rrcore.distributed import all_reduce_gradients
from rrcore.nn import CastedEmbedding, ReasoningHeads
from rrcore.schedule import cosine_with_warmup
from rrcore.validators import RATE_MAX, Each, OutOfRange, in_range


def _update_eager(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    a: float,
    b: float,
    steps: int,
) -> None:
    bias_correct1 = 1.0 - beta1**steps
    bias_correct2 = 1.0 - beta2**steps
    for p, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs):
        exp_avg.lerp_(grad, 1.0 - beta1)
        exp_avg_sq.lerp_(grad * grad, 1.0 - beta2)
        den = exp_avg_sq.mul(b * b / bias_correct2).sqrt_()
        update = exp_avg.mul(1.0 / bias_correct1).atan2_(den)
        if weight_decay > 0:
            p.mul_(1.0 - lr * weight_decay)
        p.add_(update, alpha=-lr * a)


def _update_flat(
    params: Tensor,
    grads: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    scalars: Tensor,
    *,
    beta1: float,
    beta2: float,
    weight_decay: float,
    a: float,
    b: float,
) -> None:
    """The update of one parameter group laid end to end in flat tensors (one fused
    kernel once compiled). ``scalars`` = (lr, 1 / bias_correct1, b**2 / bias_correct2)."""
    lr, inv_bias1, den_scale = scalars[0], scalars[1], scalars[2]
    exp_avg.lerp_(grads, 1.0 - beta1)
    exp_avg_sq.lerp_(grads * grads, 1.0 - beta2)
    update = torch.atan2(exp_avg * inv_bias1, (exp_avg_sq * den_scale).sqrt())
    if weight_decay > 0:
        params.mul_(1.0 - lr * weight_decay)
    params.sub_(update * (lr * a))


class _FlatState:
    """``exp_avg`` and ``exp_avg_sq`` of a list of parameters as two flat buffers, each
    parameter's state tensors views into them, so the compiled update sees four flat
    tensors instead of four lists: one small graph to compile and one kernel, however
    many parameters the model has."""

    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.numels = [s["exp_avg"].numel() for s in states]
        for key in ("exp_avg", "exp_avg_sq"):
            flat = torch.cat([s[key].reshape(-1) for s in states])
            for state, view in zip(states, flat.split(self.numels)):
                state[key] = view.view_as(state[key])
            setattr(self, key, flat)
        self.states = states
        self.views = [(s["exp_avg"], s["exp_avg_sq"]) for s in states]

    def holds(self, states: list[dict[str, Any]] | None = None) -> bool:
        """Whether ``states`` (default: the ones it was built from) are still this buffer's
        views: a loaded checkpoint, or a later buffer over some of the same parameters,
        replaces them."""
        states = self.states if states is None else states
        return len(states) == len(self.views) and all(
            s["exp_avg"] is m and s["exp_avg_sq"] is v for s, (m, v) in zip(states, self.views)
        )


class AdamAtan2(torch.optim.Optimizer):
    """Adam with ``atan2`` in place of the epsilon division (the HRM/TRM/URM optimizer).

    ``fused``: compile the update on CUDA (``None``: when the parameters are on CUDA).
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        a: float = 1.0,
        b: float = 1.0,
        fused: bool | None = None,
    ) -> None:
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, a=a, b=b))
        self.fused = fused
        self._compiled: Callable[..., None] | None = None
        self._scalars: dict[torch.device, Tensor] = {}
        self._flat: dict[tuple[int, ...], _FlatState] = {}

    def _use_fused(self, device: torch.device) -> bool:
        return self.fused if self.fused is not None else device.type == "cuda"

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state["steps"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["steps"] += 1
            # Parameters that joined late (grad None earlier) have fewer steps: update
            # each step count (and dtype, for the flat buffers) together.
            parts: dict[tuple[int, torch.dtype], list[int]] = {}
            for i, (p, state) in enumerate(zip(params, states)):
                parts.setdefault((state["steps"], p.dtype), []).append(i)
            for (steps, _), members in parts.items():
                self._update([params[i] for i in members], [states[i] for i in members], group, steps)
        return loss

    def _update(self, params: list[Tensor], states: list[dict[str, Any]], group: dict[str, Any], steps: int) -> None:
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params]
        options = dict(beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], a=group["a"], b=group["b"])
        device = params[0].device
        if not self._use_fused(device):
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            _update_eager(params, grads, exp_avgs, exp_avg_sqs, lr=group["lr"], steps=steps, **options)
            return
        scalars = self._scalars.get(device)
        if scalars is None:
            scalars = self._scalars[device] = torch.zeros(3, dtype=torch.float32, device=device)
        # fill_ takes the value as a kernel argument: no copy, no synchronisation.
        scalars[0].fill_(group["lr"])
        scalars[1].fill_(1.0 / (1.0 - beta1**steps))
        scalars[2].fill_(group["b"] ** 2 / (1.0 - beta2**steps))
        key = tuple(map(id, params))
        flat = self._flat.get(key)
        if flat is None or not flat.holds(states):
            flat = self._flat[key] = _FlatState(states)
            # When the set of parameters with gradients changes, states move to new buffers:
            # keep only the buffers that still hold theirs (a dropped one is rebuilt if needed).
            self._flat = {k: f for k, f in self._flat.items() if f.holds()}
        if self._compiled is None:
            self._compiled = torch.compile(_update_flat, dynamic=False)
        flat_params = torch.cat([p.detach().reshape(-1) for p in params])
        flat_grads = torch.cat([g.reshape(-1) for g in grads])
        self._compiled(flat_params, flat_grads, flat.exp_avg, flat.exp_avg_sq, scalars, **options)
        updated = [t.view_as(p) for t, p in zip(flat_params.split(flat.numels), params)]
        torch._foreach_copy_([p.detach() for p in params], updated)


# ---------------------------------------------------------------------------------------
# The optimizers of a run, stepped as one
# ---------------------------------------------------------------------------------------


@attrs.define
class PuzzleEmbOptimizerConfig:
    """``[optimizer.puzzle_emb]``: sign-SGD for the sparse puzzle-embedding tables
    (:class:`rrcore.nn.SparsePuzzleEmbedding`), which the main optimizer never sees.

    ``lr`` follows the same warmup and decay as ``train.lr``; ``weight_decay`` is
    decoupled and applies only to the rows in the batch.
    """

    lr: float = attrs.field(default=1e-2, validator=in_range(0, RATE_MAX))
    weight_decay: float = attrs.field(default=0.1, validator=in_range(0, RATE_MAX))


MAIN_PART = "model"
"""The name of the ``[optimizer]`` plugin's part of :class:`Optimizers` (and of its checkpoint state)."""
PUZZLE_EMB_PART = "puzzle_emb"
"""The name of the sparse puzzle embedding's sign-SGD part."""
HIDDEN_MATRICES = "hidden_matrices"
"""The ``params`` entry that names the model's hidden weight matrices (:func:`hidden_matrices`)."""


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

    ``plugin`` (handled by :func:`rrcore.config.resolve`): the group's optimizer (default:
    ``[optimizer]``'s, with its keys, which the group's override); every key of the table
    not listed here is that plugin's. ``params``: the trainable parameters the group takes,
    a list whose entries are ``"hidden_matrices"`` (:func:`hidden_matrices`) or glob
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


def hidden_matrices(model: nn.Module) -> list[str]:
    """``params = "hidden_matrices"``: the names of ``model``'s trainable 2-D parameters,
    except those of embeddings (:class:`rrcore.nn.CastedEmbedding` — token and learned
    position embeddings — and ``torch.nn.Embedding``) and of the output heads
    (:class:`rrcore.nn.ReasoningHeads`: ``lm_head``, ``q_head``). Chosen by module type, so
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
    embeddings, ``puzzle_emb`` (:class:`rrcore.nn.SignSGD`).

    One :meth:`step` sums gradients over ranks, clips them (all ``parameters`` together),
    sets every learning rate for the step (one schedule, each part's own base rate) and
    steps every optimizer; the checkpoint saves its :meth:`state_dict`, by part name.
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
        """Apply the gradients of optimizer step ``step`` (0-based) and clear them."""
        all_reduce_gradients(self.parameters)
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
