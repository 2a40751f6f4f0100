"""The schedule shapes at their edges: every refusal's exact message, the smallest accepted arguments, and each
schedule's phases, jumps, peak and end, derived from its arguments (issue 19: what mutation testing found unpinned).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from lrkit import schedules as S

PEAK, FLOOR, START = 3e-4, 3e-5, 1e-6


def exactly(message: str) -> str:
    """A ``match=`` pattern for the whole message, nothing before or after it."""
    return "^" + re.escape(message) + "$"


# ----------------------------------------------------------------------------- every refusal, word for word

REFUSALS = [
    (
        lambda: S.WarmupConstant(PEAK, 3, warmup_start_lr=2 * PEAK),
        ValueError,
        f"warmup_start_lr must be <= peak_lr, got warmup_start_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.WarmupCosine(PEAK, 100, 100),
        ValueError,
        "total_steps must be > warmup_steps (the decay needs at least one step), got warmup_steps=100, total_steps=100",
    ),
    (
        lambda: S.WarmupCosine(PEAK, 0, 0),
        ValueError,
        "total_steps must be a positive int, got total_steps=0",
    ),
    (
        lambda: S.WarmupLinear(PEAK, 2, 10, warmup_start_lr=2 * PEAK),
        ValueError,
        f"warmup_start_lr must be <= peak_lr, got warmup_start_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.WSD(PEAK, 0, 100, decay_steps=10, decay_shape="exponential"),
        ValueError,
        "decay_shape='exponential' needs min_lr > 0, got min_lr=0.0",
    ),
    (
        lambda: S.WSD(PEAK, 10, 100),
        ValueError,
        "WSD needs exactly one of decay_steps or decay_fraction, got decay_steps=None, decay_fraction=None",
    ),
    (
        lambda: S.WSD(PEAK, 10, 100, decay_steps=10, decay_fraction=0.1),
        ValueError,
        "WSD needs exactly one of decay_steps or decay_fraction, got decay_steps=10, decay_fraction=0.1",
    ),
    (
        lambda: S.WSD(PEAK, 0, 10, decay_fraction=0.04),
        ValueError,
        "decay_fraction * total_steps must round to at least 1 step, got decay_fraction=0.04, total_steps=10",
    ),
    (
        lambda: S.WSD(PEAK, 50, 100, decay_steps=51),
        ValueError,
        "warmup_steps + decay steps must be <= total_steps, got warmup_steps=50, decay steps=51, total_steps=100",
    ),
    (
        lambda: S.WSD(PEAK, 0, 100, decay_steps=0),
        ValueError,
        "decay_steps must be a positive int, got decay_steps=0",
    ),
    (
        lambda: S.WSD(PEAK, 0, 100, decay_fraction=0.0),
        ValueError,
        "decay_fraction must be in (0.0, 1.0], got decay_fraction=0.0",
    ),
    (
        lambda: S.WSD(PEAK, 0, 100, decay_fraction=1.5),
        ValueError,
        "decay_fraction must be in (0.0, 1.0], got decay_fraction=1.5",
    ),
    (
        lambda: S.WSD(PEAK, 0, 100, decay_steps=10, warmup_start_lr=2 * PEAK),
        ValueError,
        f"warmup_start_lr must be <= peak_lr, got warmup_start_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.WarmupConstant(PEAK, -1),
        ValueError,
        "warmup_steps must be an int >= 0, got warmup_steps=-1",
    ),
    (
        lambda: S.WarmupLinear(PEAK, -1, 10),
        ValueError,
        "warmup_steps must be an int >= 0, got warmup_steps=-1",
    ),
    (
        lambda: S.WSD(PEAK, -1, 100, decay_steps=10),
        ValueError,
        "warmup_steps must be an int >= 0, got warmup_steps=-1",
    ),
    (
        lambda: S.WSD(PEAK, 0, 0, decay_steps=1),
        ValueError,
        "total_steps must be a positive int, got total_steps=0",
    ),
    (
        lambda: S.WSD(PEAK, 0, 100, decay_steps=10, min_lr=2 * PEAK),
        ValueError,
        f"min_lr must be <= peak_lr, got min_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.WSDS(PEAK, 30, decay_steps=3),
        TypeError,
        "cycle_ends must be a non-empty list of ints, got cycle_ends=30",
    ),
    (
        lambda: S.WSDS(PEAK, [10, 20, 15], decay_steps=3),
        ValueError,
        "cycle_ends must be strictly increasing, got cycle_ends=[10, 20, 15]",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20), warmup_steps=-1, decay_steps=3),
        ValueError,
        "warmup_steps must be an int >= 0, got warmup_steps=-1",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20)),
        ValueError,
        "WSDS needs exactly one of decay_steps or decay_fraction, got decay_steps=None, decay_fraction=None",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20), decay_fraction=0.0),
        ValueError,
        "decay_fraction must be in (0.0, 1.0], got decay_fraction=0.0",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20), decay_fraction=1.01),
        ValueError,
        "decay_fraction must be in (0.0, 1.0], got decay_fraction=1.01",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20), decay_steps=0),
        ValueError,
        "decay_steps must be a positive int, got decay_steps=0",
    ),
    (
        lambda: S.WSDS(PEAK, (40, 50), decay_fraction=0.04),
        ValueError,
        "decay_fraction * cycle length must round to at least 1 step, got decay_fraction=0.04, cycle 1 of 10 steps",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20), warmup_steps=5, decay_steps=6),
        ValueError,
        "warmup_steps + decay steps must be <= the cycle's length, got warmup_steps=5, decay steps=6, "
        "cycle 0 = [0, 10) of 10 steps",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20, 30), rewarmup_steps=5, decay_steps=6),
        ValueError,
        "rewarmup_steps + decay steps must be <= the cycle's length, got rewarmup_steps=5, decay steps=6, "
        "cycle 1 = [10, 20) of 10 steps",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20), decay_steps=3, decay_shape="exponential"),
        ValueError,
        "decay_shape='exponential' needs min_lr > 0, got min_lr=0.0",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20), decay_steps=3, min_lr=2 * PEAK),
        ValueError,
        f"min_lr must be <= peak_lr, got min_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.WSDS(PEAK, (10, 20), warmup_steps=3, decay_steps=3, warmup_start_lr=2 * PEAK),
        ValueError,
        f"warmup_start_lr must be <= peak_lr, got warmup_start_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, decay_steps=10),
        ValueError,
        "PowerLR decays only with total_steps, got total_steps=None with decay_steps=10, decay_fraction=None",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, decay_fraction=0.1),
        ValueError,
        "PowerLR decays only with total_steps, got total_steps=None with decay_steps=None, decay_fraction=0.1",
    ),
    (
        lambda: S.PowerLR(PEAK, 0.0, -0.5),
        ValueError,
        "coefficient must be in (0.0, inf), got coefficient=0.0",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, 0.0),
        ValueError,
        "exponent must be in [-1.0, 0.0), got exponent=0.0",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -1.01),
        ValueError,
        "exponent must be in [-1.0, 0.0), got exponent=-1.01",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, warmup_steps=-1),
        ValueError,
        "warmup_steps must be an int >= 0, got warmup_steps=-1",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, total_steps=0, decay_steps=1),
        ValueError,
        "total_steps must be a positive int, got total_steps=0",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, total_steps=100),
        ValueError,
        "PowerLR needs exactly one of decay_steps or decay_fraction, got decay_steps=None, decay_fraction=None",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, total_steps=100, decay_steps=10, decay_shape="step"),
        ValueError,
        "decay_shape must be one of 'linear', 'cosine', '1-sqrt', 'exponential'; got decay_shape='step'",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, total_steps=100, decay_steps=10, decay_shape="exponential"),
        ValueError,
        "decay_shape='exponential' needs min_lr > 0, got min_lr=0.0",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, total_steps=100, decay_steps=10, min_lr=-1.0),
        ValueError,
        "min_lr must be in [0.0, inf), got min_lr=-1.0",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, total_steps=1000, decay_steps=100, min_lr=PEAK),
        ValueError,
        f"min_lr must be <= power(total_steps - decay steps), got min_lr={PEAK!r}, "
        f"power(total_steps - decay steps)={3e-3 * 900**-0.5!r}",
    ),
    (
        lambda: S.PowerLR(PEAK, 3e-3, -0.5, warmup_steps=400, warmup_start_lr=PEAK),
        ValueError,
        f"warmup_start_lr must be <= power(warmup_steps), got warmup_start_lr={PEAK!r}, "
        f"power(warmup_steps)={3e-3 * 400**-0.5!r}",
    ),
    (
        lambda: S.PowerLR(-1.0, 3e-3, -0.5),
        ValueError,
        "peak_lr must be in [0.0, inf), got peak_lr=-1.0",
    ),
    (
        lambda: S.InverseSqrt(PEAK, 0),
        ValueError,
        "InverseSqrt needs timescale >= 1 when warmup_steps=0, got timescale=None",
    ),
    (
        lambda: S.InverseSqrt(PEAK, 3, timescale=0),
        ValueError,
        "timescale must be a positive int, got timescale=0",
    ),
    (
        lambda: S.InverseSqrt(PEAK, 3, warmup_start_lr=2 * PEAK),
        ValueError,
        f"warmup_start_lr must be <= peak_lr, got warmup_start_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 10, cycle_warmup_steps=10),
        ValueError,
        "cycle_warmup_steps must be < cycle_steps, got cycle_warmup_steps=10, cycle_steps=10",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 0),
        ValueError,
        "cycle_steps must be a positive int, got cycle_steps=0",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 10, cycle_mult=0),
        ValueError,
        "cycle_mult must be a positive int, got cycle_mult=0",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 10, cycle_decay=0.0),
        ValueError,
        "cycle_decay must be in (0.0, 1.0], got cycle_decay=0.0",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 10, cycle_decay=1.5),
        ValueError,
        "cycle_decay must be in (0.0, 1.0], got cycle_decay=1.5",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 10, min_lr=2 * PEAK),
        ValueError,
        f"min_lr must be <= peak_lr, got min_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 10, warmup_steps=-1),
        ValueError,
        "warmup_steps must be an int >= 0, got warmup_steps=-1",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 10, cycle_warmup_steps=-1),
        ValueError,
        "cycle_warmup_steps must be an int >= 0, got cycle_warmup_steps=-1",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 10, warmup_start_lr=2 * PEAK),
        ValueError,
        f"warmup_start_lr must be <= peak_lr, got warmup_start_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.CosineWithRestarts(PEAK, 10, num_cycles=0),
        ValueError,
        "num_cycles must be a positive int, got num_cycles=0",
    ),
    (
        lambda: S.LogWarmup(PEAK, 0),
        ValueError,
        "warmup_steps must be a positive int, got warmup_steps=0",
    ),
    (
        lambda: S.LogWarmup(PEAK, 3, warmup_start_lr=2 * PEAK),
        ValueError,
        f"warmup_start_lr must be <= peak_lr, got warmup_start_lr={2 * PEAK!r}, peak_lr={PEAK!r}",
    ),
    (
        lambda: S.ExponentialRamp(0.0, 1.0, 5),
        ValueError,
        "start_lr must be in (0.0, inf), got start_lr=0.0",
    ),
    (
        lambda: S.ExponentialRamp(1.0, 0.0, 5),
        ValueError,
        "end_lr must be in (0.0, inf), got end_lr=0.0",
    ),
    (
        lambda: S.ExponentialRamp(1.0, 2.0, 1),
        ValueError,
        "num_steps must be an int >= 2, got num_steps=1",
    ),
    (
        lambda: S.Sequence([], []),
        TypeError,
        "schedules must be a non-empty list of Schedule, got schedules=[]",
    ),
    (
        lambda: S.Sequence("ab", []),
        TypeError,
        "schedules must be a non-empty list of Schedule, got schedules='ab'",
    ),
    (
        lambda: S.Sequence([S.Constant(1.0), 2.0], [3]),
        TypeError,
        "schedules must be a non-empty list of Schedule, got schedules=[Constant(value=1.0), 2.0]",
    ),
    (
        lambda: S.Sequence([S.Constant(1.0), S.Constant(2.0)], 3),
        ValueError,
        "boundaries must have one entry fewer than schedules (1), got boundaries=3",
    ),
    (
        lambda: S.Sequence([S.Constant(1.0), S.Constant(2.0)], [3, 4]),
        ValueError,
        "boundaries must have one entry fewer than schedules (1), got boundaries=[3, 4]",
    ),
    (
        lambda: S.Sequence([S.Constant(1.0), S.Constant(2.0), S.Constant(3.0)], [4, 4]),
        ValueError,
        "boundaries must be strictly increasing, got boundaries=[4, 4]",
    ),
    (
        lambda: S.Sequence([S.Constant(1.0), S.Constant(2.0), S.Constant(3.0)], [5, 4]),
        ValueError,
        "boundaries must be strictly increasing, got boundaries=[5, 4]",
    ),
    (
        lambda: S.Sequence([S.Constant(1.0), S.Constant(2.0)], [0]),
        ValueError,
        "boundaries[0] must be a positive int, got boundaries[0]=0",
    ),
    (
        lambda: S.Product(S.Constant(1.0), 2.0),
        TypeError,
        "b must be a Schedule, got b=2.0",
    ),
    (
        lambda: S.Product(0.5, S.Constant(1.0)),
        TypeError,
        "a must be a Schedule, got a=0.5",
    ),
    (
        lambda: S.Decay(1.0, 10, 0.0, "exponential"),
        ValueError,
        "decay_shape='exponential' needs start_lr > 0 and min_lr > 0, got start_lr=1.0, min_lr=0.0",
    ),
    (
        lambda: S.Decay(0.0, 10, 0.1, "exponential"),
        ValueError,
        "decay_shape='exponential' needs start_lr > 0 and min_lr > 0, got start_lr=0.0, min_lr=0.1",
    ),
    (
        lambda: S.Decay(1.0, 0),
        ValueError,
        "decay_steps must be a positive int, got decay_steps=0",
    ),
    (
        lambda: S.Decay(1.0, 10, -0.5),
        ValueError,
        "min_lr must be in [0.0, inf), got min_lr=-0.5",
    ),
    (
        lambda: S.Decay(1.0, 10, 0.0, "step"),
        ValueError,
        "decay_shape must be one of 'linear', 'cosine', '1-sqrt', 'exponential'; got decay_shape='step'",
    ),
    (
        lambda: S.Refit(0.5, 0, 1.0),
        TypeError,
        "schedule must be a Schedule, got schedule=0.5",
    ),
    (
        lambda: S.Refit(S.InverseSqrt(1.0, 10), 0, 1.0),
        ValueError,
        "schedule must end at a final LR to be refitted, got InverseSqrt",
    ),
    (
        lambda: S.Refit(S.WarmupLinear(1.0, 0, 10, 0.1), 10, 1.0),
        ValueError,
        "schedule must still be above its final LR at offset to be refitted, got offset=10 (LR 0.1), "
        "final LR 0.1 from step 10",
    ),
    (
        lambda: S.Refit(S.WarmupLinear(1.0, 0, 10, 0.1), -1, 1.0),
        ValueError,
        "offset must be an int >= 0, got offset=-1",
    ),
    (
        lambda: S.Refit(S.WarmupLinear(1.0, 0, 10, 0.1), 2, -1.0),
        ValueError,
        "start_lr must be in [0.0, inf), got start_lr=-1.0",
    ),
    (
        lambda: S.HFPolynomialFactor(10, 10, 0.0, 1.0, 1.0),
        ValueError,
        "polynomial needs num_warmup_steps != num_training_steps (transformers divides by "
        "num_training_steps - num_warmup_steps = 0 at step 10), got num_warmup_steps=10, num_training_steps=10",
    ),
    (
        lambda: S.HFWSDFactor(3, 10, 5, warmup_type="exponential"),
        ValueError,
        "Unknown warmup type: exponential, expected 'linear', 'cosine' or '1-sqrt'",
    ),
    (
        lambda: S.HFWSDFactor(3, 10, 5, decay_type="exponential"),
        ValueError,
        "Unknown decay type: exponential, expected 'linear', 'cosine' or '1-sqrt'",
    ),
    (
        lambda: S.HFInverseSqrtFactor(-1, 5),
        ValueError,
        "num_warmup_steps must be an int >= 0, got num_warmup_steps=-1",
    ),
    (
        lambda: S.HFLinearFactor(0, -1),
        ValueError,
        "num_training_steps must be an int >= 0, got num_training_steps=-1",
    ),
    (
        lambda: S.HFCosineWarmupWithMinLRFactor(3, 30, 0.5, math.inf),
        ValueError,
        "min_lr_rate must be finite, got min_lr_rate=inf",
    ),
    (
        lambda: S.HFWSDFactor(3, 10, 5, num_cycles=math.nan),
        ValueError,
        "num_cycles must be finite, got num_cycles=nan",
    ),
    (
        lambda: S.HFPolynomialFactor(3, 30, math.inf, 1.0, 1e-3),
        ValueError,
        "lr_end must be finite, got lr_end=inf",
    ),
    (
        lambda: S.HFWSDFactor(3, 10, 5, min_lr_ratio=math.inf),
        ValueError,
        "min_lr_ratio must be finite, got min_lr_ratio=inf",
    ),
    (
        lambda: S.HFCosineWarmupWithMinLRFactor(3, 30, 0.5, 0.1, math.inf),
        ValueError,
        "warmup_lr_rate must be finite, got warmup_lr_rate=inf",
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), REFUSALS, ids=[r[2][:40] for r in REFUSALS])
def test_every_refusal_names_the_argument_the_value_and_what_was_expected(make, error, message):
    with pytest.raises(error, match=exactly(message)):
        make()


@pytest.mark.parametrize(
    ("step", "error", "message"),
    [
        (-1, ValueError, "step must be finite and >= 0, got step=-1"),
        (math.inf, ValueError, "step must be finite and >= 0, got step=inf"),
        ("3", TypeError, "step must be a number or a numpy array, got step='3' (str)"),
        (True, TypeError, "step must be a number or a numpy array, got step=True (bool)"),
        ([0.0, -2.0], ValueError, "steps must be finite and >= 0, got min=np.float64(-2.0), max=np.float64(0.0)"),
        ((1.0, math.inf), ValueError, "steps must be finite and >= 0, got min=np.float64(1.0), max=np.float64(inf)"),
    ],
)
def test_a_bad_step_is_refused_word_for_word(step, error, message):
    with pytest.raises(error, match=exactly(message)):
        S.WarmupLinear(1.0, 2, 10)(step)


# ----------------------------------------------------------------------------- phases, jumps, peak and end
# Each expected list is read off the docstrings: the phase names and where each phase starts, from the arguments.

W, T = 7, 40


def describe(schedule: S.Schedule, until: float | None = None) -> tuple:
    return schedule.phases(until), schedule.jumps(until), schedule.peak(), schedule.end()


def test_the_simple_schedules_describe_themselves():
    value = 0.25
    assert describe(S.Constant(value)) == ([S.Phase("constant", 0)], [], (0, value), (0, value))
    assert describe(S.WarmupConstant(PEAK, W)) == (
        [S.Phase("warmup", 0), S.Phase("constant", W)],
        [],
        (W, PEAK),
        (W, PEAK),
    )
    assert describe(S.WarmupConstant(PEAK, 0)) == ([S.Phase("constant", 0)], [], (0, PEAK), (0, PEAK))
    assert describe(S.LogWarmup(PEAK, W)) == (
        [S.Phase("log warmup", 0), S.Phase("constant", W)],
        [],
        (W, PEAK),
        (W, PEAK),
    )
    n = 9
    up, down = S.ExponentialRamp(1e-6, 1.0, n), S.ExponentialRamp(1.0, 1e-6, n)
    ramp_phases = [S.Phase("exponential ramp", 0), S.Phase("constant", n - 1)]
    assert describe(up) == (ramp_phases, [], (n - 1, 1.0), (n - 1, 1.0))
    assert describe(down) == (ramp_phases, [], (0, 1.0), (n - 1, 1e-6))
    assert S.ExponentialRamp(0.5, 0.5, n).peak() == (n - 1, 0.5)  # a flat ramp peaks where it ends


@pytest.mark.parametrize(("make", "shape"), [(S.WarmupLinear, "linear"), (S.WarmupCosine, "cosine")])
def test_a_warmup_decay_describes_its_phases(make, shape):
    with_warmup = make(PEAK, W, T, FLOOR)
    assert describe(with_warmup) == (
        [S.Phase("warmup", 0), S.Phase(f"{shape} decay", W), S.Phase("floor", T)],
        [],
        (W, PEAK),
        (T, FLOOR),
    )
    assert make(PEAK, 0, T, FLOOR).phases() == [S.Phase(f"{shape} decay", 0), S.Phase("floor", T)]
    assert S.WarmupPolynomial(PEAK, W, T, power=2.0).phases()[1] == S.Phase("polynomial decay", W)


def test_inverse_sqrt_describes_its_phases_and_has_no_end():
    assert describe(S.InverseSqrt(PEAK, W)) == (
        [S.Phase("warmup", 0), S.Phase("inverse-sqrt decay", W)],
        [],
        (W, PEAK),
        None,
    )
    assert describe(S.InverseSqrt(PEAK, 0, timescale=5)) == ([S.Phase("inverse-sqrt decay", 0)], [], (0, PEAK), None)


def test_decay_and_refit_describe_their_phases():
    n = 12
    down, up = S.Decay(PEAK, n, FLOOR, "cosine"), S.Decay(FLOOR, n, PEAK)
    assert describe(down) == ([S.Phase("cosine decay", 0), S.Phase("floor", n)], [], (0, PEAK), (n, FLOOR))
    assert describe(up) == ([S.Phase("linear decay", 0), S.Phase("floor", n)], [], (n, PEAK), (n, PEAK))
    assert S.Decay(PEAK, n, PEAK).peak() == (0, PEAK)  # flat: the peak is at the start
    base = S.WarmupLinear(1.0, 0, T, 0.1)
    offset = 15
    assert describe(S.Refit(base, offset, 0.5)) == (
        [S.Phase("refit", 0), S.Phase("floor", T - offset)],
        [],
        None,
        (T - offset, 0.1),
    )


# ----------------------------------------------------------------------------- the smallest accepted arguments


def decay_value(schedule: S.Schedule, t: float) -> float:
    """Halfway through a one-step linear or cosine decay from ``PEAK`` to ``FLOOR``."""
    shape = "cosine" if isinstance(schedule, S.WarmupCosine) else "linear"
    c = (1 + math.cos(math.pi * t)) / 2 if shape == "cosine" else 1 - t
    return PEAK * c + FLOOR * (1 - c)


def test_one_step_schedules_are_accepted():
    """``total_steps = 1`` with no warmup: the peak at step 0, the floor from step 1."""
    for schedule in (
        S.WarmupLinear(PEAK, 0, 1, FLOOR),
        S.WarmupCosine(PEAK, 0, 1, FLOOR),
        S.WSD(PEAK, 0, 1, decay_steps=1, min_lr=FLOOR),
        S.WSD(PEAK, 0, 1, decay_fraction=1.0, min_lr=FLOOR),
        S.PowerLR(PEAK, 1.0, -0.5, total_steps=1, decay_steps=1, min_lr=FLOOR),
        S.WSDS(PEAK, (1,), decay_steps=1, min_lr=FLOOR),
        S.Decay(PEAK, 1, FLOOR),
    ):
        assert schedule.end() == (1, FLOOR), schedule
        assert [schedule(t) for t in (0, 1, 2)] == [PEAK, FLOOR, FLOOR], schedule
        assert schedule(0.5) == decay_value(schedule, 0.5), schedule


def test_inverse_sqrt_accepts_a_timescale_of_one_step_and_refuses_a_negative_warmup():
    schedule = S.InverseSqrt(PEAK, 0, timescale=1)
    steps = np.arange(20)
    assert schedule(steps).tolist() == [PEAK * math.sqrt(1 / (t + 1)) for t in steps]
    with pytest.raises(ValueError, match=exactly("warmup_steps must be an int >= 0, got warmup_steps=-1")):
        S.InverseSqrt(PEAK, -1, timescale=5)


def test_a_polynomial_decay_accepts_any_positive_power():
    """``power`` is in ``(0, inf)``: a concave decay (``power < 1``) is allowed."""
    power, floor = 0.5, FLOOR
    schedule = S.WarmupPolynomial(PEAK, 0, T, floor, power=power)
    steps = np.arange(T + 3)
    expected = [(PEAK - floor) * (1 - min(t / T, 1.0)) ** power + floor for t in steps]
    np.testing.assert_allclose(schedule(steps), expected, rtol=1e-14)
    with pytest.raises(ValueError, match=exactly("power must be in (0.0, inf), got power=0.0")):
        S.WarmupPolynomial(PEAK, 0, T, power=0.0)


@pytest.mark.parametrize("shape", S.DECAY_SHAPES)
def test_wsd_describes_its_phases_with_and_without_a_stable_phase(shape):
    decay = 10
    stable = S.WSD(PEAK, W, T, decay_steps=decay, decay_shape=shape, min_lr=FLOOR)
    assert describe(stable) == (
        [S.Phase("warmup", 0), S.Phase("stable", W), S.Phase(f"{shape} decay", T - decay), S.Phase("floor", T)],
        [],
        (W, PEAK),
        (T, FLOOR),
    )
    no_stable = S.WSD(PEAK, W, W + decay, decay_steps=decay, decay_shape=shape, min_lr=FLOOR)
    assert no_stable.phases() == [S.Phase("warmup", 0), S.Phase(f"{shape} decay", W), S.Phase("floor", W + decay)]
    no_warmup = S.WSD(PEAK, 0, T, decay_steps=decay, decay_shape=shape, min_lr=FLOOR)
    assert no_warmup.phases() == [S.Phase("stable", 0), S.Phase(f"{shape} decay", T - decay), S.Phase("floor", T)]


def test_a_wsds_cycle_without_a_stable_phase_lists_none():
    """Cycle 0 is all warmup and decay (``W + D == E_0``); cycle 1 has a stable phase."""
    warmup, decay, ends = 4, 6, (10, 20)
    schedule = S.WSDS(PEAK, ends, warmup, decay_steps=decay, min_lr=FLOOR)
    assert describe(schedule) == (
        [
            S.Phase("warmup", 0),
            S.Phase("linear decay 1", ends[0] - decay),
            S.Phase("stable 2", ends[0]),
            S.Phase("linear decay 2", ends[1] - decay),
            S.Phase("floor", ends[1]),
        ],
        [ends[0]],
        (warmup, PEAK),
        (ends[1], FLOOR),
    )
    assert schedule.phases(until=ends[0])[-1] == S.Phase("linear decay 1", ends[0] - decay)
    no_warmup = S.WSDS(PEAK, ends, decay_steps=decay)
    assert no_warmup.phases()[:2] == [S.Phase("stable 1", 0), S.Phase("linear decay 1", ends[0] - decay)]


def test_power_lr_describes_its_phases():
    a, b, decay = 3e-3, -0.5, 10
    with_stable = S.PowerLR(PEAK, a, b, warmup_steps=W, total_steps=T, decay_steps=decay, decay_shape="cosine")
    assert describe(with_stable) == (
        [S.Phase("warmup", 0), S.Phase("power-law stable", W), S.Phase("cosine decay", T - decay), S.Phase("floor", T)],
        [],
        (W, min(PEAK, a * W**b)),
        (T, 0.0),
    )
    no_stable = S.PowerLR(PEAK, a, b, warmup_steps=W, total_steps=W + decay, decay_steps=decay)
    assert no_stable.phases() == [S.Phase("warmup", 0), S.Phase("linear decay", W), S.Phase("floor", W + decay)]
    endless = S.PowerLR(PEAK, a, b)
    assert describe(endless) == ([S.Phase("power-law stable", 0)], [], (0, PEAK), None)
    assert endless.decay_length == 0


# ----------------------------------------------------------------------------- composition


def test_a_sequence_lists_the_phases_each_piece_reaches_before_until():
    warm, decay, tail = S.WarmupConstant(1.0, 5), S.WarmupLinear(1.0, 3, 20, 0.1), S.Constant(0.1)
    joined = S.Sequence([warm, decay, tail], [5, 25])
    # Each piece's phases before its end, shifted by its boundary. Cut off: the first piece's "constant" phase
    # (at 5, its end) and the second's "floor" (at 20 of its own steps, its end).
    everything = [S.Phase("warmup", 0), S.Phase("warmup", 5), S.Phase("linear decay", 5 + 3), S.Phase("constant", 25)]
    assert joined.phases() == everything
    for until in (1, 5, 6, 8, 9, 25, 26, 1000):
        assert joined.phases(until) == [p for p in everything if p.start < until], until


def test_a_sequence_asks_an_endless_piece_for_its_phases_up_to_until():
    """An endless restart schedule lists its cycles only up to the limit it is given: the piece must get it."""
    cycle = 3
    joined = S.Sequence([S.Constant(0.5), S.CosineWithRestarts(1.0, cycle)], [2])
    until = 2 + 15 * cycle
    starts = [p.start for p in joined.phases(until)]
    assert starts == [0, *range(2, until, cycle)]
    assert joined.jumps(until) == list(range(2 + cycle, until, cycle))
    assert joined.jumps(2 + cycle) == [] and joined.jumps(2 + cycle + 1) == [2 + cycle]


def test_a_sequence_shifts_the_jumps_of_each_piece_and_drops_those_past_its_boundary():
    first, second = S.CosineWithRestarts(1.0, 4, num_cycles=5), S.CosineWithRestarts(1.0, 3, num_cycles=3)
    assert first.jumps() == [4, 8, 12, 16] and second.jumps() == [3, 6]
    joined = S.Sequence([first, second], [10])
    assert joined.jumps() == [4, 8, 13, 16]
    assert joined.jumps(until=13) == [4, 8] and joined.jumps(until=14) == [4, 8, 13]


def test_a_sequence_peaks_where_a_piece_first_reaches_the_highest_lr_it_keeps():
    # A piece cut off before its own peak does not reach it.
    cut = S.Sequence([S.WarmupConstant(1.0, 10), S.Constant(0.5)], [6])
    assert cut.peak() == (6, 0.5)
    # A piece that ends exactly at its peak's step does not reach it either: the next piece owns that step.
    at_boundary = S.Sequence([S.WarmupConstant(1.0, 5), S.Constant(0.5)], [5])
    assert at_boundary(5) == 0.5 and at_boundary.peak() == (5, 0.5)
    # A later piece's peak is counted from its boundary, and is kept only inside that piece.
    later = S.Sequence([S.Constant(0.5), S.WarmupConstant(1.0, 4), S.Constant(0.25)], [3, 8])
    assert later.peak() == (3 + 4, 1.0)
    later_cut = S.Sequence([S.Constant(0.5), S.WarmupConstant(1.0, 4), S.Constant(0.25)], [3, 6])
    assert later_cut.peak() == (0, 0.5)
    # The first step of equal highs.
    assert S.Sequence([S.Constant(1.0), S.Constant(1.0)], [5]).peak() == (0, 1.0)
    # A piece without a peak is skipped; pieces without any peak give none.
    refit = S.Refit(S.WarmupLinear(1.0, 0, 10, 0.1), 2, 0.5)
    assert refit.peak() is None
    assert S.Sequence([refit, S.Constant(0.25)], [4]).peak() == (4, 0.25)
    assert S.Sequence([refit, refit], [4]).peak() is None


def test_a_product_with_a_constant_scale_takes_the_other_sides_description():
    shape = S.WarmupLinear(1.0, W, T, 0.1)
    for product in (S.Product(S.Constant(2.0), shape), S.Product(shape, S.Constant(2.0))):
        assert product.phases() == shape.phases() and product.phases(W) == shape.phases(W)
        assert product.peak() == (W, 2.0) and product.end() == (T, 2.0 * 0.1)
    endless = S.Product(S.Constant(2.0), S.InverseSqrt(1.0, W))
    assert endless.end() is None and endless.peak() == (W, 2.0)
    assert S.Product(S.Constant(2.0), S.Constant(3.0)).peak() == (0, 6.0)


def test_a_product_of_two_shapes_merges_their_phases_and_jumps_and_declares_no_peak():
    a = S.WarmupConstant(1.0, 5)
    b = S.CosineWithRestarts(1.0, 10, num_cycles=3)
    product = S.Product(a, b)
    # At a shared start the first side's name wins.
    assert product.phases() == [
        S.Phase("warmup", 0),
        S.Phase("constant", 5),
        S.Phase("cycle 2 (restart)", 10),
        S.Phase("cycle 3 (restart)", 20),
        S.Phase("floor", 30),
    ]
    assert product.phases(until=11) == [S.Phase("warmup", 0), S.Phase("constant", 5), S.Phase("cycle 2 (restart)", 10)]
    assert product.jumps() == [10, 20] == S.Product(b, S.Product(b, a)).jumps()
    assert product.peak() is None and product.end() is None


# ----------------------------------------------------------------------------- cosine with restarts


def restarts_walk(s: S.CosineWithRestarts, t: float) -> float:
    """The docstring's cycles, found by walking them with exact integer starts."""
    if t < s.warmup_steps:
        return s.warmup_start_lr + (s.peak_lr - s.warmup_start_lr) * t / s.warmup_steps
    start, i = s.warmup_steps, 0
    while s.num_cycles is None or i < s.num_cycles:
        length = s.cycle_steps * s.cycle_mult**i
        if t < start + length:
            peak = max(s.peak_lr * s.cycle_decay**i, s.min_lr)
            ramp = s.cycle_warmup_steps if i else 0
            if t - start < ramp:
                return s.min_lr + (peak - s.min_lr) * (t - start) / ramp
            p = (t - start - ramp) / (length - ramp)
            return s.min_lr + (peak - s.min_lr) * (1 + math.cos(math.pi * p)) / 2
        start, i = start + length, i + 1
    return s.min_lr


