"""Layers shared by every architecture plugin (third parties included).

Numerics follow the papers: JAX-style truncated-normal init with LeCun std,
post-norm RMSNorm without gain, SwiGLU width rounded up to a multiple of 256,
weights kept in float32 and cast to the activation dtype at use, puzzle
embeddings as a zero-initialised buffer trained by sign-SGD, and stablemax
cross-entropy computed in float64.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from rrcore.distributed import is_distributed

IGNORE_LABEL = -100
"""Label value that contributes neither loss nor accuracy."""


# ---------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------


def trunc_normal_(tensor: Tensor, std: float = 1.0, bound: float = 2.0) -> Tensor:
    """Fill ``tensor`` from a normal truncated at ``±bound`` standard deviations whose
    *resulting* standard deviation is ``std`` (as JAX's initialisers do; torch's
    ``trunc_normal_`` instead truncates a normal of std ``std``, giving a smaller spread)."""
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        # Inverse-CDF sampling of the truncated standard normal, then rescale so the
        # truncated distribution's variance is std**2.
        cdf_low = 0.5 * (1 + math.erf(-bound / math.sqrt(2)))
        cdf_high = 0.5 * (1 + math.erf(bound / math.sqrt(2)))
        pdf_bound = math.exp(-bound * bound / 2) / math.sqrt(2 * math.pi)
        z = cdf_high - cdf_low
        truncated_var = 1 - 2 * bound * pdf_bound / z
        tensor.uniform_(2 * cdf_low - 1, 2 * cdf_high - 1)
        tensor.erfinv_().mul_(math.sqrt(2) * std / math.sqrt(truncated_var))
        tensor.clamp_(-bound * std / math.sqrt(truncated_var), bound * std / math.sqrt(truncated_var))
    return tensor


def repeated_region(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn`` — a function or method called many times per step with the same
    shapes, such as a block applied at every recurrence cycle — as one region that
    ``torch.compile`` traces and compiles once and then stamps out at every call
    (``torch.compiler.nested_compile_region``), for calls without gradients. Outside
    compilation it is a plain call.

    Calls with gradients are compiled where they stand: with their backward passes as
    regions, inductor returned wrong gradients (torch 2.13, CPU, float32: TRM's token
    embedding 45% off, HRM's L-level weights 5-8%, the loss unchanged; plain calls and
    ``aot_eager`` were right; ``tests/test_compiled_gradients.py``). The smallest case
    found, ``benchmarks/region_gradients.py``: a region applied twice to ``z + x`` with
    ``x`` gathered from an embedding table gives the table a wrong gradient. Regions of one
    function also share one cache of traced regions without grad mode in its reuse
    condition, so a region traced without gradients can be stamped out for a call with them
    (``benchmarks/README.md``). Keep to one region per function, for calls without
    gradients. Most calls have none (TRM: 28 of 42 block calls a step, HRM: 40 of 48); on
    one H200 (torch 2.11) the first step took 62.7 s for HRM and 88.6 s for URM, against
    44.6 and 52.8 with regions for every call and 74.9 for HRM without any.
    """
    region = getattr(torch.compiler, "nested_compile_region", None)
    if region is None:  # an older torch: each call is compiled where it stands, as before
        return fn
    without_grad = region(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs) if torch.is_grad_enabled() else without_grad(*args, **kwargs)

    return call


class CastedLinear(nn.Module):
    """Linear layer with float32 weights cast to the input's dtype (bf16 on CUDA).

    Initialised with LeCun truncated normal (std 1/sqrt(in_features)) and zero bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            trunc_normal_(torch.empty(out_features, in_features), std=1.0 / math.sqrt(in_features))
        )
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding with float32 weights (truncated normal, std ``init_std``) returned in ``dtype``."""

    def __init__(
        self, num_embeddings: int, embedding_dim: int, init_std: float, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.dtype = dtype
        self.weight = nn.Parameter(trunc_normal_(torch.empty(num_embeddings, embedding_dim), std=init_std))

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight.to(self.dtype))


