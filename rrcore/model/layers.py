"""Building blocks shared by every architecture plugin (third parties included).

Numerics follow the papers: JAX-style truncated-normal init with LeCun std,
post-norm RMSNorm without gain, SwiGLU width rounded up to a multiple of 256,
weights kept in float32 and cast to the activation dtype at use.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn


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
    """Mark ``fn`` — called many times per step with the same shapes, such as a block
    applied at every recurrence cycle — as one region that ``torch.compile`` compiles once
    and stamps out at every call (``torch.compiler.nested_compile_region``), for calls
    without gradients; outside compilation it is a plain call.

    Calls with gradients are compiled where they stand: with their backward passes as
    regions, inductor returned wrong gradients (``tests/test_compiled_gradients.py``; the
    measurements and the smallest failing case are in ``benchmarks/README.md``). Keep to
    one region per function.
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
        """Build from a config with the keys of :class:`rrcore.model.model_kit.ReasoningModelConfig`."""
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