def test_the_smallest_restart_arguments_are_accepted():
    one_step = S.CosineWithRestarts(1.0, 1, num_cycles=1)
    assert one_step(0) == 1.0 and one_step(1) == 0.0 and one_step.end() == (1, 0.0)
    assert describe(one_step) == ([S.Phase("cycle 1", 0), S.Phase("floor", 1)], [], (0, 1.0), (1, 0.0))
    schedule = S.CosineWithRestarts(1.0, 1, cycle_decay=1.0)
    assert [schedule(t) for t in range(5)] == [1.0] * 5  # every step restarts at the (undecayed) peak


@pytest.mark.parametrize(("cycle", "mult"), [(2, 1), (3, 2), (1, 3)])
def test_a_warmup_longer_than_several_cycles_shifts_every_cycle(cycle, mult):
    schedule = S.CosineWithRestarts(PEAK, cycle, cycle_mult=mult, min_lr=FLOOR, warmup_steps=25, cycle_decay=0.5)
    steps = np.arange(0, 300, 0.5)
    np.testing.assert_allclose(schedule(steps), [restarts_walk(schedule, t) for t in steps], rtol=1e-12)


@pytest.mark.parametrize(("cycle", "mult"), [(1, 2), (5, 2), (1, 3), (4, 5)])
def test_a_step_just_before_a_restart_is_still_in_the_previous_cycle(cycle, mult):
    """``log`` can put a step a hair below a cycle's start into that cycle: the index is corrected exactly."""
    schedule = S.CosineWithRestarts(1.0, cycle, cycle_mult=mult, cycle_decay=0.5, min_lr=0.0)
    for i in range(1, 12):
        start = int(schedule.cycle_start(i))
        before = math.nextafter(start, 0.0)
        assert schedule(before) == restarts_walk(schedule, before), (i, before)
        assert schedule(before) < 1e-12 and schedule(start) == 0.5**i  # each restart at its own decayed peak
        assert schedule(np.array([before, start])).tolist() == [schedule(before), 0.5**i]


