"""The conformance kit (rrcore.testing): a sound plugin passes, each broken one fails saying why."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rrcore.contracts.registry import load_registry
from rrcore.testing import (
    check_documented_keys,
    check_evaluator,
    check_model,
    check_puzzle_task,
    check_task,
    documented_default,
    model_case,
)

PLUGINS = Path(__file__).parent / "plugins"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, PLUGINS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def registry():
    modules = {name: _load(name) for name in ("rr_toy", "rr_faulty")}
    added = [name for name in modules if name not in sys.modules]
    sys.modules.update({name: modules[name] for name in added})  # torch.compile imports the traced code's module
    yield load_registry(entry_point_group=None, extra_modules=list(modules.values()))
    for name in added:
        del sys.modules[name]


def test_a_sound_model_passes_every_check(registry):
    check_model("sound", {"H_cycles": 3}, registry=registry)


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (
            "resets_every_row",
            "reset_carry changed 'z' in rows that did not halt; the core expects rows not halted "
            "to keep their state exactly",
        ),
        (
            "keeps_gradients",
            "a training step keeps .* tensors for backward with H_cycles = 2 and .* with "
            "H_cycles = 3, so gradients flow through every cycle; the core expects every H_cycles "
            "cycle but the last under torch.no_grad()",
        ),
        (
            "state_outside_state_dict",
            "a copy loaded from its state dict gives different .*; the core expects every "
            "tensor that affects the output .* registered as a parameter or buffer",
        ),
        (
            "reads_on_host",
            r"the ACT step does not compile as one graph \(.*\); the core expects a forward "
            r"torch.compile traces whole: no .item\(\)",
        ),
        (
            "compiled_gradient_differs",
            r"compiled with 'aot_eager', the step's gradient of model.inner.input.embed_tokens.weight is 1 off "
            r"the eager one \(relative norm\); the core expects the eager step's gradients within 0.001",
        ),
        ("keeps_prefix", r"'logits' has shape \(4, 7, 7\) in train mode; the core expects \(4, 6, 7\)"),
        (
            "claims_q_continue",
            r"outputs lack 'q_continue_logits' \(the model declares predicts_q_continue = True\) "
            r"\(has \['logits', 'q_halt_logits'\]\); the core expects 'q_continue_logits' of "
            r"shape \(4,\)",
        ),
    ],
)
def test_a_broken_model_fails_with_a_message_that_says_what_is_wrong(registry, plugin, message):
    with pytest.raises(AssertionError, match=f"^model '{plugin}': {message}"):
        check_model(plugin, registry=registry)


def test_a_model_without_no_grad_cycles_passes_when_it_says_so(registry):
    # The toy model runs its cycles with gradient on purpose and has no H_cycles key.
    check_model("toy", registry=registry, compile=False)
    with pytest.raises(AssertionError, match="its config has no key 'H_cycles'"):
        check_model("toy", registry=registry, no_grad_cycles=("H_cycles",), compile=False)


def test_the_model_case_builds_on_the_synthetic_data_shape(registry):
    case = model_case("sound", registry=registry, vocab_size=9, seq_len=5, batch_size=3)
    batch = case.batch()
    assert batch["inputs"].shape == (3, 5) and int(batch["inputs"].max()) < 9
    _, outputs = case.build()(case.build().initial_carry(batch), batch)
    assert outputs["logits"].shape == (3, 5, 9)


def test_a_sound_task_passes_and_returns_its_build(registry, tmp_path):
    folder = check_task("toy", {"num_train": 20, "num_test": 10}, tmp_path, evaluators=["exact"], registry=registry)
    assert (folder / "train" / "dataset.json").exists()


def test_a_builder_that_is_not_seeded_fails(registry, tmp_path):
    with pytest.raises(
        AssertionError,
        match="^task 'unseeded': two builds with the same config differ in "
        "train/all__inputs.npy; the core expects a deterministic builder",
    ):
        check_task("unseeded", {}, tmp_path, registry=registry)


def test_a_puzzle_task_whose_check_accepts_anything_fails(registry, tmp_path):
    with pytest.raises(
        AssertionError,
        match=r"^task 'digits' \(PuzzleTask\): check accepts a wrong answer to test "
        r"example 0 \(something was written\); the core expects check to "
        r"reject it",
    ):
        check_task("digits", {}, tmp_path, evaluators=["exact"], registry=registry)


def test_puzzle_texts_that_parse_to_the_wrong_length_fail(registry, tmp_path):
    folder = check_task("toy", {"num_train": 20, "num_test": 10}, tmp_path, registry=registry)
    with pytest.raises(
        AssertionError,
        match=r"^task 'digits' \(PuzzleTask\): parse\('12'\) gave tokens of shape "
        r"\(2,\) .*; the core expects \(8,\) tokens below vocab_size 11",
    ):
        check_puzzle_task("digits", None, folder / "test", registry=registry, puzzles=["12345678", "12"])


@pytest.mark.parametrize(
    ("evaluator", "message"),
    [
        (
            "counts_padding",
            r"the labels themselves score \{'exact_accuracy': 0\.\d+\} \(padding rows hold noise\); "
            r"the core expects 1\.0 for a perfect answer, with rows where batch\['valid'\] is False ignored",
        ),
        (
            "always_perfect",
            r"an answer with every scored token wrong still scores \{'exact_accuracy': 1\.0\}; the core "
            r"expects a wrong answer to score below a perfect one",
        ),
    ],
)
def test_a_broken_evaluator_fails_with_a_message_that_says_what_is_wrong(registry, tmp_path, evaluator, message):
    folder = check_task("toy", {"num_train": 20, "num_test": 10}, tmp_path, registry=registry)
    with pytest.raises(AssertionError, match=f"^evaluator '{evaluator}': {message}"):
        check_evaluator(evaluator, {}, folder / "test", tmp_path / "eval", registry=registry)


TOY_README = """# rr-toy