# ---------------------------------------------------------------------------------------
# Normalisation, position encodings, feed-forward, attention
# ---------------------------------------------------------------------------------------


def rms_norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """RMSNorm without a learned gain, computed in float32, returned in ``x.dtype``."""
    dtype = x.dtype
    x = x.float()
    return (x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)).to(dtype)


class RMSNorm(nn.Module):
    """Module form of :func:`rms_norm` (no parameters)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.eps)


class RotaryEmbedding(nn.Module):
    """Rotary position tables for ``max_positions`` positions of ``head_dim`` channels."""

    def __init__(self, head_dim: int, max_positions: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)  # (L, head_dim)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.cos, self.sin


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (B, L, H, D) by the position tables (L, D)."""
    dtype = x.dtype
    x = x.float()
    cos, sin = cos[:, None, :], sin[:, None, :]  # broadcast over heads
    return (x * cos + _rotate_half(x) * sin).to(dtype)


def swiglu_width(hidden_size: int, expansion: float, multiple: int = 256) -> int:
    """The papers' SwiGLU inner width: 2/3 of ``expansion * hidden`` rounded up to ``multiple``."""
    width = round(expansion * hidden_size * 2 / 3)
    return -(-width // multiple) * multiple


class SwiGLU(nn.Module):
    """Gated feed-forward: ``down(silu(gate(x)) * up(x))``.

    With ``gated_norm`` the product is ``sigmoid(gate) * rms_norm(gate * up)`` (RMSNorm
    without a gain over the inner width): ``silu(gate) * up`` is ``sigmoid(gate) * gate * up``,
    whose magnitude grows with both projections; normalising ``gate * up`` bounds it, which
    lets an optimizer such as Muon take large steps on the projections (the gated-norm
    SwiGLU of the "Speed is Confidence" Sudoku recipe, 2026).

    With ``recompute`` the inner activations (``2 * width`` per position) are not kept
    for the backward pass but recomputed from ``x``: one more ``gate_up`` product per
    use, for much less memory where the width is large relative to the input.

    With ``recompute_product`` only the product ``silu(gate) * up`` (``width`` per
    position) is recomputed, elementwise, from ``gate`` and ``up``, which backward keeps
    anyway for the derivative of ``silu``: a third less kept than without it and no
    matrix product repeated. Left to itself ``torch.compile`` keeps the product too,
    because the down projection's weight gradient reads it (its partitioner does not
    recompute what a matrix product consumes in backward).
    """

    def __init__(
        self,
        hidden_size: int,
        expansion: float,
        recompute: bool = False,
        recompute_product: bool = False,
        gated_norm: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        width = swiglu_width(hidden_size, expansion)
        self.gate_up_proj = CastedLinear(hidden_size, 2 * width)
        self.down_proj = CastedLinear(width, hidden_size)
        self.recompute = recompute
        self.recompute_product = recompute_product
        self.gated_norm = gated_norm
        self.norm_eps = norm_eps

    def _product(self, gate_up: Tensor) -> Tensor:
        if self.gated_norm:
            return _gated_norm_product(gate_up, self.norm_eps)
        return _gated_product(gate_up)

    def _forward(self, x: Tensor) -> Tensor:
        gate_up = self.gate_up_proj(x)
        if self.recompute_product and torch.is_grad_enabled():
            product = torch.utils.checkpoint.checkpoint(self._product, gate_up, use_reentrant=False)
        else:
            product = self._product(gate_up)
        return self.down_proj(product)

    def forward(self, x: Tensor) -> Tensor:
        if self.recompute and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


def _gated_product(gate_up: Tensor) -> Tensor:
    """``silu(gate) * up`` for ``gate_up`` = (..., 2 * width) holding both halves."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def _gated_norm_product(gate_up: Tensor, eps: float) -> Tensor:
    """``sigmoid(gate) * rms_norm(gate * up)`` for ``gate_up`` = (..., 2 * width)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return torch.sigmoid(gate) * rms_norm(gate * up, eps)


AttentionBackend = Literal["auto", "sdpa", "flash"]


def _import_flash_attn():
    try:
        from flash_attn import flash_attn_func  # optional extra
    except ImportError:
        try:
            from flash_attn_interface import flash_attn_func  # FlashAttention-3 package name
        except ImportError:
            return None
    return flash_attn_func


# Looked up once: an import inside a compiled forward pass would break the graph in
# every attention layer.
_FLASH_ATTN_FUNC = _import_flash_attn()


def _flash_attn_func():
    """flash-attn's ``flash_attn_func`` when the package is installed, else None."""
    return _FLASH_ATTN_FUNC


def resolve_attention_backend(backend: AttentionBackend, device: torch.device) -> str:
    """``auto`` picks flash-attn on CUDA when importable, else torch SDPA."""
    if backend == "sdpa":
        return "sdpa"
    flash_available = device.type == "cuda" and _FLASH_ATTN_FUNC is not None
    if backend == "flash":
        if not flash_available:
            raise RuntimeError(
                "attention backend 'flash' needs CUDA and the flash-attn package "
                "(pip install 'rrcore[flash]'); use 'auto' or 'sdpa'"
            )
        return "flash"
    return "flash" if flash_available else "sdpa"


def attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, backend: str = "sdpa") -> Tensor:
    """Scaled dot-product attention on (B, L, H, D) tensors, returning (B, L, H, D).

    ``backend`` is a resolved backend ("sdpa" or "flash"); grouped-query attention
    (fewer key/value heads than query heads) is supported by both.
    """
    if backend == "flash":
        out = _FLASH_ATTN_FUNC(q, k, v, causal=causal)
        return out[0] if isinstance(out, tuple) else out
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=k.shape[1] != q.shape[1])
    return out.transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with optional rotary positions and grouped K/V heads."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        causal: bool = False,
        backend: AttentionBackend = "auto",
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = head_dim or hidden_size // num_heads
        self.causal = causal
        self.backend = backend
        self.qkv_proj = CastedLinear(hidden_size, (self.num_heads + 2 * self.num_kv_heads) * self.head_dim)
        self.o_proj = CastedLinear(self.num_heads * self.head_dim, hidden_size)

    def forward(self, x: Tensor, rotary: tuple[Tensor, Tensor] | None = None) -> Tensor:
        batch, length, _ = x.shape
        qkv = self.qkv_proj(x).view(batch, length, self.num_heads + 2 * self.num_kv_heads, self.head_dim)
        q = qkv[:, :, : self.num_heads]
        k = qkv[:, :, self.num_heads : self.num_heads + self.num_kv_heads]
        v = qkv[:, :, self.num_heads + self.num_kv_heads :]
        if rotary is not None:
            cos, sin = rotary
            q, k = apply_rotary(q, cos[:length], sin[:length]), apply_rotary(k, cos[:length], sin[:length])
        backend = resolve_attention_backend(self.backend, x.device)
        out = attention(q, k, v, causal=self.causal, backend=backend)  # (B, L, H, D)
        return self.o_proj(out.reshape(batch, length, self.num_heads * self.head_dim))