def test_an_integer_step_at_a_restart_that_log_puts_one_cycle_early_is_in_its_own_cycle():
    """With ``cycle_mult = 3``, ``log`` puts step 121 (the start of cycle 5 of 1-step cycles) in cycle 4."""
    schedule = S.CosineWithRestarts(1.0, 1, cycle_mult=3, cycle_decay=0.5)
    start = int(schedule.cycle_start(5))
    assert start == 1 + 3 + 9 + 27 + 81
    assert math.floor(math.log(1 + start * 2) / math.log(3)) == 4  # the raw index is one cycle early
    assert schedule(start) == 0.5**5 == restarts_walk(schedule, start)
    assert schedule(np.array([start - 1, start, start + 1])).tolist() == [
        restarts_walk(schedule, t) for t in (start - 1, start, start + 1)
    ]


def test_restarts_describe_their_cycles_floor_and_jumps():
    w, cycle, n = 4, 5, 3
    starts = [w + cycle * (2**i - 1) for i in range(n + 1)]  # 4, 9, 19, 39: cycles of 5, 10, 20 steps
    schedule = S.CosineWithRestarts(PEAK, cycle, cycle_mult=2, min_lr=FLOOR, warmup_steps=w, num_cycles=n)
    cycles = [S.Phase("cycle 1", starts[0]), S.Phase("cycle 2 (restart)", starts[1]),
              S.Phase("cycle 3 (restart)", starts[2])]  # fmt: skip
    assert describe(schedule) == (
        [S.Phase("warmup", 0), *cycles, S.Phase("floor", starts[n])],
        starts[1:n],
        (w, PEAK),
        (starts[n], FLOOR),
    )
    assert schedule.phases(until=starts[2]) == [S.Phase("warmup", 0), *cycles[:2]]
    assert schedule.phases(until=starts[2] + 1) == [S.Phase("warmup", 0), *cycles]
    assert schedule.phases(until=starts[n]) == [S.Phase("warmup", 0), *cycles]
    assert schedule.phases(until=starts[n] + 1)[-1] == S.Phase("floor", starts[n])
    assert schedule.jumps(until=starts[2]) == starts[1:2] and schedule.jumps(until=starts[2] + 1) == starts[1:3]
    soft = S.CosineWithRestarts(PEAK, cycle, cycle_mult=2, cycle_warmup_steps=2, num_cycles=n)
    assert soft.jumps() == [] and soft.phases()[0] == S.Phase("cycle 1", 0)


