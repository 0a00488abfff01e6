"""The conformance kit: what the core relies on from a model or task plugin, as checks for pytest.

A plugin's own test suite calls one function per component::

    from rrcore.testing import check_model, check_task

    def test_mymodel_meets_the_core_contract():
        check_model("mymodel", {"hidden_size": 16, "H_cycles": 2})

    def test_mytask_meets_the_core_contract(tmp_path):
        check_task("mytask", {"train_size": 40, "test_size": 10}, tmp_path, evaluators=["mytask"])

Every failed check raises :class:`AssertionError` naming the plugin, what is wrong and
what the core expects, so pytest shows one clear line. The checks use only the public
behaviour: the registry's factories, the protocols of :mod:`rrcore.protocols`, the core's
reader and the ``act`` loss head. They run on CPU in seconds (CUDA when ``device`` says so).

Model checks (:func:`check_model`): output keys and shapes, carry reset only where halted,
no gradient through the cycles that should run without it, determinism under a seed, a
state-dict round trip, and the whole ACT step under ``torch.compile(fullgraph=True)``
without graph breaks or recompilation. Task checks (:func:`check_task`): the data set
builds deterministically and reads back through :class:`rrcore.data.PuzzleDataset`, each
evaluator scores an oracle 100% and a wrong answer lower, and the data set's
:class:`~rrcore.protocols.PuzzleTask` (when one is registered) parses what it decodes, accepts
the labels, rejects a wrong answer and inverts its augmentations.

:func:`check_documented_keys` holds a plugin's README to its config classes (every key in
a table, with its default). :func:`train_briefly` trains a real experiment for a few steps
(learning tests).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch
from torch import Tensor, nn

from rrcore.data import DatasetMetadata, PuzzleDataset
from rrcore.model_kit import model_context
from rrcore.nn import IGNORE_LABEL
from rrcore.protocols import ModelContext
from rrcore.registry import Registry, Spec, get_registry

if TYPE_CHECKING:
    from rrcore.trainer import TrainResult


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


@attrs.define
class ModelCase:
    """A model plugin under test: how to build it and a batch for it.

    ``build(seed)`` makes a fresh model with ``torch.manual_seed(seed)`` on ``device``;
    ``batch(seed)`` a random training batch of ``batch_size`` rows shaped as the core's
    reader gives them.
    """

    name: str
    spec: Spec
    config: Any
    context: ModelContext
    device: torch.device
    registry: Registry

    def build(self, seed: int = 0, config: Any = None) -> nn.Module:
        torch.manual_seed(seed)
        model = self.spec.factory(self.config if config is None else config, self.context)
        if not isinstance(model, nn.Module):
            raise AssertionError(
                f"model {self.name!r}: the factory returned {type(model).__name__}; "
                f"the core expects a torch.nn.Module (rrcore.protocols.Model)"
            )
        return model.to(self.device)

    def batch(self, seed: int = 0) -> dict[str, Tensor]:
        metadata = self.context.metadata
        rows, length = self.context.batch_size, metadata.seq_len
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, metadata.vocab_size, (rows, length), generator=generator)
        labels[:, -1] = IGNORE_LABEL  # as padding positions are
        batch = {
            "inputs": torch.randint(0, metadata.vocab_size, (rows, length), generator=generator, dtype=torch.int32),
            "labels": labels,
            "puzzle_identifiers": torch.randint(
                0, metadata.num_puzzle_identifiers, (rows,), generator=generator, dtype=torch.int32
            ),
        }
        return {key: value.to(self.device) for key, value in batch.items()}

    def fail(self, problem: str, expected: str) -> AssertionError:
        return AssertionError(f"model {self.name!r}: {problem}; the core expects {expected}")

    @property
    def predicts_q_continue(self) -> bool:
        """The model's declaration (``predicts_q_continue``, read as experiment validation
        reads it: from the registered factory), False when it declares nothing, as
        ``[act] q_continue`` then defaults to false."""
        return bool(self.spec.predicts_q_continue)


def model_case(
    plugin: str,
    config: Mapping[str, Any] | Any = None,
    *,
    registry: Registry | None = None,
    vocab_size: int = 7,
    seq_len: int = 6,
    num_puzzle_identifiers: int = 3,
    batch_size: int = 4,
    device: str | torch.device | None = None,
) -> ModelCase:
    """The model ``plugin`` with ``config`` (a dict of ``[model]`` keys, or a config instance) for
    a synthetic data set of this shape. ``device``: default CUDA when present, else CPU."""
    registry = registry or get_registry()
    spec = registry.get("model", plugin)
    if config is None or isinstance(config, Mapping):
        config = spec.make_config(**dict(config or {}))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # as the trainer chooses
    context = model_context(
        vocab_size, seq_len, num_puzzle_identifiers=num_puzzle_identifiers, batch_size=batch_size, forward_dtype=dtype
    )
    return ModelCase(plugin, spec, config, context, device, registry)


def check_model(
    plugin: str,
    config: Mapping[str, Any] | Any = None,
    *,
    registry: Registry | None = None,
    no_grad_cycles: Sequence[str] | None = None,
    compile: bool = True,
    compile_backend: str = "aot_eager",
    device: str | torch.device | None = None,
) -> None:
    """Run every model check on ``plugin`` with ``config``; raise AssertionError on the first failure.

    ``no_grad_cycles``: config keys counting cycles of which all but the last must run
    without gradient (default: ``H_cycles`` when the config has it; ``()`` for a model
    without such cycles). ``compile_backend``: the ``torch.compile`` backend of the
    compile check (``"aot_eager"`` traces with Dynamo and AOTAutograd as training does,
    nested compile regions included, without generating code: seconds on CPU;
    ``"inductor"`` also generates kernels, as training on CUDA does; ``"eager"`` traces
    with Dynamo only and cannot run the nested compile regions of :func:`rrcore.nn.repeated_region`).
    """
    case = model_case(plugin, config, registry=registry, device=device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny shapes gain nothing from threads, and lose much on a busy machine
    try:
        _run_model_checks(case, no_grad_cycles, compile, compile_backend)
    finally:
        torch.set_num_threads(threads)


def _run_model_checks(
    case: ModelCase, no_grad_cycles: Sequence[str] | None, compile: bool, compile_backend: str
) -> None:
    check_outputs(case)
    check_carry_reset(case)
    keys = no_grad_cycles
    if keys is None:
        keys = [key for key in ("H_cycles",) if hasattr(case.config, key)]
    for key in keys:
        check_no_grad_cycles(case, key)
    check_determinism(case)
    check_state_dict_round_trip(case)
    if compile:
        check_compiles(case, backend=compile_backend)


def _fresh_step(model: nn.Module, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One step from rows just reset, as the core's first ACT step of a batch."""
    rows = batch["inputs"].shape[0]
    reset = torch.ones(rows, dtype=torch.bool, device=batch["inputs"].device)
    return model(model.reset_carry(reset, model.initial_carry(batch)), batch)


