"""The model checks: outputs, carry reset, no-gradient cycles, determinism, state-dict round trip."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from rrcore.contracts.registry import Registry
from rrcore.testing.case import ModelCase, model_case
from rrcore.testing.compiled import check_compiles


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
    with Dynamo only and cannot run the nested compile regions of :func:`rrcore.model.layers.repeated_region`).
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
