"""Learning-rate schedule: linear warmup, then cosine decay to ``min_ratio * lr``."""

from __future__ import annotations

import math


def cosine_with_warmup(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 1.0) -> float:
    """The learning rate for optimizer step ``step`` (0-based).

    ``min_ratio = 1.0`` (the references' default) keeps the rate constant after warmup.
    """
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