def _first_difference(first: Mapping[str, Tensor], second: Mapping[str, Tensor]) -> str | None:
    """The name of the first tensor that differs between two dicts (or the key sets), else None."""
    if set(first) != set(second):
        return f"keys {sorted(set(first) ^ set(second))}"
    for name in first:
        a, b = first[name], second[name]
        if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b):
            return repr(name)
    return None


def check_outputs(case: ModelCase) -> None:
    """``forward(carry, batch)`` returns ``(carry, outputs)``: the carry with the initial
    carry's keys, shapes and dtypes, detached; ``logits`` (B, L, V), ``q_halt_logits`` (B,)
    and, when the model declares ``predicts_q_continue``, ``q_continue_logits`` (B,), all
    finite; in training and eval mode."""
    model, batch = case.build(), case.batch()
    metadata, rows = case.context.metadata, case.context.batch_size
    expected = {
        "logits": (rows, metadata.seq_len, metadata.vocab_size),
        "q_halt_logits": (rows,),
        "q_continue_logits": (rows,),
    }
    required = {"logits", "q_halt_logits"} | ({"q_continue_logits"} if case.predicts_q_continue else set())
    initial = model.initial_carry(batch)
    for name, state in initial.items():
        if not isinstance(state, Tensor) or state.ndim == 0 or state.shape[0] != rows:
            raise case.fail(
                f"initial_carry gives {name!r} that is not a tensor of {rows} rows",
                "a dict of tensors with the batch size as first dimension",
            )
    for mode in ("train", "eval"):
        model.train(mode == "train")
        result = _fresh_step(model, batch)
        if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(r, dict) for r in result)):
            raise case.fail(f"forward returned {type(result).__name__}", "a pair (carry, outputs) of dicts")
        carry, outputs = result
        for name, shape in expected.items():
            if name not in outputs and name in required:
                because = " (the model declares predicts_q_continue = True)" if name == "q_continue_logits" else ""
                raise case.fail(f"outputs lack {name!r}{because} (has {sorted(outputs)})", f"{name!r} of shape {shape}")
            if name in outputs and tuple(outputs[name].shape) != shape:
                raise case.fail(
                    f"{name!r} has shape {tuple(outputs[name].shape)} in {mode} mode",
                    f"{shape} (batch, seq_len, vocab_size: the puzzle prefix removed)",
                )
            if name in outputs and not torch.isfinite(outputs[name].float()).all():
                raise case.fail(f"{name!r} is not finite in {mode} mode", "finite outputs from a fresh model")
        difference = _first_difference({k: v[:0] for k, v in initial.items()}, {k: v[:0] for k, v in carry.items()})
        if difference:
            raise case.fail(
                f"the carry forward returns differs from initial_carry's in {difference}",
                "the same keys, shapes and dtypes at every ACT step (fixed shapes for compilation)",
            )
        if any(state.requires_grad for state in carry.values()):
            raise case.fail(
                "the carry forward returns still requires grad", "it detached: gradients never cross ACT steps"
            )


