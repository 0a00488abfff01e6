"""Per-token losses of the LM head: stablemax (float64, the papers') and softmax cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rrcore.data.format import IGNORE_LABEL


def _stablemax_s(x: Tensor, epsilon: float = 1e-30) -> Tensor:
    return torch.where(x < 0, 1 / (1 - x + epsilon), x + 1)


def log_stablemax(x: Tensor, dim: int = -1) -> Tensor:
    """Log of stablemax (Prieto et al., 2025): s(x) = x + 1 for x >= 0, 1 / (1 - x) below."""
    s = _stablemax_s(x)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(
    logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_LABEL, label_smoothing: float = 0.0
) -> Tensor:
    """Per-token stablemax cross-entropy in float64, 0 where ``labels == ignore_index``.

    ``logits`` (..., V), ``labels`` (...); returns (...) float64. ``label_smoothing`` ε
    takes the target as ``(1 - ε)`` on the label plus ``ε / V`` on every class.
    """
    log_probs = log_stablemax(logits.to(torch.float64), dim=-1)
    valid = labels != ignore_index
    safe_labels = torch.where(valid, labels, 0)
    picked = torch.gather(log_probs, -1, safe_labels.to(torch.int64).unsqueeze(-1)).squeeze(-1)
    if label_smoothing:
        picked = (1.0 - label_smoothing) * picked + label_smoothing * log_probs.mean(-1)
    return torch.where(valid, -picked, 0)


def softmax_cross_entropy(
    logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_LABEL, label_smoothing: float = 0.0
) -> Tensor:
    """Per-token softmax cross-entropy in float32, 0 where ``labels == ignore_index``
    (``label_smoothing`` as in :func:`stablemax_cross_entropy`)."""
    flat = F.cross_entropy(
        logits.to(torch.float32).reshape(-1, logits.shape[-1]),
        labels.to(torch.int64).reshape(-1),
        ignore_index=ignore_index,
        reduction="none",
        label_smoothing=label_smoothing,
    )
    return flat.view(labels.shape)


LOSS_FUNCTIONS = {
    "stablemax_cross_entropy": stablemax_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
}
