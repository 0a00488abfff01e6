"""The bundled architectures' small test set-ups, and one ACT step's gradients, eager and
compiled, for tests that compare the two."""

from __future__ import annotations

from pathlib import Path

import torch

from rrcore.testing.compiled import relative_differences, step_gradients
from rrcore.training.run import Run

EXAMPLES = Path(__file__).parent.parent / "examples"

# Small versions of the papers' architectures on generated 4x4 Sudoku (built in seconds):
# name -> (example file, overrides).
ARCHITECTURES = {
    "trm-mlp": ("sudoku4x4-trm.toml", []),
    "trm-att": (
        "sudoku4x4-trm.toml",
        ["model.mlp_t=false", "model.pos_encodings='rope'", "model.puzzle_emb_ndim=64", "model.puzzle_emb_len=1"],
    ),
    "trm-mlp-recompute": ("sudoku4x4-trm.toml", ["model.recompute='all_mlps'"]),
    "hrm": ("sudoku4x4-hrm.toml", ["model.puzzle_emb_ndim=64"]),
    "urm": ("sudoku4x4-urm.toml", []),
}


def gradient_differences(run: Run, backend: str) -> dict[str, float]:
    """Relative difference (norm of the difference over the eager gradient's norm) of each
    gradient between the eager step and the step compiled with ``backend``, on a carry one
    step into training (some rows halted, some not)."""
    head = run.loss_head.train()
    batch = next(run.train_data.train_batches())[1]
    exploration = run.act_model.exploration(batch["inputs"].shape[0], run.device) if run.act_model.explores else None
    with torch.no_grad():
        carry, *_ = head(head.initial_carry(batch), batch, exploration)
    eager = step_gradients(head, head, carry, batch, exploration)
    compiled = step_gradients(head, torch.compile(head, backend=backend, dynamic=False), carry, batch, exploration)
    assert compiled.keys() == eager.keys(), "the compiled step trains other parameters"
    return relative_differences(compiled, eager)