def check_carry_reset(case: ModelCase) -> None:
    """``reset_carry(reset, carry)`` replaces exactly the rows where ``reset`` is True by the
    initial state and keeps every other row bit for bit."""
    model, batch = case.build(), case.batch()
    model.eval()
    rows = case.context.batch_size
    device = batch["inputs"].device
    everything = torch.ones(rows, dtype=torch.bool, device=device)
    fresh = model.reset_carry(everything, model.initial_carry(batch))
    with torch.no_grad():
        state, _ = model(fresh, batch)  # a carry that is no longer the initial state
    halted = torch.arange(rows, device=device) % 2 == 0
    mixed = model.reset_carry(halted, state)
    for name in state:
        if not torch.equal(mixed[name][~halted], state[name][~halted]):
            raise case.fail(
                f"reset_carry changed {name!r} in rows that did not halt",
                "rows not halted to keep their state exactly (reset only where halted, "
                "e.g. torch.where(reset[:, None, None], initial, carry))",
            )
        if not torch.equal(mixed[name][halted], fresh[name][halted]):
            raise case.fail(
                f"reset_carry left {name!r} of halted rows different from a fresh reset",
                "halted rows to start again from the initial state, whatever they held",
            )
    kept = model.reset_carry(~everything, state)
    if _first_difference(kept, state):
        raise case.fail("reset_carry with no row halted changed the carry", "the carry returned unchanged")


def _tensors_saved_for_backward(model: nn.Module, batch: dict[str, Tensor]) -> int:
    """How many tensors one training step keeps for the backward pass."""
    saved = 0

    def pack(tensor: Tensor) -> Tensor:
        nonlocal saved
        saved += 1
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        _fresh_step(model, batch)
    return saved


def check_no_grad_cycles(case: ModelCase, key: str = "H_cycles") -> None:
    """All but the last of the ``key`` cycles run without gradient: a training step keeps
    as many tensors for backward with ``key = n + 1`` as with ``key = n``."""
    if not hasattr(case.config, key):
        raise case.fail(
            f"its config has no key {key!r} to count cycles", "no_grad_cycles to name config keys of the model"
        )
    cycles = getattr(case.config, key)
    batch = case.batch()
    counts = [
        _tensors_saved_for_backward(case.build(config=attrs.evolve(case.config, **{key: n})), batch)
        for n in (cycles, cycles + 1)
    ]
    if counts[1] != counts[0]:
        raise case.fail(
            f"a training step keeps {counts[0]} tensors for backward with {key} = {cycles} and {counts[1]} "
            f"with {key} = {cycles + 1}, so gradients flow through every cycle",
            f"every {key} cycle but the last under torch.no_grad() (one-step gradient: memory does not "
            f"grow with {key}); pass no_grad_cycles=() for a model without such cycles",
        )


def check_determinism(case: ModelCase) -> None:
    """The same seed builds the same weights, and the same batch gives the same outputs."""
    batch = case.batch()
    first, second = case.build(seed=5), case.build(seed=5)
    difference = _first_difference(first.state_dict(), second.state_dict())
    if difference:
        raise case.fail(
            f"two builds under torch.manual_seed(5) differ in {difference}",
            "initialisation drawn from torch's global generator only",
        )
    results = []
    for model in (first, second):
        model.train()
        torch.manual_seed(6)
        carry, outputs = _fresh_step(model, batch)
        results.append({**{f"carry {k}": v for k, v in carry.items()}, **outputs})
    difference = _first_difference(*[{k: v.detach() for k, v in r.items()} for r in results])
    if difference:
        raise case.fail(
            f"two identical models gave different {difference} on the same batch and seed",
            "a deterministic forward under a seed",
        )


def check_state_dict_round_trip(case: ModelCase) -> None:
    """A model loaded from another's state dict (saved and read back without pickle) gives
    that model's outputs: nothing that matters lives outside the state dict."""
    batch = case.batch()
    source, target = case.build(seed=1), case.build(seed=2)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    try:
        state = torch.load(buffer, weights_only=True)
        target.load_state_dict(state)
    except Exception as error:
        raise case.fail(
            f"its state dict does not round-trip ({type(error).__name__}: {error})",
            "a state dict of tensors that load_state_dict(strict=True) accepts",
        ) from None
    source.eval()
    target.eval()
    with torch.no_grad():
        expected, loaded = ({**c, **o} for c, o in (_fresh_step(source, batch), _fresh_step(target, batch)))
    difference = _first_difference(expected, loaded)
    if difference:
        raise case.fail(
            f"a copy loaded from its state dict gives different {difference}",
            "every tensor that affects the output (weights, initial states) registered as a "
            "parameter or buffer, so checkpoints restore the model",
        )


def _counting_backend(name: str, graphs: list[Any]) -> Callable[..., Any]:
    """A ``torch.compile`` backend that records each graph Dynamo hands it, then compiles it
    with backend ``name``."""

    def backend(graph_module: Any, example_inputs: list[Any]) -> Callable[..., Any]:
        graphs.append(graph_module)
        from torch._dynamo import lookup_backend

        return lookup_backend(name)(graph_module, example_inputs)

    return backend


