"""Cost of ``scheduler.step()``: lrkit beside torch.optim.lr_scheduler, per class, in the same process.

One param group (SGD with momentum, so CyclicLR and OneCycleLR also cycle momentum).
Each measurement builds a fresh optimizer and scheduler, then times ``--steps`` calls
of ``step()``; the best of ``--repeats`` is reported. Time is this process's CPU time
(``time.process_time``), so other load on a shared machine does not count against
either library; the two are measured alternately. Goal: lrkit <= 0.5x torch.

    .venv/bin/python benchmarks/step_overhead.py [--steps 20000] [--repeats 9] [--only StepLR,...] [--tensor-lr]

``--tensor-lr`` gives the param group a 0-dim float32 Tensor LR (as for a compiled optimizer),
which both libraries then compute in float32 and fill in place.
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import lr_scheduler as torch_lr
from torch.optim import swa_utils

import lrkit

GOAL = 0.5


def inverse_time(epoch: int) -> float:
    return 1.0 / (1.0 + 0.001 * epoch)


def constant_factor(epoch: int) -> float:
    return 0.9999


def builders(steps: int) -> dict[str, Callable[[Any, Any], Any]]:
    """Class name -> ``build(module, optimizer)``; the same arguments for both libraries."""
    return {
        "LambdaLR": lambda m, o: m.LambdaLR(o, inverse_time),
        "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, constant_factor),
        "StepLR": lambda m, o: m.StepLR(o, step_size=100, gamma=0.99),
        "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[steps // 4, steps // 2, 3 * steps // 4]),
        "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=steps // 10),
        "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.01, total_iters=steps),
        "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9999),
        "SequentialLR": lambda m, o: m.SequentialLR(
            o,
            [m.LinearLR(o, start_factor=0.01, total_iters=steps // 10), m.CosineAnnealingLR(o, T_max=steps)],
            milestones=[steps // 10],
        ),
        "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=steps, power=2.0),
        "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=steps // 3, eta_min=1e-5),
        "ChainedScheduler": lambda m, o: m.ChainedScheduler(
            [m.StepLR(o, step_size=100, gamma=0.99), m.ExponentialLR(o, gamma=0.9999)], o
        ),
        "ReduceLROnPlateau": lambda m, o: m.ReduceLROnPlateau(o, patience=10),
        "CyclicLR": lambda m, o: m.CyclicLR(o, base_lr=0.001, max_lr=0.1, step_size_up=500),
        "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=1000, T_mult=2),
        "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=0.1, total_steps=steps + 1),
        # torch's SWALR lives in torch.optim.swa_utils
        "SWALR": lambda m, o: (swa_utils if m is torch_lr else m).SWALR(o, swa_lr=0.01, anneal_epochs=steps // 2),
    }


def time_steps(build: Callable[[Any, Any], Any], module: Any, steps: int, plateau: bool, tensor_lr: bool) -> float:
    """Seconds for ``steps`` calls of ``step()`` on a freshly built scheduler."""
    lr: Any = torch.tensor(0.1) if tensor_lr else 0.1
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    scheduler = build(module, optimizer)
    step = scheduler.step
    loop = range(steps)
    gc.collect()
    gc.disable()
    try:
        if plateau:
            start = time.process_time()
            for _ in loop:
                step(1.0)
        else:
            start = time.process_time()
            for _ in loop:
                step()
        return time.process_time() - start
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="step() calls per measurement")
    parser.add_argument("--repeats", type=int, default=9, help="measurements per class and library; best is kept")
    parser.add_argument("--only", default="", help="comma-separated class names (default: all 16)")
    parser.add_argument("--tensor-lr", action="store_true", help="a 0-dim float32 Tensor LR in the param group")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # torch's step-order warning; lrkit emits none
    torch.set_num_threads(1)

    table = builders(args.steps)
    names = [n for n in table if not args.only or n in args.only.split(",")]
    kind = "a float32 Tensor LR" if args.tensor_lr else "a float LR"
    print(f"torch {torch.__version__}, {args.steps} steps x best of {args.repeats}, one param group with {kind}")
    print(f"{'class':<28} {'torch us/step':>14} {'lrkit us/step':>14} {'ratio':>7}")
    worst = 0.0
    for name in names:
        best = {"torch": float("inf"), "lrkit": float("inf")}
        for _ in range(args.repeats):  # interleaved, so drift in machine speed hits both alike
            for label, module in (("torch", torch_lr), ("lrkit", lrkit)):
                seconds = time_steps(table[name], module, args.steps, name == "ReduceLROnPlateau", args.tensor_lr)
                best[label] = min(best[label], seconds)
        torch_us, lrkit_us = (best[k] / args.steps * 1e6 for k in ("torch", "lrkit"))
        ratio = lrkit_us / torch_us
        worst = max(worst, ratio)
        flag = "" if args.tensor_lr or ratio <= GOAL else "  above goal"
        print(f"{name:<28} {torch_us:>14.3f} {lrkit_us:>14.3f} {ratio:>7.2f}{flag}")
    if args.tensor_lr:  # both run the same tensor operations, which dominate: the ratio is near 1
        print(f"worst ratio {worst:.2f} (no goal: a Tensor LR is computed with torch's own tensor operations)")
    else:
        print(f"worst ratio {worst:.2f} (goal <= {GOAL})")


if __name__ == "__main__":
    main()
