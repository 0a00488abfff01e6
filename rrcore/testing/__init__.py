"""The conformance kit: what the core relies on from a model or task plugin, as checks for pytest.

A plugin's own test suite calls one function per component::

    from rrcore.testing import check_model, check_task

    def test_mymodel_meets_the_core_contract():
        check_model("mymodel", {"hidden_size": 16, "H_cycles": 2})

    def test_mytask_meets_the_core_contract(tmp_path):
        check_task("mytask", {"train_size": 40, "test_size": 10}, tmp_path, evaluators=["mytask"])

Every failed check raises :class:`AssertionError` naming the plugin, what is wrong and what
the core expects. The checks use only public behaviour (the registry's factories, the
protocols, the core's reader, the ``act`` loss head) and run on CPU in seconds. This package
is the kit's facade; its modules: ``case`` and ``model`` (:func:`check_model`), ``compiled``
(the ACT step under ``torch.compile``), ``task`` (:func:`check_task`, :func:`dataset_digest`),
``docs`` (:func:`check_documented_keys`: a README against the config classes) and
``learning`` (:func:`train_briefly`).

May import: rrcore, base, contracts, data, model, evaluation, api, training, tools, research.
"""

from rrcore.testing.case import ModelCase, model_case
from rrcore.testing.compiled import check_compiles
from rrcore.testing.docs import check_documented_keys, documented_default
from rrcore.testing.learning import train_briefly
from rrcore.testing.model import (
    check_carry_reset,
    check_determinism,
    check_model,
    check_no_grad_cycles,
    check_outputs,
    check_state_dict_round_trip,
)
from rrcore.testing.task import check_dataset, check_evaluator, check_puzzle_task, check_task, dataset_digest

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
    "dataset_digest",
    "documented_default",
    "model_case",
    "train_briefly",
]