def _act_step(case: ModelCase, model: nn.Module) -> tuple[nn.Module, Any]:
    """The core's ACT step around ``model``, as :func:`rrcore.run.build_run` makes it: the ``act``
    loss head over :class:`rrcore.act.ACTModel` (halting, exploration, Q targets), Q-continue
    as the model declares, exploration drawn from a seeded generator for a global batch twice
    this one (this rank's rows the second half); also returns the ACT model (it draws exploration)."""
    from rrcore.act import ACTConfig, ACTModel

    generator = torch.Generator(device=case.device).manual_seed(0)
    config = ACTConfig(halt_max_steps=3, halt_exploration_prob=0.5, q_continue=case.predicts_q_continue)
    act = ACTModel(model, config, generator=generator, global_batch_size=2 * case.context.batch_size)
    loss_spec = case.registry.get("loss_head", "act")
    return loss_spec.factory(loss_spec.make_config(), act).to(case.device), act


def check_compiles(case: ModelCase, backend: str = "aot_eager", steps: int = 3) -> None:
    """``steps`` training ACT steps (carry reset, the model, halting, Q targets, loss) compile
    as one graph with ``torch.compile(fullgraph=True)``, with no recompilation, and backward
    runs; the first step's gradients are the eager step's (to 1e-3 relative in float32,
    3e-2 in half precision)."""
    import torch._dynamo

    model, batch = case.build(), case.batch()
    model.train()
    loss_head, act = _act_step(case, model)
    graphs: list[Any] = []
    torch._dynamo.reset()  # fresh caches: earlier models would count against the recompile limit
    step = torch.compile(loss_head, backend=_counting_backend(backend, graphs), fullgraph=True, dynamic=False)
    carry = loss_head.initial_carry(batch)
    rows = batch["inputs"].shape[0]
    explorations = [act.exploration(rows, case.device, row_offset=rows) for _ in range(steps)]
    eager = step_gradients(loss_head, loss_head, carry, batch, explorations[0])
    try:
        for index, exploration in enumerate(explorations):
            carry, loss, _, _, _ = step(carry, batch, exploration)
            loss.backward()
            carry = carry.detach()
            if index == 0:
                compiled = _gradients(loss_head)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise case.fail(
            f"the ACT step does not compile as one graph ({type(error).__name__}: {reason})",
            "a forward torch.compile traces whole: no .item(), no Python branch on a "
            "tensor's value, no data-dependent shapes, no imports inside forward",
        ) from None
    finally:
        torch._dynamo.reset()
    if len(graphs) != 1:
        raise case.fail(
            f"the ACT step compiled {len(graphs)} times in {steps} steps",
            "one compilation: fixed shapes and dtypes, no Python state that changes between steps",
        )
    _check_same_gradients(case, eager, compiled, backend)


