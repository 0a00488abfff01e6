"""A deliberately broken plugin for the conformance kit's tests: one fault per component.

``sound`` is a small correct recurrent model (two cycles, the first without gradient);
every other model is ``sound`` with one mistake a plugin author could make, named after
it (``claims_q_continue`` declares ``predicts_q_continue`` but outputs no Q-continue).
The ``unseeded`` data set builds differently each time; the ``digits`` task's check
accepts any answer that is not empty; the evaluators ``counts_padding`` and ``always_perfect`` score what they
should not.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch
from torch import nn

from rrcore import hookimpl
from rrcore.contracts.protocols import Check
from rrcore.contracts.specs import DatasetSpec, EvaluatorSpec, ModelSpec, TaskSpec
from rrcore.data.writer import SplitWriter
from rrcore.model.carry import reset_rows
from rrcore.model.layers import PostNormBlock, trunc_normal_
from rrcore.model.puzzle_io import PuzzleInput, ReasoningHeads


@attrs.define
class SoundConfig:
    hidden_size: int = 16
    num_heads: int = 2
    H_cycles: int = 2


class Sound(nn.Module):
    """``H_cycles`` applications of one block; all but the last without gradient."""

    def __init__(self, config: SoundConfig, context) -> None:
        super().__init__()
        metadata = context.metadata
        self.config = config
        self.input = PuzzleInput(
            vocab_size=metadata.vocab_size,
            hidden_size=config.hidden_size,
            seq_len=metadata.seq_len,
            num_heads=config.num_heads,
            num_puzzle_identifiers=metadata.num_puzzle_identifiers,
            puzzle_emb_ndim=0,
            batch_size=context.batch_size,
            pos_encodings="learned",
            dtype=context.forward_dtype,
        )
        self.block = PostNormBlock(config.hidden_size, config.num_heads, expansion=2.0, attention_backend="sdpa")
        self.heads = ReasoningHeads(config.hidden_size, metadata.vocab_size, self.input.puzzle_emb_len)
        self.register_buffer("z_init", trunc_normal_(torch.empty(config.hidden_size), std=1.0))

    def initial_carry(self, batch):
        rows = batch["inputs"].shape[0]
        return {"z": torch.zeros(rows, self.input.total_len, self.config.hidden_size, device=batch["inputs"].device)}

    def reset_carry(self, reset, carry):
        return reset_rows(reset, carry, {"z": self.z_init})

    def cycles(self, z, x):
        with torch.no_grad():
            for _ in range(self.config.H_cycles - 1):
                z = self.block(z + x)
        return self.block(z + x)

    def forward(self, carry, batch):
        x = self.input(batch["inputs"], batch["puzzle_identifiers"])
        z = self.cycles(carry["z"], x)
        return {"z": z.detach()}, self.heads(z)


class ResetsEveryRow(Sound):
    def reset_carry(self, reset, carry):
        return {"z": self.z_init.expand_as(carry["z"]).clone()}


class KeepsGradients(Sound):
    def cycles(self, z, x):
        for _ in range(self.config.H_cycles):
            z = self.block(z + x)
        return z


class StateOutsideStateDict(Sound):
    def __init__(self, config, context) -> None:
        super().__init__(config, context)
        del self.z_init
        self.z_init = trunc_normal_(torch.empty(config.hidden_size), std=1.0)  # a plain attribute


class ReadsOnHost(Sound):
    def forward(self, carry, batch):
        carry, outputs = super().forward(carry, batch)
        if outputs["q_halt_logits"].max().item() > 100:  # a host synchronisation: a graph break
            outputs["q_halt_logits"] = outputs["q_halt_logits"].clamp(max=100)
        return carry, outputs


class KeepsPrefix(Sound):
    def forward(self, carry, batch):
        carry, outputs = super().forward(carry, batch)
        outputs["logits"] = torch.cat([outputs["logits"][:, :1], outputs["logits"]], dim=1)
        return carry, outputs


class CompiledGradientDiffers(Sound):
    """The same outputs compiled, but a gradient twice the eager one (as a compiler bug gave)."""

    def forward(self, carry, batch):
        carry, outputs = super().forward(carry, batch)
        if torch.compiler.is_compiling():
            logits = outputs["logits"]
            outputs["logits"] = logits.detach() + 2 * (logits - logits.detach())
        return carry, outputs


class ClaimsQContinue(Sound):
    """Declares that it predicts Q-continue (so ``[act] q_continue`` follows) but outputs none."""

    predicts_q_continue = True

    def forward(self, carry, batch):
        carry, outputs = super().forward(carry, batch)
        del outputs["q_continue_logits"]
        return carry, outputs


def _model(name: str, model_class: type) -> ModelSpec:
    return ModelSpec(name=name, factory=model_class, config_class=SoundConfig, description=model_class.__doc__ or "")


@hookimpl
def rr_register_models():
    return [
        _model("sound", Sound),
        _model("resets_every_row", ResetsEveryRow),
        _model("keeps_gradients", KeepsGradients),
        _model("state_outside_state_dict", StateOutsideStateDict),
        _model("reads_on_host", ReadsOnHost),
        _model("keeps_prefix", KeepsPrefix),
        _model("claims_q_continue", ClaimsQContinue),
        _model("compiled_gradient_differs", CompiledGradientDiffers),
    ]


# -- data and evaluators -----------------------------------------------------------------


@attrs.define
class DigitsConfig:
    size: int = 12
    seed: int | None = 0


def build_digits(config: DigitsConfig, cache_dir: Path) -> Path:
    """Next-digit examples; with ``seed = None`` (the ``unseeded`` data set) two builds differ."""
    rng = np.random.default_rng(config.seed)
    folder = Path(cache_dir) / "digits"
    for split in ("train", "test"):
        with SplitWriter(folder / split, seq_len=4) as writer:
            for identifier in range(1, config.size + 1):
                digits = rng.integers(0, 10, size=(1, 4))
                writer.add_puzzle(identifier, digits + 1, (digits + 1) % 10 + 1)
                writer.end_group()
            writer.finish(pad_id=0, ignore_label_id=0, vocab_size=11, num_puzzle_identifiers=config.size + 1)
    return folder


@attrs.define
class UnseededConfig(DigitsConfig):
    seed: int | None = None


class LenientTask:
    """The ``digits`` PuzzleTask, whose check accepts any answer that writes something."""

    augmentations = 0

    def __init__(self, data_config, metadata) -> None:
        pass

    def parse(self, text):
        return np.array([int(c) + 1 for c in text])

    def decode(self, tokens):
        return "".join(str(int(t) - 1) for t in tokens)

    def render(self, tokens):
        return self.decode(tokens)

    def check(self, inputs, prediction):
        return Check(bool((prediction != 0).any()), "something was written")


@attrs.define
class NoConfig:
    pass


class CountsPadding:
    """Exact accuracy over every row of a batch, padding rows included."""

    headline_metrics = ("exact_accuracy",)

    def __init__(self, config, context) -> None:
        pass

    def begin_eval(self, output_dir: Path) -> None:
        self.right = self.rows = 0

    def update_batch(self, batch, outputs) -> None:
        self.right += int((outputs["preds"] == batch["labels"]).all(-1).sum())
        self.rows += len(batch["labels"])

    def result(self):
        return {"exact_accuracy": self.right / self.rows}


class AlwaysPerfect(CountsPadding):
    """Scores every answer 1.0."""

    def result(self):
        return {"exact_accuracy": 1.0}


@hookimpl
def rr_register_datasets():
    return [
        DatasetSpec(name="digits", factory=build_digits, config_class=DigitsConfig),
        DatasetSpec(name="unseeded", factory=build_digits, config_class=UnseededConfig),
    ]


@hookimpl
def rr_register_tasks():
    return [TaskSpec(name="digits", factory=LenientTask)]


@hookimpl
def rr_register_evaluators():
    return [
        EvaluatorSpec(name="counts_padding", factory=CountsPadding, config_class=NoConfig),
        EvaluatorSpec(name="always_perfect", factory=AlwaysPerfect, config_class=NoConfig),
    ]
