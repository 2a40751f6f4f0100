"""Time in steps, tokens, samples or a fraction of the run (lrkit.schedules.clock): quantities, the
conversions to a clock, and a clock's schedule seen per optimizer step."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from lrkit import schedules as S
from lrkit.schedules.clock import (
    QUANTITY_SYNTAX,
    Quantity,
    QuantityError,
    RateError,
    Rates,
    StepView,
    clock_unit,
    parse_quantity,
    steps_to_reach,
)


@pytest.mark.parametrize(
    "text,amount,unit",
    [
        ("2000", 2000, "steps"),
        ("2K", 2000, "steps"),
        ("300steps", 300, "steps"),
        ("512tok", 512, "tokens"),
        ("50Mtok", 50_000_000, "tokens"),
        ("10Btok", 10_000_000_000, "tokens"),
        ("1Ttokens", 10**12, "tokens"),
        ("2ktok", 2000, "tokens"),
        ("0.3Mtok", 300_000, "tokens"),  # exact: decimal, not 0.3 * 1e6 in binary floating point
        ("1e3tok", 1000, "tokens"),
        ("1.5Msamples", 1_500_000, "samples"),
        ("0.01dur", 0.01, "dur"),
        ("1dur", 1.0, "dur"),
        (" 4Ktok ", 4000, "tokens"),
    ],
)
def test_quantities_parse(text: str, amount: float, unit: str) -> None:
    quantity = parse_quantity(text, "--warmup")
    assert (quantity.amount, quantity.unit) == (amount, unit)
    assert type(quantity.amount) is (float if unit == "dur" else int)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("5x", "is not a quantity"),
        ("tok", "is not a quantity"),
        ("-5tok", "is not a quantity"),
        ("", "is not a quantity"),
        ("5Tok", "is not a quantity"),  # T is the multiplier: "ok" is not a unit
        ("1.5tok", "whole number of tokens"),
        ("1.2dur", "must be in [0, 1]"),
    ],
)
def test_bad_quantities_name_the_flag_and_the_value(text: str, expected: str) -> None:
    with pytest.raises(QuantityError) as err:
        parse_quantity(text, "--warmup")
    message = str(err.value)
    assert message.startswith(f"--warmup {text!r}") and expected in message
    if expected == "is not a quantity":
        assert QUANTITY_SYNTAX in message


def test_the_clock_is_tokens_if_any_length_is_in_tokens_else_samples_else_steps() -> None:
    assert clock_unit(["steps", "tokens", "dur"]) == "tokens"
    assert clock_unit(["samples", "tokens"]) == "tokens"
    assert clock_unit(["samples", "steps"]) == "samples"
    assert clock_unit(["steps", "dur"]) == "steps"
    assert clock_unit([]) == "steps"


def test_conversions_to_the_clock() -> None:
    rates = Rates(tokens_per_step=4096, sequence_length=128)
    assert rates.convert(Quantity(10, "steps"), "tokens") == 40960
    assert rates.convert(Quantity(10, "steps"), "samples") == 320
    assert rates.convert(Quantity(10, "samples"), "tokens") == 1280
    assert rates.convert(Quantity(0.25, "dur"), "tokens", total=1000) == 250
    assert rates.convert(Quantity(0.0015, "dur"), "steps", total=1000) == 2  # round(1.5): the nearest even
    with pytest.raises(RateError, match="tokens per optimizer step"):
        Rates().convert(Quantity(10, "steps", "10"), "tokens", name="--warmup-steps")
    with pytest.raises(RateError, match="sequence length"):
        Rates(tokens_per_step=4096).convert(Quantity(10, "samples"), "tokens")
    with pytest.raises(QuantityError, match="fraction of the run"):
        rates.convert(Quantity(0.1, "dur", "0.1dur"), "tokens", name="--warmup")
    with pytest.raises(QuantityError, match="cannot take a length in tokens"):
        rates.convert(Quantity(10, "tokens"), "steps")


def test_steps_to_reach_is_the_ceiling() -> None:
    assert steps_to_reach(2000, 0, 128) == 16  # 15 steps read 1920 tokens, the 16th passes 2000
    assert steps_to_reach(2048, 768, 256) == 5
    assert steps_to_reach(100, 200, 8) == 0


def test_step_view_is_the_schedule_at_step_times_rate() -> None:
    pure = S.WarmupCosine(1e-2, 512, 4096, 1e-4)
    view = StepView(pure, 1000)
    steps = np.arange(6)
    assert view(steps).tolist() == [pure(1000 * s) for s in steps]
    assert view.end() == (5, 1e-4)  # ceil(4096 / 1000)
    assert view.peak() == (0.512, 1e-2)
    assert S.schedule_from_dict(view.to_dict()) == view


@pytest.mark.parametrize("tokens_per_step", [4000, 4097, 127])
def test_a_samples_clock_needs_whole_samples_per_step(tokens_per_step: int) -> None:
    rates = Rates(tokens_per_step=tokens_per_step, sequence_length=128)
    expected = (
        "tokens_per_step must be a multiple of sequence_length to count samples, "
        f"got tokens_per_step={tokens_per_step}, sequence_length=128"
    )
    with pytest.raises(QuantityError, match=f"^{expected}$"):
        rates.per_step("samples")
    with pytest.raises(QuantityError, match=f"^--warmup 10 is in steps but the schedule counts samples: {expected}$"):
        rates.convert(Quantity(10, "steps", "10"), "samples", name="--warmup")
    whole = tokens_per_step - tokens_per_step % 128 + 128  # rounded up to whole samples, it converts
    assert Rates(tokens_per_step=whole, sequence_length=128).convert(Quantity(10, "steps"), "samples") == 10 * (
        whole // 128
    )


def test_a_quantity_keeps_the_text_typed_and_names_the_argument() -> None:
    for typed in (" 4Ktok ", "0.01dur", "0dur", "300steps"):
        quantity = parse_quantity(typed, "--warmup")
        assert quantity.text == typed.strip() and str(quantity) == typed.strip()
    assert parse_quantity("0dur").amount == 0.0  # the closed interval [0, 1] includes 0
    syntax = f"is not a quantity; expected {QUANTITY_SYNTAX}"
    with pytest.raises(QuantityError, match=f"^quantity '5x' {re.escape(syntax)}$"):
        parse_quantity("5x")  # the default name
    with pytest.raises(QuantityError, match=f"^'5x' {re.escape(syntax)}$"):
        parse_quantity("5x", "")  # no name: the value alone
    for wrong_type in (2.0, True, None):  # 2.0 would parse as "2.0" were its type not refused first
        with pytest.raises(QuantityError, match=f"^--warmup {re.escape(repr(str(wrong_type)))} {re.escape(syntax)}$"):
            parse_quantity(wrong_type, "--warmup")  # type: ignore[arg-type]


def test_steps_per_step_is_one_and_samples_per_step_is_an_int() -> None:
    assert Rates().per_step("steps") == 1  # no rate is needed for the step clock
    samples = Rates(tokens_per_step=4096, sequence_length=128).per_step("samples")
    assert samples == 4096 // 128 and type(samples) is int
    with pytest.raises(RateError, match="^converting between samples and tokens needs the sequence length$"):
        Rates(tokens_per_step=4096).per_step("samples")


def test_step_view_maps_phases_and_jumps_to_the_first_step_at_or_after_them() -> None:
    pure = S.CosineWithRestarts(1.0, 10, cycle_mult=2, warmup_steps=5)
    for per_step in (1, 3):
        view = StepView(pure, per_step)
        for until in (None, 30):
            limit = None if until is None else until * per_step
            assert view.phases(until) == [(p.name, math.ceil(p.start / per_step)) for p in pure.phases(limit)]
            assert view.jumps(until) == sorted({math.ceil(j / per_step) for j in pure.jumps(limit)})
        assert view.end() is None and pure.end() is None
    refit = S.Refit(S.WarmupLinear(1.0, 0, 20), 4, 0.5)
    assert refit.peak() is None and StepView(refit, 2).peak() is None
    assert StepView(refit, 2).end() == (math.ceil(refit.end()[0] / 2), refit.end()[1])


def test_step_view_checks_its_arguments() -> None:
    pure = S.WarmupLinear(1.0, 0, 20)
    assert StepView(pure, 1)(7) == pure(7)
    with pytest.raises(ValueError, match="^per_step must be a positive int, got per_step=0$"):
        StepView(pure, 0)
    with pytest.raises(TypeError, match=r"^schedule must be a Schedule, got schedule=0\.1$"):
        StepView(0.1, 1)  # type: ignore[arg-type]


def test_a_quantity_without_its_text_shows_amount_and_unit() -> None:
    assert str(Quantity(10, "steps")) == "10"  # steps are the default unit: none is shown
    assert str(Quantity(512, "tokens")) == "512tokens"
    assert parse_quantity(str(Quantity(512, "tokens"))) == Quantity(512, "tokens", "512tokens")  # it parses back


def test_rates_check_their_arguments_and_name_what_a_conversion_lacks() -> None:
    assert Rates(tokens_per_step=1, sequence_length=1).per_step("samples") == 1  # 1 is allowed
    for name in ("tokens_per_step", "sequence_length"):
        with pytest.raises(ValueError, match=f"^{name} must be a positive int, got {name}=0$"):
            Rates(**{name: 0})
    with pytest.raises(ValueError, match="^unit must be one of steps, tokens, samples, got unit='dur'$"):
        Rates().convert(Quantity(1, "steps"), "dur")
    with pytest.raises(
        RateError,
        match="^--warmup 10samples is in samples but the schedule counts tokens: "
        "converting between samples and tokens needs the sequence length$",
    ):
        Rates(tokens_per_step=4096).convert(Quantity(10, "samples"), "tokens", name="--warmup")


def test_a_conversion_without_a_name_calls_it_quantity() -> None:
    expected = "quantity 10 is in steps but the schedule counts tokens: converting steps to tokens needs the"
    with pytest.raises(RateError, match=f"^{expected} tokens per optimizer step$"):
        Rates().convert(Quantity(10, "steps"), "tokens")