def _gradients(module: nn.Module) -> dict[str, Tensor]:
    """Every gradient ``module`` holds: its parameters' and its buffers' that take one (the
    puzzle embedding's rows of the batch)."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return {name: t.grad.detach().clone() for name, t in tensors if t.grad is not None}


def _clear_gradients(module: nn.Module) -> None:
    for _, tensor in [*module.named_parameters(), *module.named_buffers()]:
        tensor.grad = None


def step_gradients(loss_head: nn.Module, step: Any, carry: Any, batch: Any, exploration: Any) -> dict[str, Tensor]:
    """The gradients of one ACT step of ``step`` (``loss_head`` itself, or it compiled) on
    ``carry`` and ``batch``, by parameter (and gradient-taking buffer) name; none are left behind."""
    _clear_gradients(loss_head)
    _, loss, _, _, _ = step(carry, batch, exploration)
    loss.backward()
    gradients = _gradients(loss_head)
    _clear_gradients(loss_head)
    return gradients


def relative_differences(got: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> dict[str, float]:
    """Per name: the norm of ``got - expected`` over the norm of ``expected`` (in float64)."""
    return {
        name: float((got[name].double() - want.double()).norm() / want.double().norm().clamp_min(1e-30))
        for name, want in expected.items()
    }


def _check_same_gradients(case: ModelCase, eager: dict[str, Tensor], compiled: dict[str, Tensor], backend: str) -> None:
    if compiled.keys() != eager.keys():
        raise case.fail(
            f"compiled with {backend!r}, the step trains {sorted(compiled)} instead of {sorted(eager)}",
            "the same parameters trained compiled as eager",
        )
    tolerance = 1e-3 if case.context.forward_dtype == torch.float32 else 3e-2
    for name, difference in relative_differences(compiled, eager).items():
        if difference > tolerance:
            raise case.fail(
                f"compiled with {backend!r}, the step's gradient of {name} is {difference:.2g} off the eager one "
                "(relative norm)",
                f"the eager step's gradients within {tolerance:g}",
            )


# ---------------------------------------------------------------------------------------
# Tasks: data sets and evaluators
# ---------------------------------------------------------------------------------------


def check_task(
    plugin: str,
    config: Mapping[str, Any] | Any,
    tmp_path: Path,
    *,
    evaluators: Sequence[str | tuple[str, Mapping[str, Any]]] = (),
    registry: Registry | None = None,
    deterministic: bool = True,
    puzzles: Sequence[str] | None = None,
) -> Path:
    """Run every task check on the data set ``plugin`` with ``config`` (a dict of ``[data]``
    keys or a config instance), building into ``tmp_path``; returns the built folder.

    ``evaluators``: names (or ``(name, config dict)`` pairs) of evaluators to score an
    oracle and a wrong answer on the test split. ``deterministic``: also build a second
    time and compare (builders must be deterministic). ``puzzles`` goes to
    :func:`check_puzzle_task` when a PuzzleTask is registered under ``plugin``.
    """
    registry = registry or get_registry()
    spec = registry.get("dataset", plugin)
    if config is None or isinstance(config, Mapping):
        config = spec.make_config(**dict(config or {}))
    folder = check_dataset(plugin, spec, config, tmp_path / "cache")
    if deterministic:
        again = Path(spec.factory(config, tmp_path / "cache-again"))
        for split in ("train", "test"):
            difference = _folder_difference(folder / split, again / split)
            if difference:
                raise AssertionError(
                    f"task {plugin!r}: two builds with the same config differ in {split}/"
                    f"{difference}; the core expects a deterministic builder (seeded)"
                )
    for entry in evaluators:
        name, values = (entry, {}) if isinstance(entry, str) else entry
        check_evaluator(name, values, folder / "test", tmp_path / "eval" / name, registry=registry)
    if plugin in registry.components["task"]:
        check_puzzle_task(plugin, config, folder / "test", registry=registry, puzzles=puzzles)
    return folder


def _folder_difference(first: Path, second: Path) -> str | None:
    """The first file whose bytes differ between two split folders (or a missing one)."""
    names = sorted({p.name for p in first.iterdir()} | {p.name for p in second.iterdir()})
    for name in names:
        a, b = first / name, second / name
        if not (a.is_file() and b.is_file()) or a.read_bytes() != b.read_bytes():
            return name
    return None


def check_dataset(plugin: str, spec: Spec, config: Any, cache_dir: Path) -> Path:
    """The builder returns a folder whose ``train/`` and ``test/`` splits the core's reader
    loads, with tokens, labels and puzzle identifiers in range and something to learn."""

    def fail(problem: str, expected: str) -> AssertionError:
        return AssertionError(f"task {plugin!r}: {problem}; the core expects {expected}")

    folder = spec.factory(config, cache_dir)
    if not isinstance(folder, (str, Path)) or not Path(folder).is_dir():
        raise fail(f"the builder returned {folder!r}", "the Path of the built folder")
    folder = Path(folder)
    splits = {}
    for split in ("train", "test"):
        try:
            splits[split] = PuzzleDataset(folder / split, global_batch_size=4)
        except Exception as error:  # the reader's message names the file
            raise fail(
                f"the core's reader cannot load {split}/ ({type(error).__name__}: {error})",
                "the format of rrcore.data (write it with SplitWriter and write_split)",
            ) from None
    train_meta, test_meta = splits["train"].metadata, splits["test"].metadata
    for key in ("vocab_size", "seq_len", "pad_id", "ignore_label_id"):
        if getattr(train_meta, key) != getattr(test_meta, key):
            raise fail(
                f"{key} is {getattr(train_meta, key)} in train/ but {getattr(test_meta, key)} in test/",
                "one value: the model is sized from train/ and evaluated on test/",
            )
    for split, data in splits.items():
        if data.num_examples == 0:
            raise fail(f"{split}/ has no examples", "examples in both splits")
        for batch in _first_batches(data, split):
            if (batch["puzzle_identifiers"] >= train_meta.num_puzzle_identifiers).any():
                raise fail(
                    f"{split}/ has puzzle identifiers >= train's num_puzzle_identifiers "
                    f"({train_meta.num_puzzle_identifiers})",
                    "identifiers the model's embedding has",
                )
            if not (batch["labels"] != IGNORE_LABEL).any():
                raise fail(
                    f"a batch of {split}/ has no scored label (all equal ignore_label_id)",
                    "labels to learn from in every split",
                )
    return folder


def _first_batches(data: PuzzleDataset, split: str, count: int = 2) -> Iterator[dict[str, Tensor]]:
    stream = (batch for _, batch in data.train_batches()) if split == "train" else data.eval_batches()
    for _, batch in zip(range(count), stream):
        yield batch


def _padded_batch_size(examples: int) -> int:
    """A batch size that leaves the last evaluation batch padded."""
    return next(size for size in (7, 5, 3, 11, 13, 17, 19, 23, examples + 1) if examples % size)


def _score(evaluator: Any, data: PuzzleDataset, answer: Callable[[dict[str, Tensor]], Tensor], output_dir: Path) -> Any:
    """One evaluation pass, writing under ``output_dir``, where the model's predictions are
    ``answer(batch)``; padding rows get noise."""
    metadata = data.metadata
    generator = torch.Generator().manual_seed(0)
    evaluator.begin_eval(output_dir)
    for batch in data.eval_batches():
        preds = answer(batch)
        noise = torch.randint(0, metadata.vocab_size, preds.shape, generator=generator)
        preds = torch.where(batch["valid"][:, None], preds, noise)
        logits = torch.nn.functional.one_hot(preds, metadata.vocab_size).float()
        rows = preds.shape[0]
        evaluator.update_batch(
            batch,
            {
                "preds": preds,
                "logits": logits,
                "q_halt_logits": torch.full((rows,), 5.0),
                "q_continue_logits": torch.full((rows,), -5.0),
            },
        )
    return evaluator.result()


def check_evaluator(
    name: str, config: Mapping[str, Any] | Any, split: Path, output_dir: Path, *, registry: Registry | None = None
) -> dict[str, float]:
    """The evaluator ``name`` scores the labels themselves (the oracle) 1.0 on each headline
    metric, ignoring padding rows, and a wrong answer (every scored token changed) lower on
    each; one instance serves both passes (``begin_eval`` resets it). Returns the oracle's metrics."""
    from rrcore.evaluation import EvalContext

    def fail(problem: str, expected: str) -> AssertionError:
        return AssertionError(f"evaluator {name!r}: {problem}; the core expects {expected}")

    spec = (registry or get_registry()).get("evaluator", name)
    if config is None or isinstance(config, Mapping):
        config = spec.make_config(**dict(config or {}))
    probe = PuzzleDataset(split, global_batch_size=1)
    data = PuzzleDataset(split, global_batch_size=_padded_batch_size(probe.num_examples))
    metadata = data.metadata
    evaluator = spec.factory(config, EvalContext(metadata=metadata, data_dir=split))
    missing = set(getattr(evaluator, "required_outputs", set())) - {
        "preds",
        "logits",
        "q_halt_logits",
        "q_continue_logits",
    }
    if missing:
        raise fail(f"it requires outputs {sorted(missing)}", "only preds, logits, q_halt_logits, q_continue_logits")
    blank = metadata.ignore_label_id if metadata.ignore_label_id is not None else metadata.pad_id

    def oracle(batch: dict[str, Tensor]) -> Tensor:
        return torch.where(batch["labels"] == IGNORE_LABEL, blank, batch["labels"])

    def wrong(batch: dict[str, Tensor]) -> Tensor:
        labels = batch["labels"]
        return torch.where(labels == IGNORE_LABEL, blank, (labels + 1) % metadata.vocab_size)

    best = _score(evaluator, data, oracle, output_dir / "oracle")
    if not isinstance(best, dict) or not all(isinstance(v, (int, float)) for v in best.values()):
        raise fail(f"result() returned {best!r} on rank 0", "a dict of float metrics")
    headline = list(getattr(evaluator, "headline_metrics", ()) or [k for k in best if k.endswith("accuracy")])
    absent = [metric for metric in headline if metric not in best]
    if not headline or absent:
        raise fail(
            f"headline metrics {absent or headline} are not among its results {sorted(best)}",
            "headline_metrics naming metrics result() returns",
        )
    short = {metric: best[metric] for metric in headline if abs(best[metric] - 1.0) > 1e-9}
    if short:
        raise fail(
            f"the labels themselves score {short} (padding rows hold noise)",
            "1.0 for a perfect answer, with rows where batch['valid'] is False ignored",
        )
    worse = _score(evaluator, data, wrong, output_dir / "wrong")
    not_lower = {metric: worse[metric] for metric in headline if not worse[metric] < best[metric]}
    if not_lower:
        raise fail(
            f"an answer with every scored token wrong still scores {not_lower}",
            "a wrong answer to score below a perfect one (and begin_eval to reset the sums)",
        )
    return best