class PostNormBlock(nn.Module):
    """``x = norm(x + mixer(x)); x = norm(x + mlp(x))`` — the block of HRM, TRM and URM.

    ``mixer`` is self-attention by default; pass any module mapping (B, L, D) to
    (B, L, D) (e.g. TRM's MLP across the sequence) and any ``mlp`` (e.g. URM's ConvSwiGLU).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        expansion: float,
        norm_eps: float = 1e-5,
        mixer: nn.Module | None = None,
        mlp: nn.Module | None = None,
        attention_backend: AttentionBackend = "auto",
    ) -> None:
        super().__init__()
        self.uses_attention = mixer is None
        self.mixer = mixer if mixer is not None else Attention(hidden_size, num_heads, backend=attention_backend)
        self.mlp = mlp if mlp is not None else SwiGLU(hidden_size, expansion)
        self.norm_eps = norm_eps

    @classmethod
    def from_config(cls, config: Any, *, mixer: nn.Module | None = None, mlp: nn.Module | None = None) -> PostNormBlock:
        """Build from a model config with the shared block keys (``hidden_size``,
        ``num_heads``, ``expansion``, ``rms_norm_eps``, ``attention_backend``: those of
        :class:`rrcore.model_kit.ReasoningModelConfig`)."""
        return cls(
            config.hidden_size,
            config.num_heads,
            config.expansion,
            config.rms_norm_eps,
            mixer=mixer,
            mlp=mlp,
            attention_backend=config.attention_backend,
        )

    @repeated_region
    def forward(self, x: Tensor, rotary: tuple[Tensor, Tensor] | None = None) -> Tensor:
        mixed = self.mixer(x, rotary) if self.uses_attention else self.mixer(x)
        x = rms_norm(x + mixed, self.norm_eps)
        return rms_norm(x + self.mlp(x), self.norm_eps)


class InjectedStack(nn.Module):
    """Blocks applied to a state plus an injection: ``blocks(hidden + injection)``, the
    recurrent module of HRM (its H and L levels) and TRM (its one network)."""

    def __init__(self, blocks: Iterable[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, hidden: Tensor, injection: Tensor, rotary: tuple[Tensor, Tensor] | None) -> Tensor:
        hidden = hidden + injection
        for block in self.blocks:
            hidden = block(hidden, rotary)
        return hidden


# ---------------------------------------------------------------------------------------
# Puzzle embeddings (sparse, sign-SGD)
# ---------------------------------------------------------------------------------------


class SparsePuzzleEmbedding(nn.Module):
    """One learned vector per puzzle identifier, trained only on the rows in the batch.

    The table is a buffer (saved in the state dict, not a parameter: a data set of a
    million augmented puzzles would make the optimizer state gigabytes). In training
    the rows of the batch are copied into ``local_weights``, a fixed-size leaf that
    receives the gradient; :class:`SignSGD` then updates the table at ``local_ids``.
    The batch size per rank must therefore be fixed (the trainer guarantees it).
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, batch_size: int, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.dtype = dtype
        self.register_buffer("weights", torch.zeros(num_embeddings, embedding_dim))
        self.register_buffer(
            "local_weights", torch.zeros(batch_size, embedding_dim, requires_grad=True), persistent=False
        )
        self.register_buffer("local_ids", torch.zeros(batch_size, dtype=torch.int64), persistent=False)

    def _apply(self, fn, recurse=True):
        # Moving a module (.to, .cuda) replaces buffers with converted copies; a copy of a
        # tensor that requires grad is not a leaf, and only leaves receive .grad.
        super()._apply(fn, recurse)
        self.local_weights = self.local_weights.detach().requires_grad_()
        return self

    def forward(self, ids: Tensor) -> Tensor:
        if not self.training:
            return self.weights[ids].to(self.dtype)
        with torch.no_grad():
            self.local_weights.copy_(self.weights[ids])
            self.local_ids.copy_(ids)
        return self.local_weights.to(self.dtype)