| key | type | default | meaning |
|---|---|---|---|
| `hidden_size` | int | 16 | width |
| `num_heads` | int | 2 | heads |
| `cycles` | int | `2` | block applications per step |
| `puzzle_emb_ndim` | int | 16 | per-puzzle floats |

Data (`[data] plugin = "toy"`):

| key | default | meaning |
|:--|--:|---|
| `num_train` | 64 | training puzzles |
| `num_test` | 16 | test puzzles |
| `seq_len` | 8 | digits |
| `seed` | 0 | seed |
"""


@pytest.fixture(scope="module")
def toy_only():
    return load_registry(entry_point_group=None, extra_modules=[_load("rr_toy")])


def test_a_readme_with_every_key_and_default_passes(toy_only, tmp_path):
    (tmp_path / "README.md").write_text(TOY_README)
    check_documented_keys(tmp_path / "README.md", "local", registry=toy_only)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("| `seq_len` | 8 | digits |\n", ""),
            "the key 'seq_len' of dataset 'toy' (ToyDataConfig) has no table row; the kit expects a row "
            "| `seq_len` | type | default | meaning |",
        ),
        (
            ("| `cycles` | int | `2` |", "| `cycles` | int | 3 |"),
            "the key 'cycles' of model 'toy' (ToyModelConfig) shows default 3; the kit expects 2, the config class's",
        ),
        (
            ("| `num_heads` |", "| num_heads |"),  # a key outside backticks is prose, not a row
            "the key 'num_heads' of model 'toy' (ToyModelConfig) has no table row",
        ),
    ],
)
def test_a_readme_that_drifted_from_the_config_fails(toy_only, tmp_path, edit, message):
    (tmp_path / "README.md").write_text(TOY_README.replace(*edit))
    with pytest.raises(AssertionError) as failure:
        check_documented_keys(tmp_path / "README.md", "local", registry=toy_only)
    assert str(failure.value).startswith(f"{tmp_path / 'README.md'}: {message}")


def test_an_unknown_distribution_is_not_passed_silently(toy_only, tmp_path):
    (tmp_path / "README.md").write_text(TOY_README)
    with pytest.raises(AssertionError, match="^distribution 'rr-tyop' registers no rr component"):
        check_documented_keys(tmp_path / "README.md", "rr-tyop", registry=toy_only)


def test_defaults_are_written_as_toml_writes_them():
    assert [documented_default(v) for v in (4.0, 1e-5, "rope", True, [1, 2], ("a",), None)] == [
        "4.0",
        "1e-05",
        '"rope"',
        "true",
        "[1, 2]",
        '["a"]',
        "unset",
    ]