def test_endless_restarts_list_their_first_ten_cycles_or_every_cycle_before_until():
    cycle = 3
    endless = S.CosineWithRestarts(1.0, cycle)
    assert endless.end() is None
    names = ["cycle 1"] + [f"cycle {k} (restart)" for k in range(2, 11)]
    assert endless.phases() == [S.Phase(name, cycle * k) for k, name in enumerate(names)]
    assert endless.jumps() == [cycle * k for k in range(1, 10)]
    until = 15 * cycle + 1
    assert [p.start for p in endless.phases(until)] == list(range(0, until, cycle))
    assert endless.phases(until)[-1] == S.Phase("cycle 16 (restart)", 15 * cycle)
    assert endless.jumps(until) == list(range(cycle, until, cycle))


def test_wsds_keeps_its_branch_points_as_a_tuple():
    """A list of branch points is stored as a tuple: the schedule stays hashable and equal to one built from a tuple."""
    from_list = S.WSDS(PEAK, [10, 20], decay_steps=3)
    assert from_list.cycle_ends == (10, 20)
    assert from_list == S.WSDS(PEAK, (10, 20), decay_steps=3) and hash(from_list) == hash(
        S.WSDS(PEAK, (10, 20), decay_steps=3)
    )


# ----------------------------------------------------------------------------- transformers' factors


