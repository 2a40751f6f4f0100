"""Cost of one optimizer update for the tiny GPT-2: the trainer's default (``--optimizer-impl auto``) beside
torch's own default, in the same process.

The parameters and param groups are the trainer's (``lrkit.train.models.build_model`` and
``lrkit.train.components.param_groups``: weight decay 0.1 on the matrices), with random gradients. On CPU,
``torch.optim.AdamW`` without ``fused``/``foreach`` runs a Python for-loop over the parameters (what
nanoGPT's ``train.py`` gets); ``auto`` picks the fused kernel (one call over all of them). Each
implementation is timed for ``--steps`` calls of ``optimizer.step()``, alternately, ``--repeats``
times; the best (least disturbed) repeat is reported, in wall-clock ms per update.

    .venv/bin/python benchmarks/optimizer_update.py [--steps 50] [--repeats 5] [--threads 2] [--optimizer adamw]
"""

from __future__ import annotations

import argparse
import time

import torch

from lrkit.train.arguments import add_train_arguments
from lrkit.train.components import optimizer_impl_kwargs, param_groups
from lrkit.train.models import build_model

IMPLS = ("for-loop", "foreach", "fused")


def time_updates(optimizer: torch.optim.Optimizer, steps: int) -> float:
    """ms per ``optimizer.step()``, over ``steps`` calls after 3 warm-up calls."""
    for _ in range(3):
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="updates per timing (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per implementation (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--optimizer", choices=["adamw", "adam"], default="adamw")
    opts = parser.parse_args()
    for name in ("steps", "repeats", "threads"):
        if getattr(opts, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(opts, name)}")
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    model = build_model("gpt2", "tiny")
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    trainer_flags = argparse.ArgumentParser()
    add_train_arguments(trainer_flags)
    cls = torch.optim.AdamW if opts.optimizer == "adamw" else torch.optim.Adam
    kwargs = {"lr": 1e-3, "betas": (0.9, 0.95)}

    def build(impl: str) -> torch.optim.Optimizer:
        args = trainer_flags.parse_args(["--optimizer", opts.optimizer, "--optimizer-impl", impl])
        return cls(param_groups(model, 0.1), **kwargs, **optimizer_impl_kwargs(args))

    auto = optimizer_impl_kwargs(trainer_flags.parse_args(["--optimizer", opts.optimizer]))
    print(
        f"torch {torch.__version__}, {opts.optimizer} over GPT-2 --preset tiny: {len(params)} tensors, "
        f"{sum(p.numel() for p in params) / 1e6:.3f}M parameters, {opts.threads} threads; "
        f"best of {opts.repeats} x {opts.steps} updates"
    )
    print(f"--optimizer-impl auto gives {auto or 'torch default'}")
    best = {impl: float("inf") for impl in IMPLS}
    optimizers = {impl: build(impl) for impl in IMPLS}
    for repeat in range(opts.repeats):
        for impl in IMPLS if repeat % 2 == 0 else IMPLS[::-1]:
            best[impl] = min(best[impl], time_updates(optimizers[impl], opts.steps))
    for impl in IMPLS:
        print(f"  {impl:<9} {best[impl]:7.3f} ms per update")
    print(f"ratio fused / for-loop (torch's CPU default): {best['fused'] / best['for-loop']:.2f}x")


if __name__ == "__main__":
    main()
