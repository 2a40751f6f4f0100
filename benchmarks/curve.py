"""Evaluating a whole schedule at once vs stepping a torch scheduler through it.

lrkit: ``WarmupCosine`` evaluated over a numpy array of 1,000,000 steps in one call.
Anchors, measured in the same run: PyTorch's ``SequentialLR(LinearLR, CosineAnnealingLR)``
(the torch-native warmup + cosine) and PyTorch's ``LambdaLR`` driving the same pure
schedule (what ``build_scheduler(spec, backend="torch")`` builds), each stepped 1,000,000 times.

    python benchmarks/curve.py [--steps N]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from lrkit import schedules as S
from lrkit.schedulers.llm import WarmupCosine


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Fastest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def step_torch(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> np.ndarray:
    """Step ``scheduler`` ``steps`` times, collecting the LR after each construction/step."""
    out = np.empty(steps)
    out[0] = scheduler.get_last_lr()[0]
    for i in range(1, steps):
        scheduler.step()
        out[i] = scheduler.get_last_lr()[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Detected call of")
    steps, warmup, peak = args.steps, args.steps // 100, 3e-4
    schedule = S.WarmupCosine(peak, warmup, steps - 1, min_lr=0.0)
    grid = np.arange(steps)
    schedule(grid[:1000])  # warm the allocator and numpy's dispatch
    t_lrkit = best_of(5, lambda: schedule(grid))
    curve = schedule(grid)

    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)

    def torch_sequential() -> np.ndarray:
        opt = optimizer()
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-8, end_factor=1.0, total_iters=warmup)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps - 1 - warmup)
        return step_torch(torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[warmup]), steps)

    def torch_lambda() -> np.ndarray:
        opt = optimizer()
        return step_torch(WarmupCosine.torch_builder(opt, warmup_steps=warmup, total_steps=steps - 1), steps)

    start = time.perf_counter()
    sequential = torch_sequential()
    t_sequential = time.perf_counter() - start
    start = time.perf_counter()
    lambda_lrs = torch_lambda()
    t_lambda = time.perf_counter() - start

    print(f"warmup + cosine over {steps:,} steps (peak {peak}, warmup {warmup:,})")
    rows = [
        ("lrkit  WarmupCosine over a numpy array, one call", t_lrkit),
        ("torch  SequentialLR(LinearLR, CosineAnnealingLR), stepped", t_sequential),
        ("torch  LambdaLR(the same schedule), stepped", t_lambda),
    ]
    for label, seconds in rows:
        print(f"  {label:<58} {seconds * 1e3:9.1f} ms   {seconds / t_lrkit:6.1f}x lrkit")
    after = slice(warmup, None)
    print(f"  max |lrkit - LambdaLR| / peak:                   {np.max(np.abs(curve - lambda_lrs)) / peak:.1e}")
    print(f"  max |lrkit - SequentialLR| / peak, after warmup: {np.max(np.abs(curve - sequential)[after]) / peak:.1e}")
    print(f"  goal <= 50 ms for the array evaluation: {'met' if t_lrkit <= 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