def test_the_hf_factors_describe_their_phases_peak_and_end():
    w, t = 3, 30
    assert describe(S.HFConstantFactor()) == ([S.Phase("constant", 0)], [], (0, 1.0), (0, 1.0))
    assert describe(S.HFConstantWithWarmupFactor(w)) == (
        [S.Phase("warmup", 0), S.Phase("constant", w)],
        [],
        (w, 1.0),
        (w, 1.0),
    )
    assert S.HFConstantWithWarmupFactor(0).peak() == (0, 1.0)
    assert describe(S.HFLinearFactor(w, t)) == (
        [S.Phase("warmup", 0), S.Phase("linear decay", w), S.Phase("floor", t)],
        [],
        (w, 1.0),
        (t, 0.0),
    )
    cosine = S.HFCosineFactor(w, t, 0.7)
    rises = [S.Phase("warmup", 0), S.Phase("cosine decay", w), S.Phase("past the end (rises)", t)]
    assert describe(cosine) == (rises, [], (w, 1.0), (t, cosine(t)))
    assert cosine(t) == max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.7 * 2.0)))  # transformers' lambda at T
    with_min = S.HFCosineWithMinLRFactor(w, t, 0.5, 0.1)
    assert describe(with_min) == (rises, [], (w, 1.0), (t, with_min(t)))
    assert with_min(t) == 0.1
    assert describe(S.HFPolynomialFactor(w, t, 1e-7, 2.0, 1e-3)) == (
        [S.Phase("warmup", 0), S.Phase("polynomial decay", w), S.Phase("floor", t)],
        [],
        (w, 1.0),
        (t, 1e-7 / 1e-3),
    )
    assert describe(S.HFInverseSqrtFactor(w, 7)) == (
        [S.Phase("warmup", 0), S.Phase("inverse-sqrt decay", w)],
        [],
        (w, 1.0),
        None,
    )
    stable, decay = 10, 8
    assert describe(S.HFWSDFactor(w, stable, decay, decay_type="1-sqrt", min_lr_ratio=0.1)) == (
        [
            S.Phase("warmup", 0),
            S.Phase("stable", w),
            S.Phase("1-sqrt decay", w + stable),
            S.Phase("floor", w + stable + decay),
        ],  # fmt: skip
        [],
        (w, 1.0),
        (w + stable + decay, 0.1),
    )