def check_puzzle_task(
    plugin: str,
    data_config: Any,
    split: Path,
    *,
    registry: Registry | None = None,
    count: int = 8,
    puzzles: Sequence[str] | None = None,
) -> None:
    """The :class:`~rrcore.protocols.PuzzleTask` registered for the data set ``plugin``, on the
    first ``count`` examples of ``split``: ``decode`` gives one line and ``render`` text for
    inputs and labels; ``check`` rejects an empty answer (every scored token the blank one),
    does not reject the label and does not accept a wrong answer (every scored token
    changed), where ``ok`` None says it cannot tell (an ARC task without its test output);
    ``invert`` undoes ``augment`` (copy 0 the puzzle itself).

    ``parse``: by default it must read back what ``decode`` writes of an input row (tasks
    whose puzzle and answer lines look alike, as Sudoku's); ``puzzles``, texts as a user
    writes them, for a task whose ``parse`` reads another form (a scramble, a task JSON):
    each must parse to ``seq_len`` tokens in the vocabulary."""
    from rrcore.data import load_set

    def fail(problem: str, expected: str) -> AssertionError:
        return AssertionError(f"task {plugin!r} (PuzzleTask): {problem}; the core expects {expected}")

    spec = (registry or get_registry()).get("task", plugin)
    data = PuzzleDataset(split, global_batch_size=1)
    metadata = data.metadata
    task = spec.factory(data_config, metadata)
    arrays = load_set(split, metadata.sets[0])
    inputs, labels = np.asarray(arrays.inputs[:count]), np.asarray(arrays.labels[:count])
    for text in puzzles or ():
        _check_parse(task, text, metadata, fail)
    for row in range(len(inputs)):
        _check_decode(task, row, inputs[row], labels[row], fail, read_back=puzzles is None)
        _check_verdicts(task, row, inputs[row], labels[row], metadata, fail)
    if task.augmentations:
        _check_augment(task, inputs, metadata.seq_len, fail)


