"""A nanoGPT-equivalent training loop: the anchor that ``train_throughput.py`` measures lrkit's trainer beside.

Written for lrkit from nanoGPT's published design (``model.py`` / ``train.py`` by Karpathy), not copied:

* the model: token + position embeddings, pre-norm blocks with one fused ``c_attn`` projection
  (q, k, v in one matmul), causal ``scaled_dot_product_attention``, a GELU MLP of width 4d,
  LayerNorm without bias, a final LayerNorm and a head tied to the token embedding; init
  N(0, 0.02), the residual projections N(0, 0.02 / sqrt(2 n_layer));
* the loop: random contiguous windows of the token array as the batch (nanoGPT's ``get_batch``),
  forward, backward, ``clip_grad_norm_(1.0)``, ``AdamW`` (betas 0.9/0.95, weight decay 0.1 on
  the matrices, torch's default foreach implementation on CPU), ``zero_grad(set_to_none=True)``,
  and the warmup + cosine LR written into every param group by hand each iteration;
* its timing: wall clock per iteration, as nanoGPT's ``dt``.

It runs in this process on the same tokens and threads as lrkit's trainer, so the ratio of the two
is taken under the same load.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(d, bias=False)
        self.c_attn = nn.Linear(d, 3 * d, bias=False)
        self.attn_proj = nn.Linear(d, d, bias=False)
        self.ln_2 = nn.LayerNorm(d, bias=False)
        self.c_fc = nn.Linear(d, 4 * d, bias=False)
        self.mlp_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    """nanoGPT's GPT at a given shape (no bias, no dropout)."""

    def __init__(self, vocab: int, block: int, n_layer: int, n_head: int, d: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(block, d)
        self.h = nn.ModuleList([_Block(d, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def nanogpt_tokens_per_s(
    tokens: np.ndarray,
    steps: int,
    skip: int,
    batch_size: int = 16,
    block_size: int = 128,
    shape: tuple[int, int, int] = (4, 4, 128),
    vocab: int = 256,
    seed: int = 1337,
) -> list[float]:
    """Train ``skip + steps`` iterations; the tokens/s of each of the last ``steps`` (wall clock per iteration)."""
    torch.manual_seed(seed)
    n_layer, n_head, d = shape
    model = NanoGPT(vocab, block_size, n_layer, n_head, d)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    data = torch.from_numpy(tokens.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    total = skip + steps
    warmup, peak, floor = max(1, total // 5), 1e-3, 1e-4
    rates = []
    for it in range(total):
        t0 = time.perf_counter()
        if it < warmup:
            lr = peak * (it + 1) / (warmup + 1)
        else:
            lr = floor + 0.5 * (1 + math.cos(math.pi * (it - warmup) / max(1, total - warmup))) * (peak - floor)
        for group in optimizer.param_groups:
            group["lr"] = lr
        ix = torch.randint(len(data) - block_size, (batch_size,), generator=gen)
        x = torch.stack([data[i : i + block_size] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        dt = time.perf_counter() - t0
        if it >= skip:
            rates.append(batch_size * block_size / dt)
    return rates