def test_cosine_warmup_with_min_lr_peaks_and_ends_one_step_early():
    w, t = 4, 30
    factor = S.HFCosineWarmupWithMinLRFactor(w, t, 0.5, 0.1)
    assert describe(factor) == (
        [S.Phase("warmup", 0), S.Phase("cosine decay", w - 1), S.Phase("past the end (rises)", t - 1)],
        [],
        (w - 1, 1.0),
        (t - 1, factor(t - 1)),
    )
    assert factor(w - 1) == 1.0 and factor(t - 1) == 0.1  # transformers' quirks: peak at W - 1, floor at T - 1
    assert factor(0) == 1 / w and factor(w - 2) == (w - 1) / w  # (t + 1) / W
    rate = 0.2
    ramp = S.HFCosineWarmupWithMinLRFactor(w, t, 0.5, 0.1, rate)
    assert [ramp(s) for s in range(w)] == [rate + (1.0 - rate) * s / (w - 1) for s in range(w)]
    no_warmup = S.HFCosineWarmupWithMinLRFactor(0, 1, 0.5, 0.1)
    assert no_warmup.phases() == [S.Phase("warmup", 0), S.Phase("cosine decay", 0), S.Phase("past the end (rises)", 0)]
    assert no_warmup.peak() == (0, 1.0) and no_warmup.end() == (0, no_warmup(0))