_Failure = Callable[[str, str], AssertionError]


def _parsed_tokens(task: Any, text: str) -> np.ndarray:
    from rrcore.protocols import Puzzle

    parsed = task.parse(text)
    return np.asarray(parsed.inputs if isinstance(parsed, Puzzle) else parsed)


def _check_parse(task: Any, text: str, metadata: DatasetMetadata, fail: _Failure) -> None:
    """``text``, as a user writes a puzzle, parses to ``seq_len`` tokens in the vocabulary."""
    tokens = _parsed_tokens(task, text)
    if tokens.shape != (metadata.seq_len,) or not ((tokens >= 0) & (tokens < metadata.vocab_size)).all():
        raise fail(
            f"parse({text!r}) gave tokens of shape {tokens.shape} (range {tokens.min()}..{tokens.max()})",
            f"({metadata.seq_len},) tokens below vocab_size {metadata.vocab_size}",
        )


def _check_decode(
    task: Any, row: int, inputs: np.ndarray, labels: np.ndarray, fail: _Failure, *, read_back: bool
) -> None:
    """``decode`` gives one line and ``render`` text; with ``read_back``, ``parse`` reads the
    decoded input line back to the same tokens."""
    for name, tokens in (("inputs", inputs), ("labels", labels)):
        line, shown = task.decode(tokens), task.render(tokens)
        if not (isinstance(line, str) and "\n" not in line and isinstance(shown, str)):
            raise fail(
                f"decode of test {name} {row} gave {line!r}, render {type(shown).__name__}",
                "decode: one line (predictions.jsonl); render: text",
            )
    if read_back and not np.array_equal(_parsed_tokens(task, task.decode(inputs)), inputs):
        raise fail(
            f"parse(decode(inputs)) of test example {row} is not its inputs",
            "parse to read back the puzzle line decode writes (or puzzles= to give texts in the form parse reads)",
        )


def _check_verdicts(
    task: Any, row: int, inputs: np.ndarray, labels: np.ndarray, metadata: DatasetMetadata, fail: _Failure
) -> None:
    """``check`` does not reject the label, rejects an empty answer (every scored token the
    blank one) and does not accept a wrong one (every scored token changed)."""
    ignore = metadata.ignore_label_id
    blank = np.where(labels == ignore, labels, metadata.pad_id if ignore is None else ignore)
    wrong = np.where(labels == ignore, labels, (labels + 1) % metadata.vocab_size)
    verdict = task.check(inputs, labels)
    if verdict.ok is False:
        raise fail(
            f"check rejects the label of test example {row}: {verdict.message}",
            "check to accept a right answer (or say None: cannot tell)",
        )
    verdict = task.check(inputs, blank)
    if verdict.ok is not False:
        raise fail(
            f"check does not reject an empty answer to test example {row} ({verdict.message})", "check to reject it"
        )
    verdict = task.check(inputs, wrong)
    if verdict.ok:
        raise fail(
            f"check accepts a wrong answer to test example {row} ({verdict.message})",
            "check to reject it (or say None: cannot tell)",
        )


def _check_augment(task: Any, inputs: np.ndarray, seq_len: int, fail: _Failure) -> None:
    """``augment`` keeps the puzzle as copy 0 and ``invert`` maps every copy back."""
    copies, state = task.augment(inputs, 3, np.random.default_rng(0))
    if np.shape(copies) != (len(inputs), 3, seq_len) or not np.array_equal(copies[:, 0], inputs):
        raise fail(
            f"augment(inputs, 3, rng) gave shape {np.shape(copies)} or a first copy that is not the input",
            f"({len(inputs)}, 3, {seq_len}) with copy 0 the puzzle itself",
        )
    if not np.array_equal(task.invert(copies, state), np.repeat(inputs[:, None], 3, axis=1)):
        raise fail(
            "invert(augment(inputs)) does not give the inputs back",
            "invert to map each copy back to the original puzzle's frame",
        )


# ---------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------


