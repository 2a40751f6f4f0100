"""WSD-S, PowerLR and LogWarmup against schedules PyTorch builds from its own classes.

The catalog's torch backend of these schedules is ``LambdaLR`` over lrkit's own pure schedule (test_llm checks it
to about one rounding): it drives the same math, so it checks the stepping, not the formula. Here the oracle is
independent: a ``SequentialLR`` of torch's ``LinearLR`` / ``ConstantLR`` / ``CosineAnnealingLR`` pieces, one per
phase, with ``LambdaLR`` only for what torch has no class for (the power law, the log ramp).

Not bit-exact, by construction of torch's classes: ``SequentialLR`` starts each piece from its closed form (so
every phase starts exactly), but within a phase ``LinearLR`` and ``CosineAnnealingLR`` are recurrences that
multiply the previous LR by a ratio each step, and ``LambdaLR`` computes ``base_lr * factor``. Their LRs drift by a
few ulp from any closed form; the comparisons use ``rtol=1e-13`` (about 450 ulp), far below any formula error.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LambdaLR, LinearLR, SequentialLR

import lrkit
from lrkit import schedules as S
from tests.conftest import run_schedule

PEAK, FLOOR, START = 3e-3, 1e-4, 1e-5
RTOL = 1e-13


def make_optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=PEAK)


def sequence(optimizer: torch.optim.Optimizer, pieces: list[tuple[int, object]]) -> SequentialLR:
    """torch's SequentialLR of ``(start step, scheduler)`` pieces (the first starts at 0)."""
    assert pieces[0][0] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR passes an epoch to the pieces it enters
        return SequentialLR(optimizer, [p for _, p in pieces], milestones=[s for s, _ in pieces[1:]])


def hold(optimizer: torch.optim.Optimizer, lr: float) -> LinearLR:
    """A constant ``lr`` (a LinearLR from and to ``lr / PEAK``: its closed form starts it exactly)."""
    return LinearLR(optimizer, lr / PEAK, lr / PEAK, total_iters=1)


def torch_decay(optimizer: torch.optim.Optimizer, shape: str, high: float, steps: int) -> object:
    if shape == "cosine":
        return CosineAnnealingLR(optimizer, T_max=steps, eta_min=FLOOR)
    return LinearLR(optimizer, high / PEAK, FLOOR / PEAK, total_iters=steps)


def torch_wsds(optimizer, ends, warmup, decay, shape, rewarmup) -> SequentialLR:
    """Warmup, then per cycle: re-warmup, stable (ConstantLR(1)), decay; the floor held after the last end."""
    pieces: list[tuple[int, object]] = []
    if warmup:
        pieces.append((0, LinearLR(optimizer, START / PEAK, 1.0, total_iters=warmup)))
    start = 0
    for k, end in enumerate(ends):
        ramp = warmup if k == 0 else rewarmup
        if k and rewarmup:
            pieces.append((start, LinearLR(optimizer, FLOOR / PEAK, 1.0, total_iters=rewarmup)))
        if end - decay > start + ramp:
            pieces.append((start + ramp, ConstantLR(optimizer, factor=1.0, total_iters=0)))
        pieces.append((end - decay, torch_decay(optimizer, shape, PEAK, decay)))
        start = end
    pieces.append((ends[-1], hold(optimizer, FLOOR)))
    return sequence(optimizer, pieces)


@pytest.mark.parametrize("shape", ["linear", "cosine"])
@pytest.mark.parametrize("rewarmup", [0, 6])
def test_wsds_equals_torchs_sequential_composition(shape, rewarmup):
    ends, warmup, decay, steps = [50, 120, 200], 10, 20, 230
    spec = {
        "type": "WSDS",
        "cycle_ends": ends,
        "warmup_steps": warmup,
        "decay_steps": decay,
        "decay_shape": shape,
        "min_lr": FLOOR,
        "rewarmup_steps": rewarmup,
        "warmup_start_lr": START,
    }
    optimizer = make_optimizer()
    ours = [lr[0] for lr in run_schedule(lrkit.build_scheduler(spec, optimizer), optimizer, steps)]
    optimizer = make_optimizer()
    theirs = [
        lr[0] for lr in run_schedule(torch_wsds(optimizer, ends, warmup, decay, shape, rewarmup), optimizer, steps)
    ]
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=0)
    # Where torch's pieces start from their closed forms, the LRs are the same floats.
    starts = [0, warmup, *ends] + [e - decay for e in ends]
    assert [ours[t] for t in starts] == [theirs[t] for t in starts]


def test_powerlr_equals_torchs_sequential_composition():
    """Warmup (LinearLR to power(W)), the power law (LambdaLR: torch has none), the decay (LinearLR)."""
    a, b, warmup, total, decay = 3e-2, -0.5, 20, 300, 60

    def power(n: float) -> float:
        return min(PEAK, a * n**b)

    optimizer = make_optimizer()
    pieces = [
        (0, LinearLR(optimizer, START / PEAK, power(warmup) / PEAK, total_iters=warmup)),
        (warmup, LambdaLR(optimizer, lambda u: power(u + warmup) / PEAK)),
        (total - decay, torch_decay(optimizer, "linear", power(total - decay), decay)),
        (total, hold(optimizer, FLOOR)),
    ]
    theirs = [lr[0] for lr in run_schedule(sequence(optimizer, pieces), optimizer, total + 20)]
    spec = {
        "type": "PowerLR",
        "coefficient": a,
        "exponent": b,
        "warmup_steps": warmup,
        "total_steps": total,
        "decay_steps": decay,
        "min_lr": FLOOR,
        "warmup_start_lr": START,
    }
    optimizer = make_optimizer()
    ours = [lr[0] for lr in run_schedule(lrkit.build_scheduler(spec, optimizer), optimizer, total + 20)]
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=0)
    assert ours[warmup] == PEAK and ours[200] < PEAK  # the cap, then the power law (a / sqrt(t) < P past t = 100)


def test_log_warmup_then_cosine_equals_torchs_composition():
    """lrkit's LogWarmup then WarmupCosine in a SequentialLR spec, against torch's SequentialLR of a LambdaLR with
    DeepSpeed's log ramp (``W + 1`` steps in DeepSpeed's terms) and torch's CosineAnnealingLR."""
    warmup, total = 30, 200
    spec = {
        "type": "SequentialLR",
        "milestones": [warmup],
        "schedulers": [
            {"type": "LogWarmup", "warmup_steps": warmup, "warmup_start_lr": START},
            {"type": "WarmupCosine", "warmup_steps": 0, "total_steps": total - warmup, "min_lr": FLOOR},
        ],
    }
    inverse_log = 1.0 / math.log(warmup + 1)  # DeepSpeed's inverse_log_warm_up with warmup_num_steps = W + 1
    optimizer = make_optimizer()
    pieces = [
        (0, LambdaLR(optimizer, lambda t: (START + (PEAK - START) * inverse_log * math.log(t + 1)) / PEAK)),
        (warmup, CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=FLOOR)),
        (total, hold(optimizer, FLOOR)),
    ]
    theirs = [lr[0] for lr in run_schedule(sequence(optimizer, pieces), optimizer, total + 10)]
    optimizer = make_optimizer()
    ours = [lr[0] for lr in run_schedule(lrkit.build_scheduler(spec, optimizer), optimizer, total + 10)]
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=0)
    assert ours[0] == START and ours[warmup] == PEAK and ours[total:] == [FLOOR] * 11
    assert ours[:warmup] == [S.LogWarmup(PEAK, warmup, START)(t) for t in range(warmup)]
