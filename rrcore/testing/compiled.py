"""The compile check: the whole ACT step under ``torch.compile(fullgraph=True)``, with eager gradients."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rrcore.contracts.experiment import ACTConfig
from rrcore.model.act import ACTModel

if TYPE_CHECKING:
    from rrcore.testing.case import ModelCase


def _counting_backend(name: str, graphs: list[Any]) -> Callable[..., Any]:
    """A ``torch.compile`` backend that records each graph Dynamo hands it, then compiles it
    with backend ``name``."""

    def backend(graph_module: Any, example_inputs: list[Any]) -> Callable[..., Any]:
        graphs.append(graph_module)
        from torch._dynamo import lookup_backend

        return lookup_backend(name)(graph_module, example_inputs)

    return backend


def _act_step(case: ModelCase, model: nn.Module) -> tuple[nn.Module, Any]:
    """The core's ACT step around ``model``, as :func:`rrcore.training.build.build_run` makes it: the ``act``
    loss head over :class:`rrcore.model.act.ACTModel` (halting, exploration, Q targets), Q-continue
    as the model declares, exploration drawn from a seeded generator for a global batch twice
    this one (this rank's rows the second half); also returns the ACT model (it draws exploration)."""
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
            result = step(carry, batch, exploration)
            result.loss.backward()
            carry = result.carry.detach()
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
    loss = step(carry, batch, exploration).loss
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
