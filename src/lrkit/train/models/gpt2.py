"""GPT-2 in plain PyTorch, readable in one sitting (after nanoGPT and llm.c's ``train_gpt2.py``).

Architecture: learned token and position embeddings, pre-LayerNorm blocks of causal self-attention and a
GELU MLP, a final LayerNorm, and an output head whose weight is tied to the token embedding.

Tensor-parallel friendly: the attention projections are separate ``c_q``/``c_k``/``c_v`` Linear layers
(column-parallel) followed by ``c_proj`` (row-parallel), and the MLP is ``c_fc`` (column) then ``c_proj``
(row). Attention derives its number of heads from the width of the projected activations, so a
column-sharded ``c_q`` that holds ``n_head / tp`` heads per rank works unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lrkit.train.models.layout import ParallelPlan


@dataclass(frozen=True)
class GPT2Config:
    """Shape of a GPT-2 model.

    ``vocab_size`` is the number of token ids (256 for the byte tokenizer; 50257 for the GPT-2 BPE, which
    the ``124M`` preset pads to 50304, a multiple of 64, for faster matmuls). ``block_size`` is the
    longest sequence, in tokens, the position embedding covers. ``bias`` adds biases to Linear and
    LayerNorm layers (the original GPT-2 has them). ``dropout`` is the drop probability used on
    embeddings, attention weights and residual branches during training. ``gelu_approximate`` is
    ``torch.nn.GELU``'s argument: ``"tanh"`` is GPT-2's (and llm.c's) GELU, ``"none"`` the exact erf form
    (nanoGPT's), about twice as fast on CPU; the small presets use it, ``124M`` uses ``"tanh"``.
    """

    vocab_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256
    bias: bool = False
    dropout: float = 0.0
    gelu_approximate: str = "none"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got dropout={self.dropout!r}")
        if self.gelu_approximate not in ("none", "tanh"):
            raise ValueError(
                f"gelu_approximate must be 'none' or 'tanh', got gelu_approximate={self.gelu_approximate!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


GPT2_PRESETS: dict[str, GPT2Config] = {
    "tiny": GPT2Config(vocab_size=256, n_layer=4, n_head=4, n_embd=128, block_size=256),
    "small": GPT2Config(vocab_size=256, n_layer=6, n_head=6, n_embd=384, block_size=256),
    "124M": GPT2Config(vocab_size=50304, n_layer=12, n_head=12, n_embd=768, block_size=1024, gelu_approximate="tanh"),
}


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: ``softmax(q k^T / sqrt(head_dim) + causal_mask) v``."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.c_q = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_k = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_v = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.c_q(x), self.c_k(x), self.c_v(x)
        # Heads come from the activation width, not the config: under tensor parallelism each rank
        # holds only its column shard of c_q/c_k/c_v, i.e. n_head / tp heads.
        n_local_heads = q.shape[-1] // self.head_dim
        q = q.view(B, T, n_local_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, n_local_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, n_local_heads, self.head_dim).transpose(1, 2)
        dropout_p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, n_local_heads * self.head_dim)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """``c_proj(gelu(c_fc(x)))`` with a 4x hidden width, as in GPT-2."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate=config.gelu_approximate)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm residual block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """GPT-2's trunk, a plain container (nanoGPT's ``transformer`` ModuleDict, with attribute types)."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)


class GPT2(nn.Module):
    """GPT-2 language model. ``forward(idx, targets)`` returns ``(logits, loss)``.

    Parallel layouts read :attr:`parallel_plan` and build pipeline stages with :meth:`pipeline_stage`.

    Initialisation (deterministic under ``torch.manual_seed``): every Linear and Embedding weight is
    ``N(0, 0.02^2)``, biases are 0, and the residual output projections (``c_proj``) use
    ``std = 0.02 / sqrt(2 * n_layer)`` so the residual stream's variance does not grow with depth.
    """

    parallel_plan: ClassVar[ParallelPlan] = ParallelPlan(
        blocks="transformer.h",
        attention="attn",
        mlp="mlp",
        norms=("ln_1", "ln_2"),
        attention_in=("attn.c_q", "attn.c_k", "attn.c_v"),
        attention_out="attn.c_proj",
        mlp_in=("mlp.c_fc",),
        mlp_out="mlp.c_proj",
        embedding="transformer.wte",
        final_norm="transformer.ln_f",
        head="lm_head",
        tied_head=True,
    )

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.transformer = Transformer(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied input/output embeddings
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; the position embedding is excluded when ``non_embedding`` (the token
        embedding is shared with ``lm_head`` and so always counted once)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx``: (B, T) int64 token ids with ``T <= block_size``. Returns logits (B, T, vocab_size) and,
        when ``targets`` (B, T) is given, the mean cross-entropy over all B*T tokens (nats/token)."""
        _, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length must be <= block_size, got T={T}, block_size={self.config.block_size}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def pipeline_stage(self, lo: int, hi: int, first: bool, last: bool) -> GPT2Stage:
        """Blocks ``[lo, hi)`` as one pipeline stage, with the embeddings (``first``) or the head (``last``)."""
        return GPT2Stage(self, lo, hi, first, last)


class GPT2Stage(nn.Module):
    """Blocks ``[lo, hi)`` of a :class:`GPT2`, sharing its modules: ``forward(x)`` takes token ids on the
    first stage (else the residual stream) and returns logits on the last (else the residual stream)."""

    def __init__(self, model: GPT2, lo: int, hi: int, first: bool, last: bool) -> None:
        super().__init__()
        self.first, self.last = first, last
        if first:
            self.wte, self.wpe, self.drop = model.transformer.wte, model.transformer.wpe, model.transformer.drop
        self.blocks = nn.ModuleList(list(model.transformer.h)[lo:hi])
        if last:
            self.norm, self.head = model.transformer.ln_f, model.lm_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            pos = torch.arange(x.shape[1], dtype=torch.long, device=x.device)
            x = self.drop(self.wte(x) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        if self.last:
            x = self.head(self.norm(x))
        return x
