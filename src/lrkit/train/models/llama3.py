"""LLaMA-3 in plain PyTorch, readable in one sitting (after Meta's reference ``model.py``).

Architecture: token embedding, pre-RMSNorm blocks of grouped-query causal self-attention with rotary
position embeddings (RoPE) and a SwiGLU MLP, a final RMSNorm, and an untied output head. No biases.

Tensor-parallel friendly: ``wq``/``wk``/``wv`` and ``w1``/``w3`` are column-parallel, ``wo`` and ``w2``
row-parallel (torchtitan's plan names). Attention derives the number of query and key/value heads from the
width of the projected activations, so column-sharded projections work unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lrkit.train.models.layout import ParallelPlan

# LLaMA-3.1 RoPE scaling constants (Meta's ``apply_scaling``): frequencies whose wavelength is shorter than
# original_context / high_freq_factor are kept, longer than original_context / low_freq_factor are divided
# by the scaling factor, and those in between are interpolated smoothly.
ROPE_LOW_FREQ_FACTOR = 1.0
ROPE_HIGH_FREQ_FACTOR = 4.0
ROPE_ORIGINAL_CONTEXT = 8192


@dataclass(frozen=True)
class Llama3Config:
    """Shape of a LLaMA-3 model.

    ``n_kv_head`` key/value heads are shared by groups of ``n_head / n_kv_head`` query heads (grouped-query
    attention). ``ffn_hidden`` is the SwiGLU hidden width. ``block_size`` is the longest sequence in tokens.
    ``norm_eps`` is RMSNorm's epsilon and ``rope_theta`` the RoPE base. ``rope_scaling_factor``, when set,
    applies LLaMA-3.1-style frequency scaling (8 for LLaMA-3.1, 32 for LLaMA-3.2); ``None`` means plain RoPE.
    """

    vocab_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2
    n_embd: int = 128
    ffn_hidden: int = 384
    block_size: int = 256
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_scaling_factor: float | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn_hidden", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, n_head={self.n_head}")
        if self.head_dim % 2 != 0:
            raise ValueError(f"n_embd / n_head must be even for RoPE, got head_dim={self.head_dim}")
        if self.n_head % self.n_kv_head != 0:
            raise ValueError(
                f"n_head must be divisible by n_kv_head, got n_head={self.n_head}, n_kv_head={self.n_kv_head}"
            )
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got norm_eps={self.norm_eps!r}")
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be > 0, got rope_theta={self.rope_theta!r}")
        if self.rope_scaling_factor is not None and not self.rope_scaling_factor >= 1:
            raise ValueError(
                f"rope_scaling_factor must be None or >= 1, got rope_scaling_factor={self.rope_scaling_factor!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


LLAMA3_PRESETS: dict[str, Llama3Config] = {
    "tiny": Llama3Config(vocab_size=256, n_layer=4, n_head=4, n_kv_head=2, n_embd=128, ffn_hidden=384, block_size=256),
    "small": Llama3Config(
        vocab_size=256, n_layer=6, n_head=6, n_kv_head=2, n_embd=384, ffn_hidden=1024, block_size=256
    ),
    # LLaMA-3.2 1B shapes (the released model also ties its embeddings; here they stay untied).
    "1B": Llama3Config(
        vocab_size=128256,
        n_layer=16,
        n_head=32,
        n_kv_head=8,
        n_embd=2048,
        ffn_hidden=8192,
        block_size=2048,
        rope_scaling_factor=32.0,
    ),
}


def rope_inv_freq(head_dim: int, theta: float, scaling_factor: float | None = None) -> torch.Tensor:
    """RoPE angular frequencies (radians/token), float32, shape (head_dim / 2,).

    ``inv_freq[i] = theta ** (-2i / head_dim)``; with ``scaling_factor`` s, wavelengths ``2 pi / f`` above
    ``ROPE_ORIGINAL_CONTEXT / ROPE_LOW_FREQ_FACTOR`` become ``f / s``, those below
    ``ROPE_ORIGINAL_CONTEXT / ROPE_HIGH_FREQ_FACTOR`` stay ``f``, and in between
    ``(1 - a) f / s + a f`` with ``a = (ROPE_ORIGINAL_CONTEXT / wavelength - low) / (high - low)``.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if scaling_factor is None:
        return inv_freq
    wavelen = 2 * math.pi / inv_freq
    smooth = (ROPE_ORIGINAL_CONTEXT / wavelen - ROPE_LOW_FREQ_FACTOR) / (ROPE_HIGH_FREQ_FACTOR - ROPE_LOW_FREQ_FACTOR)
    interpolated = (1 - smooth) * inv_freq / scaling_factor + smooth * inv_freq
    scaled = torch.where(
        wavelen > ROPE_ORIGINAL_CONTEXT / ROPE_LOW_FREQ_FACTOR, inv_freq / scaling_factor, interpolated
    )
    return torch.where(wavelen < ROPE_ORIGINAL_CONTEXT / ROPE_HIGH_FREQ_FACTOR, inv_freq, scaled)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each consecutive pair ``(x[2i], x[2i+1])`` of every head by the angle ``t * inv_freq[i]``.

    ``x``: (B, T, n_heads, head_dim); ``cos``, ``sin``: (T, head_dim / 2), float32. Pairs are interleaved as in
    Meta's complex-number formulation: ``(a + ib) * e^{i theta}``. Computed in float32, returned in x's dtype.
    """
    x_pairs = x.float().unflatten(-1, (-1, 2))
    a, b = x_pairs[..., 0], x_pairs[..., 1]
    cos, sin = cos[:, None, :], sin[:, None, :]  # broadcast over heads
    rotated = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv_heads, T, D) -> (B, n_kv_heads * n_rep, T, D), each kv head repeated for its query group."""
    if n_rep == 1:
        return x
    B, n_kv, T, D = x.shape
    return x[:, :, None].expand(B, n_kv, n_rep, T, D).reshape(B, n_kv * n_rep, T, D)


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight``, computed in float32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_f = x.float()
        normed = x_f * torch.rsqrt(x_f.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class Attention(nn.Module):
    """Grouped-query causal self-attention with RoPE on queries and keys."""

    def __init__(self, config: Llama3Config) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.wq = nn.Linear(config.n_embd, config.n_head * self.head_dim, bias=False)
        self.wk = nn.Linear(config.n_embd, config.n_kv_head * self.head_dim, bias=False)
        self.wv = nn.Linear(config.n_embd, config.n_kv_head * self.head_dim, bias=False)
        self.wo = nn.Linear(config.n_head * self.head_dim, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.wq(x), self.wk(x), self.wv(x)
        # Head counts come from the activation widths so that column-sharded projections (tensor
        # parallelism) give each rank its own n_head / tp query and n_kv_head / tp kv heads.
        n_local_heads = q.shape[-1] // self.head_dim
        n_local_kv_heads = k.shape[-1] // self.head_dim
        q = apply_rope(q.view(B, T, n_local_heads, self.head_dim), cos, sin).transpose(1, 2)
        k = apply_rope(k.view(B, T, n_local_kv_heads, self.head_dim), cos, sin).transpose(1, 2)
        v = v.view(B, T, n_local_kv_heads, self.head_dim).transpose(1, 2)
        n_rep = n_local_heads // n_local_kv_heads
        y = F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(B, T, n_local_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: ``w2(silu(w1(x)) * w3(x))``."""

    def __init__(self, config: Llama3Config) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.n_embd, config.ffn_hidden, bias=False)
        self.w2 = nn.Linear(config.ffn_hidden, config.n_embd, bias=False)
        self.w3 = nn.Linear(config.n_embd, config.ffn_hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: ``x + attention(attention_norm(x))``, then ``x + feed_forward(ffn_norm(x))``."""

    def __init__(self, config: Llama3Config) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama3(nn.Module):
    """LLaMA-3 language model. ``forward(idx, targets)`` returns ``(logits, loss)``.

    Initialisation (deterministic under ``torch.manual_seed``): Linear and Embedding weights are
    ``N(0, 0.02^2)``, the residual output projections (``wo``, ``w2``) use ``std = 0.02 / sqrt(2 * n_layer)``,
    RMSNorm weights are 1. RoPE tables are recomputed in float32 on every forward, so they are not part of
    the state dict and do not lose precision when the model is cast to bfloat16.

    Parallel layouts read :attr:`parallel_plan` and build pipeline stages with :meth:`pipeline_stage`.
    """

    parallel_plan: ClassVar[ParallelPlan] = ParallelPlan(
        blocks="layers",
        attention="attention",
        mlp="feed_forward",
        norms=("attention_norm", "ffn_norm"),
        attention_in=("attention.wq", "attention.wk", "attention.wv"),
        attention_out="attention.wo",
        mlp_in=("feed_forward.w1", "feed_forward.w3"),
        mlp_out="feed_forward.w2",
        embedding="tok_embeddings",
        final_norm="norm",
        head="output",
        block_extra_inputs=2,  # RoPE cos and sin
    )

    def __init__(self, config: Llama3Config) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList([TransformerBlock(config) for _ in range(config.n_layer)])
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.output = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count, excluding the input token embedding when ``non_embedding``."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_embeddings.weight.numel()
        return n

    def rope_cos_sin(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the RoPE angles ``t * inv_freq[i]`` for positions ``t < T``: (T, head_dim / 2)."""
        cfg = self.config
        inv_freq = rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling_factor).to(device)
        angles = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv_freq)
        return angles.cos(), angles.sin()

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx``: (B, T) int64 token ids with ``T <= block_size``. Returns logits (B, T, vocab_size) and,
        when ``targets`` (B, T) is given, the mean cross-entropy over all B*T tokens (nats/token)."""
        _, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length must be <= block_size, got T={T}, block_size={self.config.block_size}")
        cos, sin = self.rope_cos_sin(T, idx.device)
        x = self.tok_embeddings(idx)
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.output(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def pipeline_stage(self, lo: int, hi: int, first: bool, last: bool) -> Llama3Stage:
        """Blocks ``[lo, hi)`` as one pipeline stage, with the embeddings (``first``) or the head (``last``)."""
        return Llama3Stage(self, lo, hi, first, last)


class Llama3Stage(nn.Module):
    """Blocks ``[lo, hi)`` of a :class:`Llama3`, sharing its modules: ``forward(x)`` takes token ids on the
    first stage (else the residual stream) and returns logits on the last (else the residual stream). The
    RoPE tables are recomputed on each stage (deterministic, not parameters)."""

    def __init__(self, model: Llama3, lo: int, hi: int, first: bool, last: bool) -> None:
        super().__init__()
        self.first, self.last = first, last
        self._rope = model.rope_cos_sin
        if first:
            self.tok_embeddings = model.tok_embeddings
        self.blocks = nn.ModuleList(list(model.layers)[lo:hi])
        if last:
            self.norm, self.head = model.norm, model.output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos, sin = self._rope(x.shape[1], x.device)
        if self.first:
            x = self.tok_embeddings(x)
        for block in self.blocks:
            x = block(x, cos, sin)
        if self.last:
            x = self.head(self.norm(x))
        return x
