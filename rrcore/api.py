"""Everything a plugin imports from rr, in one module: ``from rrcore.api import ...``.

The bundled plugins import nothing else from ``rrcore`` (``tests/test_plugin_imports.py``
fails when one does), so what is listed here is the surface a plugin may rely on; the
other modules of ``rrcore`` are the core's own and may change shape. Tests of a plugin
use the conformance kit, :mod:`rrcore.testing`, besides.

Why a module of its own and not the package root: ``rrcore/__init__.py`` runs before
every ``rrcore.*`` import, including the light ones ``rr --help`` and the registry make
(``hookspecs``, ``registry`` import ``PROJECT_NAME`` from it). Re-exporting torch layers
and the data writer there would make each of those import torch and would close import
loops (``rrcore`` -> ``rrcore.contracts.registry`` -> ``rrcore``). This module is imported only by
plugins, after the core's modules exist, and defines nothing itself.
"""

from __future__ import annotations

from rrcore import hookimpl
from rrcore.base.cli_input import InputError, input_file, input_folder, output_folder
from rrcore.base.distributed import all_reduce_sum, gather_to_rank0
from rrcore.base.progress import progress
from rrcore.base.validators import OutOfRange, at_least, fraction, in_range, non_negative, positive
from rrcore.contracts.errors import DataSourceError
from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import (
    Batch,
    BatchAugmenter,
    Check,
    EvalContext,
    Evaluator,
    InnerCarry,
    Logger,
    LossHead,
    Model,
    ModelContext,
    Outputs,
    Puzzle,
    PuzzleError,
    PuzzleTask,
    RecordsStates,
    RunContext,
)
from rrcore.contracts.specs import (
    DatasetSpec,
    EvaluatorSpec,
    LoggerSpec,
    LossHeadSpec,
    ModelSpec,
    OptimizerSpec,
    TaskSpec,
)
from rrcore.contracts.views import Cell, Panel, PuzzleView, token_panel
from rrcore.data.cache import cached_build, default_cache_dir
from rrcore.data.format import IGNORE_LABEL, PuzzleArrays, load_set
from rrcore.data.grids import (
    DIHEDRAL_INVERSE,
    DIHEDRAL_NAMES,
    NUM_DIHEDRAL,
    dihedral,
    inverse_dihedral,
    shape_preserving_transforms,
)
from rrcore.data.stamps import source_stamp
from rrcore.data.writer import SplitWriter, write_split
from rrcore.model.act import ACTModel
from rrcore.model.carry import StepOutput, reset_rows
from rrcore.model.layers import (
    Attention,
    CastedEmbedding,
    CastedLinear,
    InjectedStack,
    PostNormBlock,
    RMSNorm,
    RotaryEmbedding,
    SwiGLU,
    apply_rotary,
    attention,
    repeated_region,
    rms_norm,
    swiglu_width,
    trunc_normal_,
)
from rrcore.model.losses import softmax_cross_entropy, stablemax_cross_entropy
from rrcore.model.model_kit import ReasoningModel, ReasoningModelConfig, model_context
from rrcore.model.puzzle_io import PuzzleInput, ReasoningHeads, SparsePuzzleEmbedding
from rrcore.model.states import StateRecord, StateRecorder, record_state

__all__ = [
    # Hooks and what the registration hooks return (rrcore.contracts.hookspecs says when each is called).
    "hookimpl",
    "DatasetSpec",
    "EvaluatorSpec",
    "LoggerSpec",
    "LossHeadSpec",
    "ModelSpec",
    "OptimizerSpec",
    "TaskSpec",
    # The contracts a component implements and the contexts its factory receives.
    "Batch",
    "BatchAugmenter",
    "Check",
    "EvalContext",
    "Evaluator",
    "InnerCarry",
    "Logger",
    "LossHead",
    "Model",
    "ModelContext",
    "model_context",
    "Outputs",
    "Puzzle",
    "PuzzleError",
    "PuzzleTask",
    "RecordsStates",
    "RunContext",
    # Config classes: range validators, checked when an experiment loads.
    "OutOfRange",
    "at_least",
    "fraction",
    "in_range",
    "non_negative",
    "positive",
    # Models: the model kit, shared layers and losses, ACT, recorded states.
    "ReasoningModel",
    "ReasoningModelConfig",
    "IGNORE_LABEL",
    "Attention",
    "CastedEmbedding",
    "CastedLinear",
    "InjectedStack",
    "PostNormBlock",
    "PuzzleInput",
    "ReasoningHeads",
    "RMSNorm",
    "RotaryEmbedding",
    "SparsePuzzleEmbedding",
    "SwiGLU",
    "apply_rotary",
    "attention",
    "repeated_region",
    "rms_norm",
    "softmax_cross_entropy",
    "stablemax_cross_entropy",
    "swiglu_width",
    "trunc_normal_",
    "ACTModel",
    "StepOutput",
    "reset_rows",
    "StateRecord",
    "StateRecorder",
    "record_state",
    # Data: the on-disk format, its streaming writer, the build cache, progress.
    "DataSourceError",
    "DatasetMetadata",
    "PuzzleArrays",
    "SplitWriter",
    "cached_build",
    "source_stamp",
    "default_cache_dir",
    "load_set",
    "write_split",
    "progress",
    # Evaluators across ranks.
    "all_reduce_sum",
    "gather_to_rank0",
    # Grid tasks: the 8 dihedral transforms.
    "DIHEDRAL_INVERSE",
    "DIHEDRAL_NAMES",
    "NUM_DIHEDRAL",
    "dihedral",
    "inverse_dihedral",
    "shape_preserving_transforms",
    # Pictures in rr report.
    "Cell",
    "Panel",
    "PuzzleView",
    "token_panel",
    # Commands of a plugin's cli.py: bad input is one line and exit 2.
    "InputError",
    "input_file",
    "input_folder",
    "output_folder",
]
