"""The batch-size ramp (lrkit.schedules.batch) against direct computations: Megatron-LM's rampup calculator
written out with exact fractions, the LR factor's formula, and a step-by-step count of the updates."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from lrkit.schedules.batch import BatchRamp, BatchRampError, parse_batch_ramp
from tests.conftest import megatron_batch

RAMPS = [
    BatchRamp(256, 2048, 10_000_000_000, 8),
    BatchRamp(2, 8, 640, 2),
    BatchRamp(3, 24, 1000, 3),
    BatchRamp(16, 16, 512, 4),  # no growth: the start batch throughout
    BatchRamp(1, 97, 977, 1),  # a prime length: every rounding is a floor of a fraction
]


@pytest.mark.parametrize("ramp", RAMPS, ids=str)
def test_the_batch_is_megatrons_rampup_on_the_token_clock(ramp: BatchRamp) -> None:
    probes = sorted({0, 1, ramp.ramp_tokens - 1, ramp.ramp_tokens, ramp.ramp_tokens + 1, 3 * ramp.ramp_tokens}
                    | {ramp.ramp_tokens * k // 37 for k in range(37)})  # fmt: skip
    for clock in probes:
        expected = megatron_batch(ramp.start, ramp.increment, ramp.end, ramp.ramp_tokens, clock)
        assert ramp.sequences(clock) == expected, clock


def test_the_batch_moves_on_its_grid_and_never_decreases() -> None:
    ramp = BatchRamp(3, 24, 1000, 3)
    sizes = [ramp.sequences(c) for c in range(1200)]
    assert all(b % 3 == 0 and 3 <= b <= 24 for b in sizes)
    assert sizes == sorted(sizes) and sizes[0] == 3 and sizes[999] < 24 and sizes[1000] == 24


@pytest.mark.parametrize(("rule", "power"), [("none", 0), ("linear", 1), ("sqrt", Fraction(1, 2))])
def test_the_lr_factor_is_the_batch_ratio_to_the_power_of_the_rule(rule: str, power: Fraction) -> None:
    ramp = BatchRamp(2, 8, 640, 2, lr_scaling=rule)
    for clock in range(0, 800, 16):
        ratio = ramp.sequences(clock) / 2
        expected = 1.0 if power == 0 else ratio if power == 1 else math.sqrt(ratio)
        assert ramp.lr_factor(clock) == expected
    assert ramp.lr_factor(640) == {"none": 1.0, "linear": 4.0, "sqrt": 2.0}[rule]  # (8 / 2) ** p at the end


@pytest.mark.parametrize("ramp", RAMPS[1:], ids=str)
@pytest.mark.parametrize("sequence_length", [1, 32, 7])
def test_steps_to_reach_counts_the_updates_one_by_one(ramp: BatchRamp, sequence_length: int) -> None:
    for total in (0, 1, ramp.ramp_tokens, 3 * ramp.ramp_tokens + 5, 40 * sequence_length):
        for start_clock in (0, sequence_length * 4):
            clock, steps = start_clock, 0
            while clock < total:  # the direct count
                clock += ramp.sequences(clock) * sequence_length
                steps += 1
            assert ramp.steps_to_reach(total, start_clock, sequence_length) == steps


def test_the_ramp_round_trips_as_plain_data() -> None:
    ramp = BatchRamp(256, 2048, 10_000_000_000, 64, lr_scaling="sqrt")
    assert BatchRamp.from_dict(ramp.to_dict()) == ramp
    assert parse_batch_ramp(str(ramp).split(" ")[0], 2048, lr_scaling="sqrt") == ramp


def test_parse_reads_tokens_samples_and_the_increment() -> None:
    assert parse_batch_ramp("linear:256:2048:10Btok", 2048, increment=8) == BatchRamp(256, 2048, 10**10, 8)
    assert parse_batch_ramp("linear:256:2048:5Msamples:64", 2048) == BatchRamp(256, 2048, 5 * 10**6 * 2048, 64)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("256:2048:10Btok", r"is not a batch ramp; expected linear:START:END:LENGTH"),
        ("cosine:256:2048:10Btok", r"is not a batch ramp"),
        ("linear:256:2048", r"is not a batch ramp"),
        ("linear:2048:256:10Btok", r"start must be <= end, got start=2048, end=256"),
        ("linear:256:2040:10Btok:64", r"end - start must be a multiple of increment, .* = 1784, increment=64"),
        ("linear:0:2048:10Btok", r"START must be a whole number of sequences >= 1, got '0'"),
        ("linear:256:2.5:10Btok", r"END must be a whole number of sequences >= 1, got '2.5'"),
        ("linear:256:2048:1000", r"LENGTH '1000' is in steps; expected tokens or samples"),
        ("linear:256:2048:0.1dur", r"LENGTH '0.1dur' is in dur; expected tokens or samples"),
        ("linear:256:2048:0tok", r"ramp_tokens must be a positive int, got ramp_tokens=0"),
        ("linear:256:2048:ten", r"LENGTH 'ten' is not a quantity"),
    ],
)
def test_a_bad_ramp_is_refused_naming_the_flag_and_the_value(text: str, match: str) -> None:
    with pytest.raises(BatchRampError, match=match) as caught:
        parse_batch_ramp(text, 128)
    assert f"--batch-size-schedule {text!r}" in str(caught.value)


def test_an_unknown_scaling_rule_or_bad_state_is_refused() -> None:
    with pytest.raises(BatchRampError, match=r"lr_scaling must be one of 'none', 'linear', 'sqrt'; got lr_scaling="):
        BatchRamp(2, 8, 640, 2, lr_scaling="cube")
    with pytest.raises(BatchRampError, match=r"state: start must be a positive int, got start=-2"):
        BatchRamp.from_dict({**BatchRamp(2, 8, 640, 2).to_dict(), "start": -2}, "state")
    with pytest.raises(BatchRampError, match=r"unknown keys \['shape'\]"):
        BatchRamp.from_dict({**BatchRamp(2, 8, 640, 2).to_dict(), "shape": "linear"})