def test_hard_restarts_jump_where_each_cycle_starts():
    """``T - W = 32`` steps and 4 cycles: the float progress is exact, so cycles start every 8 steps after ``W``."""
    w, cycles = 2, 4
    t = w + 32
    factor = S.HFCosineWithHardRestartsFactor(w, t, cycles)
    restarts = [w + 8, w + 16, w + 24]
    assert describe(factor) == (
        [
            S.Phase("warmup", 0),
            S.Phase("cycle 1", w),
            *[S.Phase(f"cycle {k + 2} (restart)", s) for k, s in enumerate(restarts)],
            S.Phase("floor", t),
        ],  # fmt: skip
        restarts,
        (w, 1.0),
        (t, 0.0),
    )
    assert [factor(s) for s in restarts] == [1.0] * 3 and factor(t) == 0.0 and factor(t + 5) == 0.0
    one_cycle = S.HFCosineWithHardRestartsFactor(0, 1)
    assert one_cycle.jumps() == [] and one_cycle.phases()[-1] == S.Phase("floor", 1)


def transformers_lambda(name: str, *args: Any, **kwargs: Any) -> Callable[[float], float]:
    """The LR factor transformers' own ``get_<name>`` schedule computes (its ``LambdaLR``'s lambda), the oracle of
    lrkit's HF factors; skips when transformers is not installed."""
    transformers = pytest.importorskip("transformers")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return getattr(transformers, f"get_{name}")(optimizer, *args, **kwargs).lr_lambdas[0]


HALF_STEPS = [k / 2 for k in range(0, 13)]