def _sign_sgd_rows(weights: Tensor, ids: Tensor, grad: Tensor, lr: float, weight_decay: float) -> None:
    """Update the rows ``ids`` of ``weights`` by the sign of their summed gradients.

    Written without ``unique`` (whose output size is data-dependent and forces a host
    synchronisation on CUDA): sorted ids are grouped into fixed-size segments, and the
    spare segments rewrite the first row with its own new value, so every write is
    deterministic.
    """
    n = ids.shape[0]
    sorted_ids, order = ids.sort()
    starts = torch.ones(n, dtype=torch.bool, device=ids.device)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    segment = starts.cumsum(0) - 1  # (n,) segment of each sorted row
    summed = torch.zeros(n, grad.shape[1], dtype=grad.dtype, device=grad.device)
    summed.index_add_(0, segment, grad[order])
    used = torch.zeros(n, dtype=torch.bool, device=ids.device).index_fill_(0, segment, True)
    segment_ids = torch.zeros_like(sorted_ids).scatter_(0, segment, sorted_ids)
    segment_ids = torch.where(used, segment_ids, sorted_ids[0])
    rows = weights[segment_ids] * (1.0 - lr * weight_decay) - lr * torch.sign(summed)
    rows = torch.where(used.unsqueeze(-1), rows, rows[:1])  # spare segments repeat row 0
    weights.index_put_((segment_ids,), rows)


