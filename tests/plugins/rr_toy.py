"""A tiny task and model for the core's tests, registered through the ``rr`` entry point.

Task ``toy``: each token d in 1..10 maps to ((d mod 10) + 1) + ... i.e. the label is
the next digit, position by position; examples come in groups of two puzzles,
each puzzle with its own identifier so the sparse puzzle embedding is exercised.
Model ``toy``: one post-norm block applied ``cycles`` times to the carry plus the
input embedding.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch
from torch import nn

from rrcore import hookimpl
from rrcore.contracts.specs import DatasetSpec, ModelSpec
from rrcore.data.cache import cached_build
from rrcore.data.writer import SplitWriter
from rrcore.model.layers import PostNormBlock, trunc_normal_
from rrcore.model.puzzle_io import PuzzleInput, ReasoningHeads


@attrs.define
class ToyDataConfig:
    num_train: int = 64
    num_test: int = 16
    seq_len: int = 8
    seed: int = 0


def _draw(rng: np.random.Generator, count: int, seq_len: int) -> list[np.ndarray]:
    return [rng.integers(0, 10, size=(1, seq_len)) for _ in range(count)]


def _write(folder: Path, rows: list[np.ndarray], config: ToyDataConfig, num_identifiers: int) -> None:
    with SplitWriter(folder, config.seq_len) as writer:
        for i, digits in enumerate(rows):  # puzzles 1, 2, ... in groups of two
            writer.add_puzzle(1 + i, digits + 1, (digits + 1) % 10 + 1)
            if i % 2 == 1:
                writer.end_group()
        writer.finish(pad_id=0, ignore_label_id=0, vocab_size=11, num_puzzle_identifiers=num_identifiers)


def build_dataset(config: ToyDataConfig, cache_dir: Path) -> Path:
    def build(folder: Path) -> None:
        rng = np.random.default_rng(config.seed)
        train, test = _draw(rng, config.num_train, config.seq_len), _draw(rng, config.num_test, config.seq_len)
        _write(folder / "train", train, config, config.num_train + 1)
        _write(folder / "test", test, config, config.num_train + 1)

    return cached_build(cache_dir, "toy", config, build)


@attrs.define
class ToyModelConfig:
    hidden_size: int = 16
    num_heads: int = 2
    cycles: int = 2
    puzzle_emb_ndim: int = 16


class ToyModel(nn.Module):
    def __init__(self, config: ToyModelConfig, context) -> None:
        super().__init__()
        metadata = context.metadata
        self.config = config
        self.dtype = context.forward_dtype
        self.input = PuzzleInput(
            vocab_size=metadata.vocab_size,
            hidden_size=config.hidden_size,
            seq_len=metadata.seq_len,
            num_heads=config.num_heads,
            num_puzzle_identifiers=metadata.num_puzzle_identifiers,
            puzzle_emb_ndim=config.puzzle_emb_ndim,
            batch_size=context.batch_size,
            pos_encodings="learned",
            dtype=self.dtype,
        )
        self.puzzle_emb = self.input.puzzle_emb
        self.block = PostNormBlock(config.hidden_size, config.num_heads, expansion=2.0, attention_backend="sdpa")
        self.heads = ReasoningHeads(config.hidden_size, metadata.vocab_size, self.input.puzzle_emb_len)
        self.register_buffer("z_init", trunc_normal_(torch.empty(config.hidden_size), std=1.0))

    def initial_carry(self, batch):
        batch_size = batch["inputs"].shape[0]
        return {
            "z": torch.zeros(
                batch_size,
                self.input.total_len,
                self.config.hidden_size,
                dtype=self.dtype,
                device=batch["inputs"].device,
            )
        }

    def reset_carry(self, reset, carry):
        return {"z": torch.where(reset.view(-1, 1, 1), self.z_init.to(self.dtype), carry["z"])}

    def forward(self, carry, batch):
        x = self.input(batch["inputs"], batch["puzzle_identifiers"])
        z = carry["z"]
        for _ in range(self.config.cycles):
            z = self.block(z + x)
        return {"z": z.detach()}, self.heads(z)


@hookimpl
def rr_register_models():
    return [ModelSpec(name="toy", factory=ToyModel, config_class=ToyModelConfig, description="test model")]


@hookimpl
def rr_register_datasets():
    return [DatasetSpec(name="toy", factory=build_dataset, config_class=ToyDataConfig, description="test task")]


@hookimpl
def rr_on_step_end(context, step, metrics):
    """``RR_TOY_SIGNAL_AT=STEP:NAME`` (e.g. ``3:TERM``): the run sends itself SIGNAME after
    STEP, so subprocess tests interrupt at a known step. ``RR_TOY_STEP_SECONDS``: each step
    lasts at least this long, so a test can signal or kill a run while it is training."""
    import os
    import signal
    import time

    at, _, name = os.environ.get("RR_TOY_SIGNAL_AT", "").partition(":")
    if at and step == int(at):
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
    time.sleep(float(os.environ.get("RR_TOY_STEP_SECONDS", "0")))