@pytest.mark.parametrize(("w", "total"), [(1, 2), (0, 1), (1, 5), (3, 4)])
def test_the_hf_factors_follow_transformers_lambdas_at_fractional_steps_and_one_step_phases(w, total):
    cases = [
        (S.HFConstantWithWarmupFactor(w), transformers_lambda("constant_schedule_with_warmup", w)),
        (S.HFLinearFactor(w, total), transformers_lambda("linear_schedule_with_warmup", w, total)),
        (S.HFCosineFactor(w, total, 0.7), transformers_lambda("cosine_schedule_with_warmup", w, total, 0.7)),
        (
            S.HFCosineWithMinLRFactor(w, total, 0.5, 0.1),
            transformers_lambda("cosine_with_min_lr_schedule_with_warmup", w, total, 0.5, min_lr_rate=0.1),
        ),
        (
            S.HFCosineWithHardRestartsFactor(w, total, 2),
            transformers_lambda("cosine_with_hard_restarts_schedule_with_warmup", w, total, 2),
        ),
        (
            S.HFCosineWarmupWithMinLRFactor(w, total, 0.5, 0.1),
            transformers_lambda("cosine_with_min_lr_schedule_with_warmup_lr_rate", w, total, 0.5, min_lr_rate=0.1),
        ),
        (
            S.HFCosineWarmupWithMinLRFactor(w, total, 0.5, 0.1, warmup_lr_rate=0.2),
            transformers_lambda(
                "cosine_with_min_lr_schedule_with_warmup_lr_rate", w, total, 0.5, min_lr_rate=0.1, warmup_lr_rate=0.2
            ),
        ),
    ]
    for factor, oracle in cases:
        assert [factor(t) for t in HALF_STEPS] == [oracle(t) for t in HALF_STEPS], type(factor).__name__
        assert factor(np.asarray(HALF_STEPS)).tolist() == [oracle(t) for t in HALF_STEPS], type(factor).__name__


@pytest.mark.parametrize("warmup_type", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("decay_type", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize(("w", "s", "d"), [(4, 2, 3), (1, 0, 1), (0, 3, 2), (2, 0, 0)])
def test_the_hf_wsd_factor_follows_transformers_lambda(warmup_type, decay_type, w, s, d):
    r, cycles = 0.1, 0.5
    factor = S.HFWSDFactor(w, s, d, warmup_type, decay_type, r, cycles)
    hf = transformers_lambda(
        "wsd_schedule", w, d, num_stable_steps=s, warmup_type=warmup_type, decay_type=decay_type, min_lr_ratio=r,
        num_cycles=cycles,
    )  # fmt: skip
    oracle = [hf(t) for t in HALF_STEPS]
    assert [factor(t) for t in HALF_STEPS] == oracle
    assert factor(np.asarray(HALF_STEPS)).tolist() == oracle


def test_an_hf_polynomial_of_power_zero_holds_until_its_end_then_drops_to_lr_end():
    """transformers returns ``lr_end / lr_init`` only *after* ``T``; at ``T`` it computes ``pct ** 0 = 1``."""
    w, total, lr_end, lr_init = 3, 30, 1e-7, 1e-3
    factor = S.HFPolynomialFactor(w, total, lr_end, 0.0, lr_init)
    assert factor(total) == 1.0 and factor(total + 1) == lr_end / lr_init
    assert factor(np.array([total, total + 1])).tolist() == [1.0, lr_end / lr_init]
    assert factor.end() == (total + 1, lr_end / lr_init)  # the floor starts after the jump
    assert factor.jumps() == [total + 1] and factor.jumps(total + 1) == [] and factor.phases()[-1].start == total + 1
    smooth = S.HFPolynomialFactor(w, total, lr_end, 1.0, lr_init)  # power > 0: the floor is reached at T
    assert smooth(total) == lr_end / lr_init and smooth.end() == (total, lr_end / lr_init) and smooth.jumps() == []


def test_a_large_cap_leaves_the_power_law_below_it_unclamped():
    """With ``a * 1 ** b = 1 < P = 10`` the power law is already below the cap at step 1."""
    peak, a, b = 10.0, 1.0, -0.5
    schedule = S.PowerLR(peak, a, b)
    steps = [0.005, 0.01, 0.5, 1, 4, 25, 100]
    assert [schedule(t) for t in steps] == [min(peak, a * t**b) for t in steps]


def test_ends_are_counted_from_where_the_last_piece_or_the_refit_starts():
    assert S.Sequence([S.Constant(1.0), S.WarmupLinear(1.0, 0, 20, 0.1)], [5]).end() == (5 + 20, 0.1)
    rising = S.HFCosineFactor(0, 10)  # rises again after its end at step 10
    refit = S.Refit(rising, 15, 0.5)
    assert rising(15) > rising.end()[1] and refit.end() == (0, rising.end()[1])


def test_a_product_asks_each_side_for_its_phases_and_jumps_up_to_until():
    cycle, until = 3, 3 * 15 + 1  # an endless side lists 10 cycles without until, 16 before this one
    endless, other = S.CosineWithRestarts(1.0, cycle), S.WarmupConstant(1.0, 2)
    for product in (S.Product(endless, other), S.Product(other, endless)):
        assert [p.start for p in product.phases(until)] == sorted({0, 2, *range(0, until, cycle)})
        assert product.jumps(until) == list(range(cycle, until, cycle))
    for scaled in (S.Product(S.Constant(2.0), endless), S.Product(endless, S.Constant(2.0))):
        assert scaled.phases(until) == endless.phases(until)


def test_an_hf_constant_with_no_warmup_is_constant_from_step_0():
    assert S.HFConstantWithWarmupFactor(0).phases() == [S.Phase("warmup", 0), S.Phase("constant", 0)]


def test_a_sequence_ending_in_endless_restarts_lists_what_the_restarts_list_on_their_own():
    """Without ``until``, the last piece is asked without one too (it used to be asked up to infinity, and an
    endless ``CosineWithRestarts`` then counted its cycles for ever)."""
    restarts = S.CosineWithRestarts(1.0, 10)
    sequence = S.Sequence([S.WarmupConstant(1.0, 5), restarts], [5])
    assert sequence.phases() == [S.Phase("warmup", 0), *[S.Phase(p.name, 5 + p.start) for p in restarts.phases()]]
    assert sequence.jumps() == [5 + j for j in restarts.jumps()] and len(restarts.jumps()) == 9
    assert sequence.phases(40) == [S.Phase("warmup", 0), *[S.Phase(p.name, 5 + p.start) for p in restarts.phases(35)]]
