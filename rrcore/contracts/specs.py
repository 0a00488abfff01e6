"""What a plugin registers: :class:`Spec` descriptors, one class per kind of component
(:func:`rrcore.contracts.registry.build` makes a component from its spec)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value or not value.replace("_", "a").replace("-", "a").isalnum():
        raise ValueError(f"{attribute.name} must be a non-empty name of letters, digits, '_' or '-', got {value!r}")


def _check_config_class(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not attrs.has(value):
        raise TypeError(f"config_class of {instance.name!r} must be an attrs class or None, got {value!r}")


@attrs.frozen
class Spec:
    """What a plugin registers: a named factory with its config class.

    ``distribution`` and ``version`` are filled in by the registry from the
    installed distribution that provided the plugin module; plugins leave them empty.
    """

    kind: ClassVar[str] = "component"

    name: str = attrs.field(validator=_check_name)
    factory: Callable[..., Any] = attrs.field(validator=attrs.validators.is_callable())
    config_class: type | None = attrs.field(default=None, validator=_check_config_class)
    description: str = ""
    distribution: str = ""
    version: str = ""

    def make_config(self, **values: Any) -> Any:
        """The default config (or one with ``values``) for this component."""
        return self.config_class(**values) if self.config_class is not None else None


@attrs.frozen
class ModelSpec(Spec):
    """An architecture: ``factory(config, context: ModelContext) -> nn.Module``.

    Register the model class itself as the factory when it declares
    ``predicts_q_continue`` (as :class:`rrcore.model.model_kit.ReasoningModel` subclasses do):
    the experiment's ``[act] q_continue`` follows that declaration.
    """

    kind: ClassVar[str] = "model"

    @property
    def predicts_q_continue(self) -> bool | None:
        """The factory's ``predicts_q_continue`` (a class attribute of the model), or None
        when it does not say, in which case ``[act] q_continue`` is unchecked."""
        declared = getattr(self.factory, "predicts_q_continue", None)
        return declared if isinstance(declared, bool) else None


@attrs.frozen
class DatasetSpec(Spec):
    """A data source: ``build_dataset(config, cache_dir: Path) -> Path`` of a built data set
    (the contract is in :func:`rrcore.contracts.hookspecs.rr_register_datasets`).

    ``batch_augmenter`` (optional): ``batch_augmenter(config, metadata) -> BatchAugmenter |
    None``, called once per run after the data set is built, with the ``[data]`` config and
    the train split's :class:`~rrcore.contracts.metadata.DatasetMetadata`; it returns the
    :class:`~rrcore.contracts.protocols.BatchAugmenter` the trainer applies to every training batch,
    or None when the config does not ask for one (say, a plugin key left false).
    """

    kind: ClassVar[str] = "dataset"

    batch_augmenter: Callable[[Any, Any], Any] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.is_callable())
    )


@attrs.frozen
class LossHeadSpec(Spec):
    """A loss head: ``factory(config, model: ACTModel) -> LossHead``."""

    kind: ClassVar[str] = "loss_head"


@attrs.frozen
class EvaluatorSpec(Spec):
    """An evaluator: ``factory(config, context: EvalContext) -> Evaluator``."""

    kind: ClassVar[str] = "evaluator"


@attrs.frozen
class OptimizerSpec(Spec):
    """An optimizer: ``factory(param_groups, config) -> torch.optim.Optimizer``."""

    kind: ClassVar[str] = "optimizer"


@attrs.frozen
class LoggerSpec(Spec):
    """A metrics logger (rank 0): ``factory(config, context: RunContext) -> Logger``."""

    kind: ClassVar[str] = "logger"


@attrs.frozen
class TaskSpec(Spec):
    """Single puzzles of a data set: ``factory(data_config, metadata) -> PuzzleTask``
    (:class:`rrcore.contracts.protocols.PuzzleTask`). ``name`` is the data set's plugin name.

    ``view`` (optional): ``view(metadata) -> PuzzleView``
    (:class:`rrcore.contracts.views.PuzzleView`), how ``rr report`` draws the data set's
    examples; without one it shows token ids.
    """

    kind: ClassVar[str] = "task"

    view: Callable[[Any], Any] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.is_callable())
    )