def dataset_digest(folder: str | Path) -> str:
    """A SHA-256 over every file of a built data set (names and contents), to pin a builder's
    output in a test: it changes when any byte of an array or of ``dataset.json`` does.
    ``build.json`` (the cache key, which holds input paths) is left out, and ``.npz`` files
    count by their arrays (zip members carry the time they were written)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != "build.json"):
        if path.name == "arc_build_summary.json":  # holds the build's duration
            continue
        digest.update(path.relative_to(folder).as_posix().encode())
        if path.suffix == ".npz":
            with np.load(path) as arrays:
                for name in sorted(arrays.files):
                    array = arrays[name]
                    digest.update(f"{name} {array.dtype} {array.shape}".encode())
                    digest.update(np.ascontiguousarray(array).tobytes())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Documentation
# ---------------------------------------------------------------------------------------


def documented_default(value: Any) -> str:
    """A config default as a README's key table writes it: as in TOML (``4.0``, ``1e-05``,
    ``"rope"``, ``true``, ``[1, 2]``), ``required`` for a key without default, ``unset`` for None."""
    if value is attrs.NOTHING:
        return "required"
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        value = value.factory()
    if value is None:
        return "unset"
    return json.dumps(list(value) if isinstance(value, tuple) else value, default=str)


def _table_rows(text: str) -> dict[str, list[dict[str, str]]]:
    """The rows of every Markdown table in ``text`` whose first cell is a `key`, by key, each
    row a dict from its table's lower-case column names to its cells (backticks removed)."""
    rows: dict[str, list[dict[str, str]]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))]
        if header is None:
            header = [cell.lower() for cell in cells]
        elif not set("".join(cells)) <= set("-: "):  # not the separator line
            key = re.fullmatch(r"`([^`]+)`", cells[0])
            if key:
                row = {name: cell.replace("`", "").strip() for name, cell in zip(header, cells)}
                rows.setdefault(key.group(1), []).append(row)
    return rows


def check_documented_keys(readme: str | Path, distribution: str, *, registry: Registry | None = None) -> None:
    """Every key of every config class that the plugins of ``distribution`` register (model,
    data set, evaluator, loss head, optimizer, logger) has a row in a Markdown table of
    ``readme`` whose first cell is the key in backticks, ``| `hidden_size` | int | 512 | ... |``;
    where that table has a ``default`` column, one of the key's rows shows the default as
    :func:`documented_default` writes it. So a README cannot drift from the code: a key added,
    renamed or given another default fails the plugin's tests until the README follows."""
    readme = Path(readme)
    registry = registry or get_registry()
    specs = [
        spec for kind in registry.components.values() for spec in kind.values() if spec.distribution == distribution
    ]
    if not specs:
        raise AssertionError(
            f"distribution {distribution!r} registers no rr component; the kit expects "
            f"the distribution name of an installed plugin (as rr list-plugins shows it)"
        )
    rows = _table_rows(readme.read_text(encoding="utf-8"))
    for spec in specs:
        if spec.config_class is None or not attrs.has(spec.config_class):
            continue
        where = f"{spec.kind.replace('_', ' ')} {spec.name!r} ({spec.config_class.__name__})"
        for field in attrs.fields(spec.config_class):
            if field.name not in rows:
                raise AssertionError(
                    f"{readme}: the key {field.name!r} of {where} has no table row; the kit "
                    f"expects a row | `{field.name}` | type | default | meaning |"
                )
            default = documented_default(field.default)
            shown = [row["default"] for row in rows[field.name] if "default" in row]
            if shown and default not in shown:
                raise AssertionError(
                    f"{readme}: the key {field.name!r} of {where} shows default "
                    f"{' or '.join(shown)}; the kit expects {default}, the config class's"
                )


# ---------------------------------------------------------------------------------------
# Learning
# ---------------------------------------------------------------------------------------


def train_briefly(
    experiment: str | Path, tmp_path: Path, overrides: list[str] = (), registry: Registry | None = None
) -> TrainResult:
    """Train an experiment file with ``overrides`` into ``tmp_path`` (run folder and data
    cache both there) on CPU and return the result; ``result.eval_results`` holds the
    evaluators' final scores keyed ``"<evaluator>/<metric>"``."""
    from rrcore.config import load_experiment
    from rrcore.trainer import train

    settings = [
        f"run.out_dir={str(tmp_path / 'runs')!r}",
        f"run.cache_dir={str(tmp_path / 'cache')!r}",
        "run.device='cpu'",
        "train.compile='off'",
        *overrides,
    ]
    return train(load_experiment(experiment, settings, registry))


__all__ = [
    "ModelCase",
    "check_carry_reset",
    "check_compiles",
    "check_dataset",
    "check_determinism",
    "check_documented_keys",
    "check_evaluator",
    "check_model",
    "check_no_grad_cycles",
    "check_outputs",
    "check_puzzle_task",
    "check_state_dict_round_trip",
    "check_task",
    "documented_default",
    "model_case",
    "train_briefly",
]