class SignSGD(torch.optim.Optimizer):
    """Sign-SGD with decoupled weight decay for :class:`SparsePuzzleEmbedding` tables.

    Gradients of the batch rows are gathered from every rank, summed per identifier,
    and the table rows move by ``-lr * sign(grad)`` after ``weights *= 1 - lr * wd``.
    Rows not in any rank's batch are untouched (weight decay included).
    """

    def __init__(self, embeddings: list[SparsePuzzleEmbedding], lr: float, weight_decay: float = 0.0) -> None:
        self.embeddings = embeddings
        self._pending: list[list[tuple[Tensor, Tensor]]] = [[] for _ in embeddings]
        params = [e.local_weights for e in embeddings]
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def accumulate(self) -> None:
        """Keep the current micro-batch's rows and gradients for the next :meth:`step`
        (gradient accumulation refills ``local_weights`` with other rows)."""
        for pending, embedding in zip(self._pending, self.embeddings):
            if embedding.local_weights.grad is not None:
                pending.append((embedding.local_ids.clone(), embedding.local_weights.grad.clone()))
                embedding.local_weights.grad = None

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch signature
        group = self.param_groups[0]
        for pending, embedding in zip(self._pending, self.embeddings):
            parts = list(pending)
            if embedding.local_weights.grad is not None:
                parts.append((embedding.local_ids, embedding.local_weights.grad))
            pending.clear()
            if not parts:
                continue
            ids = torch.cat([i for i, _ in parts])
            grad = torch.cat([g for _, g in parts])
            if is_distributed():
                grads = [torch.empty_like(grad) for _ in range(dist.get_world_size())]
                all_ids = [torch.empty_like(ids) for _ in range(dist.get_world_size())]
                dist.all_gather(grads, grad.contiguous())
                dist.all_gather(all_ids, ids.contiguous())
                grad, ids = torch.cat(grads), torch.cat(all_ids)
            _sign_sgd_rows(embedding.weights, ids, grad, group["lr"], group["weight_decay"])
        return None


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Input and output of a reasoning model (shared by HRM, TRM, URM)
# ---------------------------------------------------------------------------------------

PositionEncoding = Literal["rope", "learned", "none"]


class PuzzleInput(nn.Module):
    """Token embedding + puzzle-embedding prefix + position encoding.

    Returns (B, puzzle_emb_len + seq_len, D) in ``dtype``: the puzzle embedding of
    ``puzzle_emb_ndim`` floats (zero-initialised, sign-SGD trained) occupies the
    first ``puzzle_emb_len`` positions (default ``ceil(puzzle_emb_ndim / D)``),
    tokens the rest. Token embeddings have std 1/sqrt(D) and are scaled by
    sqrt(D); learned positions are added and the sum scaled by 1/sqrt(2); rotary
    tables are exposed through :meth:`rotary` for the attention layers.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        hidden_size: int,
        seq_len: int,
        num_heads: int,
        num_puzzle_identifiers: int,
        puzzle_emb_ndim: int,
        batch_size: int,
        puzzle_emb_len: int | None = None,
        pos_encodings: PositionEncoding = "rope",
        rope_theta: float = 10000.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.dtype = dtype
        self.embed_scale = math.sqrt(hidden_size)
        self.embed_tokens = CastedEmbedding(vocab_size, hidden_size, init_std=1.0 / self.embed_scale, dtype=dtype)
        self.puzzle_emb_ndim = puzzle_emb_ndim
        if puzzle_emb_len is None:
            puzzle_emb_len = -(-puzzle_emb_ndim // hidden_size) if puzzle_emb_ndim > 0 else 0
        if puzzle_emb_ndim > puzzle_emb_len * hidden_size:
            raise ValueError(
                f"puzzle_emb_ndim {puzzle_emb_ndim} does not fit in puzzle_emb_len "
                f"{puzzle_emb_len} positions of {hidden_size}"
            )
        self.puzzle_emb_len = puzzle_emb_len
        self.puzzle_emb = (
            SparsePuzzleEmbedding(num_puzzle_identifiers, puzzle_emb_ndim, batch_size, dtype)
            if puzzle_emb_ndim > 0
            else None
        )
        self.total_len = seq_len + puzzle_emb_len
        self.pos_encodings = pos_encodings
        self.rotary_emb = (
            RotaryEmbedding(hidden_size // num_heads, self.total_len, rope_theta) if pos_encodings == "rope" else None
        )
        self.embed_pos = (
            CastedEmbedding(self.total_len, hidden_size, init_std=1.0 / self.embed_scale, dtype=dtype)
            if pos_encodings == "learned"
            else None
        )
        if pos_encodings not in ("rope", "learned", "none"):
            raise ValueError(f"pos_encodings must be 'rope', 'learned' or 'none', got {pos_encodings!r}")

    @classmethod
    def from_config(cls, config: Any, context: Any) -> PuzzleInput:
        """Build from a model config with the papers' key names (``hidden_size``,
        ``num_heads``, ``puzzle_emb_ndim``, ``puzzle_emb_len`` (0 = derived),
        ``pos_encodings``, ``rope_theta``: those of :class:`rrcore.model_kit.ReasoningModelConfig`)
        and a :class:`rrcore.protocols.ModelContext`."""
        metadata = context.metadata
        return cls(
            vocab_size=metadata.vocab_size,
            hidden_size=config.hidden_size,
            seq_len=metadata.seq_len,
            num_heads=config.num_heads,
            num_puzzle_identifiers=metadata.num_puzzle_identifiers,
            puzzle_emb_ndim=config.puzzle_emb_ndim,
            batch_size=context.batch_size,
            puzzle_emb_len=config.puzzle_emb_len or None,
            pos_encodings=config.pos_encodings,
            rope_theta=config.rope_theta,
            dtype=context.forward_dtype,
        )

    def rotary(self) -> tuple[Tensor, Tensor] | None:
        return self.rotary_emb() if self.rotary_emb is not None else None

    def forward(self, inputs: Tensor, puzzle_identifiers: Tensor) -> Tensor:
        embedding = self.embed_tokens(inputs.to(torch.int32))  # (B, L, D)
        if self.puzzle_emb is not None:
            prefix = self.puzzle_emb(puzzle_identifiers)  # (B, puzzle_emb_ndim)
            pad = self.puzzle_emb_len * self.hidden_size - prefix.shape[-1]
            if pad:
                prefix = F.pad(prefix, (0, pad))
            embedding = torch.cat(
                (prefix.view(-1, self.puzzle_emb_len, self.hidden_size).to(embedding.dtype), embedding), dim=-2
            )
        elif self.puzzle_emb_len:
            embedding = F.pad(embedding, (0, 0, self.puzzle_emb_len, 0))
        if self.embed_pos is not None:
            embedding = (embedding + self.embed_pos.weight.to(embedding.dtype)) / math.sqrt(2)
        return self.embed_scale * embedding


class ReasoningHeads(nn.Module):
    """The LM head over token positions and the Q-head (halt, continue) on position 0.

    The Q-head starts with zero weights and bias -5, so a fresh model never halts
    early by chance.
    """

    def __init__(self, hidden_size: int, vocab_size: int, puzzle_emb_len: int) -> None:
        super().__init__()
        self.puzzle_emb_len = puzzle_emb_len
        self.lm_head = CastedLinear(hidden_size, vocab_size)
        self.q_head = CastedLinear(hidden_size, 2, bias=True)
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    def forward(self, hidden: Tensor) -> dict[str, Tensor]:
        """``hidden`` (B, puzzle_emb_len + L, D) → logits (B, L, V) and Q logits (B,) in float32."""
        logits = self.lm_head(hidden[:, self.puzzle_emb_len :])
        q = self.q_head(hidden[:, 0]).to(torch.float32)
        return {"logits": logits, "q_halt_logits": q[..., 0], "q_continue_logits": q[..., 1]}
