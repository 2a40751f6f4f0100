"""The pure schedule math: conventions pinned against each schedule's stated formula, composition, data."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from lrkit import schedules as S

PEAK, FLOOR, START = 3e-4, 3e-5, 1e-6


# ----------------------------------------------------------------------------- the stated definitions
# Written from the docstrings, independently of the library's helpers.


def warmup_ref(t: float, start: float, peak: float, warmup: int) -> float:
    return start + (peak - start) * t / warmup


def decay_ref(shape: str, peak: float, floor: float, p: float, power: float = 1.0) -> float:
    if shape == "cosine":
        return floor + (peak - floor) * (1 + math.cos(math.pi * p)) / 2
    if shape == "linear":
        return floor + (peak - floor) * (1 - p)
    if shape == "1-sqrt":
        return floor + (peak - floor) * (1 - math.sqrt(p))
    if shape == "polynomial":
        return (peak - floor) * (1 - p) ** power + floor
    return peak * (floor / peak) ** p  # exponential (log-linear)


def warmup_decay_ref(shape: str, t: float, warmup: int, total: int, power: float = 1.0) -> float:
    if t < warmup:
        return warmup_ref(t, START, PEAK, warmup)
    p = min(max((t - warmup) / (total - warmup), 0.0), 1.0)
    return decay_ref(shape, PEAK, FLOOR, p, power)


DECAYS = [
    ("linear", lambda w, t: S.WarmupLinear(PEAK, w, t, FLOOR, START), 1.0),
    ("cosine", lambda w, t: S.WarmupCosine(PEAK, w, t, FLOOR, START), 1.0),
    ("polynomial", lambda w, t: S.WarmupPolynomial(PEAK, w, t, FLOOR, START, power=2.5), 2.5),
]


@pytest.mark.parametrize("shape,make,power", DECAYS, ids=[d[0] for d in DECAYS])
@pytest.mark.parametrize("warmup,total", [(100, 1000), (1, 2), (7, 300)])
def test_warmup_decay_follows_its_formula(shape, make, power, warmup, total):
    schedule = make(warmup, total)
    steps = np.arange(total + 50)
    expected = np.array([warmup_decay_ref(shape, float(t), warmup, total, power) for t in steps])
    np.testing.assert_allclose(schedule(steps), expected, rtol=1e-13, atol=1e-20)


@pytest.mark.parametrize("shape,make,power", DECAYS, ids=[d[0] for d in DECAYS])
def test_warmup_decay_conventions_are_exact(shape, make, power):
    warmup, total = 100, 1000
    schedule = make(warmup, total)
    assert schedule(0) == START
    assert schedule(warmup) == PEAK
    assert schedule(total) == FLOOR
    for past in (total + 1, total + 17, 10 * total):
        assert schedule(past) == FLOOR
    assert schedule(total - 1) > FLOOR
    curve = schedule(np.arange(2 * total))
    assert curve.max() == PEAK and int(curve.argmax()) == warmup
    assert curve.min() >= 0
    assert np.all(np.diff(curve[warmup:]) <= 1e-15 * PEAK), "rises after the peak"


def test_no_warmup_starts_at_the_peak_and_a_zero_floor_is_reached():
    schedule = S.WarmupCosine(PEAK, 0, 10)
    assert schedule(0) == PEAK
    assert schedule(10) == 0.0 and schedule(11) == 0.0


def test_warmup_constant():
    schedule = S.WarmupConstant(PEAK, 10, START)
    steps = np.arange(30)
    expected = [warmup_ref(t, START, PEAK, 10) if t < 10 else PEAK for t in steps]
    np.testing.assert_allclose(schedule(steps), expected, rtol=1e-15)
    assert schedule(0) == START and schedule(10) == PEAK and schedule(10**9) == PEAK


@pytest.mark.parametrize("shape", S.DECAY_SHAPES)
@pytest.mark.parametrize("decay", [{"decay_steps": 200}, {"decay_fraction": 0.25}])
def test_wsd_follows_its_formula(shape, decay):
    warmup, total = 50, 1000
    schedule = S.WSD(PEAK, warmup, total, decay_shape=shape, min_lr=FLOOR, warmup_start_lr=START, **decay)
    length = decay.get("decay_steps") or round(decay["decay_fraction"] * total)
    assert schedule.decay_length == length
    steps = np.arange(total + 20)

    def ref(t: float) -> float:
        if t < warmup:
            return warmup_ref(t, START, PEAK, warmup)
        if t < total - length:
            return PEAK
        return decay_ref(shape, PEAK, FLOOR, min((t - (total - length)) / length, 1.0))

    np.testing.assert_allclose(schedule(steps), [ref(float(t)) for t in steps], rtol=1e-13)
    assert schedule(0) == START and schedule(warmup) == PEAK and schedule(total - length) == PEAK
    assert schedule(total) == FLOOR and schedule(total + 1) == FLOOR and schedule(5 * total) == FLOOR


def test_inverse_sqrt_is_the_transformer_schedule_with_timescale_w():
    warmup = 400
    schedule = S.InverseSqrt(PEAK, warmup, warmup_start_lr=START)
    steps = np.arange(5000)
    expected = [warmup_ref(t, START, PEAK, warmup) if t < warmup else PEAK * math.sqrt(warmup / t) for t in steps]
    np.testing.assert_allclose(schedule(steps), expected, rtol=1e-14)
    assert schedule(warmup) == PEAK and schedule.end() is None
    assert S.InverseSqrt(PEAK, 0, timescale=50)(150) == pytest.approx(PEAK * math.sqrt(50 / 200), rel=1e-15)


def restarts_ref(s: S.CosineWithRestarts, t: float) -> float:
    """Walk the cycles one by one, as the docstring describes them."""
    if t < s.warmup_steps:
        return warmup_ref(t, s.warmup_start_lr, s.peak_lr, s.warmup_steps)
    start, i = s.warmup_steps, 0
    while True:
        if s.num_cycles is not None and i == s.num_cycles:
            return s.min_lr
        length = s.cycle_steps * s.cycle_mult**i
        if t < start + length:
            break
        start, i = start + length, i + 1
    peak = max(s.peak_lr * s.cycle_decay**i, s.min_lr)
    local = t - start
    ramp = s.cycle_warmup_steps if i >= 1 else 0
    if local < ramp:
        return s.min_lr + (peak - s.min_lr) * local / ramp
    return decay_ref("cosine", peak, s.min_lr, (local - ramp) / (length - ramp))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cycle_steps": 100},
        {"cycle_steps": 50, "cycle_mult": 2, "cycle_decay": 0.5, "warmup_steps": 20, "num_cycles": 4},
        {"cycle_steps": 30, "cycle_mult": 3, "cycle_warmup_steps": 5, "warmup_steps": 10, "warmup_start_lr": START},
        {"cycle_steps": 40, "cycle_decay": 0.05, "num_cycles": 5, "cycle_warmup_steps": 3},
    ],
)
def test_cosine_with_restarts_follows_its_cycles(kwargs):
    schedule = S.CosineWithRestarts(PEAK, min_lr=FLOOR, **kwargs)
    steps = np.arange(2000)
    expected = [restarts_ref(schedule, float(t)) for t in steps]
    np.testing.assert_allclose(schedule(steps), expected, rtol=1e-13)
    warmup = kwargs.get("warmup_steps", 0)
    assert schedule(warmup) == PEAK
    starts = [p.start for p in schedule.phases() if p.name.startswith("cycle")]
    assert starts[0] == warmup and all(b > a for a, b in zip(starts, starts[1:]))
    end = schedule.end()
    if end is not None:
        assert end == (int(schedule.cycle_start(kwargs["num_cycles"])), FLOOR)
        assert schedule(end[0]) == FLOOR and schedule(end[0] + 1234) == FLOOR
    jumps = schedule.jumps(until=2000)
    assert bool(jumps) == (kwargs.get("cycle_warmup_steps", 0) == 0)


def test_cycle_index_is_exact_at_every_boundary():
    schedule = S.CosineWithRestarts(1.0, cycle_steps=7, cycle_mult=3, min_lr=0.0)
    for i in range(12):
        start = int(schedule.cycle_start(i))
        assert schedule(start) == 1.0, f"cycle {i} must restart at its peak at step {start}"


@pytest.mark.parametrize(
    "schedule",
    [
        S.WarmupCosine(PEAK, 10, 100, FLOOR),
        S.WarmupPolynomial(PEAK, 10, 100, FLOOR, power=1.7),
        S.WSD(PEAK, 10, 100, decay_steps=30, decay_shape="exponential", min_lr=FLOOR),
        S.CosineWithRestarts(PEAK, 13, cycle_mult=2, cycle_decay=0.7, min_lr=FLOOR, cycle_warmup_steps=2),
        S.InverseSqrt(PEAK, 10),
        S.HFPolynomialFactor(10, 100, 1e-7, 2.0, 1e-3),
    ],
    ids=lambda s: type(s).__name__,
)
def test_array_evaluation_equals_scalar_evaluation(schedule):
    steps = np.arange(0, 400)
    scalar = np.array([schedule(int(t)) for t in steps])
    # cos and sqrt are bit-identical; numpy's vectorised pow may differ from libm in the last bit
    np.testing.assert_allclose(schedule(steps), scalar, rtol=4e-16, atol=0)
    assert schedule(steps.reshape(20, 20)).shape == (20, 20)
    assert isinstance(schedule(5), float) and isinstance(schedule(np.int64(5)), float)


def test_fractional_steps_interpolate():
    schedule = S.WarmupLinear(1.0, 0, 10)
    assert schedule(2.5) == pytest.approx(0.75, rel=1e-15)


@pytest.mark.parametrize("bad", [-1, math.inf, math.nan, np.array([0.0, -2.0]), np.array([1.0, math.nan])])
def test_negative_or_nonfinite_steps_are_rejected(bad):
    with pytest.raises(ValueError, match="step"):
        S.WarmupCosine(PEAK, 1, 10)(bad)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: S.WarmupCosine(PEAK, 100, 100), "total_steps must be > warmup_steps"),
        (lambda: S.WarmupCosine(PEAK, -1, 100), "warmup_steps"),
        (lambda: S.WarmupCosine(PEAK, 10, 100, min_lr=2 * PEAK), "min_lr must be <= peak_lr"),
        (lambda: S.WarmupLinear(PEAK, 10, 100, warmup_start_lr=-1.0), "warmup_start_lr"),
        (lambda: S.WarmupPolynomial(PEAK, 10, 100, power=0.0), "power"),
        (lambda: S.WSD(PEAK, 10, 100), "exactly one of decay_steps or decay_fraction"),
        (lambda: S.WSD(PEAK, 10, 100, decay_steps=10, decay_fraction=0.1), "exactly one"),
        (lambda: S.WSD(PEAK, 50, 100, decay_steps=60), "warmup_steps \\+ decay steps must be <= total_steps"),
        (lambda: S.WSD(PEAK, 0, 100, decay_steps=10, decay_shape="exponential"), "needs min_lr > 0"),
        (lambda: S.WSD(PEAK, 0, 100, decay_steps=10, decay_shape="step"), "decay_shape must be one of"),
        (lambda: S.InverseSqrt(PEAK, 0), "needs timescale"),
        (lambda: S.CosineWithRestarts(PEAK, 10, cycle_warmup_steps=10), "cycle_warmup_steps must be < cycle_steps"),
        (lambda: S.CosineWithRestarts(PEAK, 10, cycle_decay=1.5), "cycle_decay"),
        (lambda: S.Sequence([S.Constant(1.0)], [5]), "boundaries must have one entry fewer"),
        (lambda: S.Sequence([S.Constant(1.0), S.Constant(2.0)], [0]), "boundaries\\[0\\]"),
        (lambda: S.HFPolynomialFactor(10, 10, 0.0, 1.0, 1.0), "num_warmup_steps != num_training_steps"),
    ],
)
def test_invalid_arguments_name_the_argument(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize(
    "make,error,match",
    [
        (
            lambda: S.HFLinearFactor("3", 10),
            TypeError,
            r"num_warmup_steps must be an int, got num_warmup_steps='3' \(str\)",
        ),
        (
            lambda: S.HFConstantWithWarmupFactor(-1),
            ValueError,
            r"num_warmup_steps must be an int >= 0, got num_warmup_steps=-1",
        ),
        (
            lambda: S.HFCosineFactor(3, 30.0),
            TypeError,
            r"num_training_steps must be an int, got num_training_steps=30.0",
        ),
        (lambda: S.HFCosineFactor(3, 30, "0.5"), TypeError, r"num_cycles must be a real number, got num_cycles='0.5'"),
        (lambda: S.HFCosineWithHardRestartsFactor(3, 30, None), TypeError, r"num_cycles must be a real number"),
        (
            lambda: S.HFPolynomialFactor(3, 30, 1e-7, "2", 1e-3),
            TypeError,
            r"power must be a real number, got power='2'",
        ),
        (
            lambda: S.HFPolynomialFactor(3, 30, 1e-7, -1.0, 1e-3),
            ValueError,
            r"power must be in \[0\.0, inf\), got power=-1\.0",
        ),
        (
            lambda: S.HFPolynomialFactor(3, 30, 1e-7, 1.0, 0.0),
            ValueError,
            r"lr_init must be in \(0\.0, inf\), got lr_init=0\.0",
        ),
        (
            lambda: S.HFPolynomialFactor(3, 30, math.nan, 1.0, 1e-3),
            ValueError,
            r"lr_end must be finite, got lr_end=nan",
        ),
        (lambda: S.HFInverseSqrtFactor(0, 0), ValueError, r"timescale must be a positive int, got timescale=0"),
        (lambda: S.HFCosineWithMinLRFactor(3, 30, 0.5, None), TypeError, r"min_lr_rate must be a real number"),
        (lambda: S.HFCosineWarmupWithMinLRFactor(3, 30, 0.5, 0.1, "0.1"), TypeError, r"warmup_lr_rate must be a real"),
        (lambda: S.HFWSDFactor(3, 10, -5), ValueError, r"num_decay_steps must be an int >= 0, got num_decay_steps=-5"),
        (lambda: S.HFWSDFactor(3, 10.0, 5), TypeError, r"num_stable_steps must be an int, got num_stable_steps=10\.0"),
        (lambda: S.HFWSDFactor(3, 10, 5, min_lr_ratio="0.1"), TypeError, r"min_lr_ratio must be a real number"),
        (
            lambda: S.schedule_from_dict({"type": "HFLinearFactor", "num_warmup_steps": "3", "num_training_steps": 10}),
            TypeError,
            r"num_warmup_steps must be an int, got num_warmup_steps='3'",
        ),
    ],
    ids=[
        "warmup-str",
        "warmup-negative",
        "total-float",
        "num_cycles-str",
        "restarts-num_cycles-None",
        "power-str",
        "power-negative",
        "lr_init-0",
        "lr_end-nan",
        "timescale-0",
        "min_lr_rate-None",
        "warmup_lr_rate-str",
        "wsd-decay-negative",
        "wsd-stable-float",
        "wsd-min_lr_ratio-str",
        "from-data",
    ],
)
def test_hf_factors_check_their_arguments_when_built(make, error, match):
    """A bad argument is refused when the factor is built (naming it, its value and what was expected),
    not when it is first called: transformers itself fails there, inside LambdaLR's first step."""
    with pytest.raises(error, match=match):
        make()


def test_hf_factors_accept_what_transformers_computes():
    """transformers' quirks stay accepted: a negative num_stable_steps, a fractional or zero num_cycles."""
    assert S.HFWSDFactor(3, -2, 5).phases()[2] == S.Phase("cosine decay", 1)  # decays from step 1, in warmup
    assert S.HFCosineWithHardRestartsFactor(3, 30, 1.5)(3) == 1.0
    assert S.HFCosineFactor(3, 30, 0)(20) == 1.0
    assert S.HFPolynomialFactor(3, 30, 0.0, 0.0, 1e-3)(20) == 1.0


def test_sequence_gives_each_piece_the_step_since_its_boundary():
    first, second, third = S.WarmupConstant(1.0, 10), S.WarmupLinear(1.0, 0, 50, 0.1), S.Constant(0.1)
    joined = S.Sequence([first, second, third], [10, 60])
    steps = np.arange(100)
    expected = [first(t) if t < 10 else second(t - 10) if t < 60 else third(t - 60) for t in steps]
    assert joined(steps).tolist() == expected
    assert [joined(int(t)) for t in steps] == expected
    assert joined.phases() == [S.Phase("warmup", 0), S.Phase("linear decay", 10), S.Phase("constant", 60)]
    assert joined.peak() == (10, 1.0) and joined.end() == (60, 0.1)


def test_product_multiplies_pointwise():
    a, b = S.WarmupCosine(2.0, 5, 50), S.WSD(1.0, 0, 50, decay_steps=10, min_lr=0.5)
    steps = np.arange(80)
    assert S.Product(a, b)(steps).tolist() == (a(steps) * b(steps)).tolist()
    scaled = S.Product(S.Constant(3e-4), S.HFLinearFactor(10, 100))
    assert scaled.peak() == (10, 3e-4) and scaled.end() == (100, 0.0)


ALL = [
    S.Constant(0.5),
    S.WarmupConstant(PEAK, 3, START),
    S.WarmupLinear(PEAK, 3, 30, FLOOR),
    S.WarmupCosine(PEAK, 3, 30, FLOOR, START),
    S.WarmupPolynomial(PEAK, 3, 30, FLOOR, power=2.0),
    S.WSD(PEAK, 3, 30, decay_fraction=0.3, decay_shape="1-sqrt", min_lr=FLOOR),
    S.InverseSqrt(PEAK, 3, timescale=7),
    S.CosineWithRestarts(PEAK, 5, cycle_mult=2, num_cycles=3),
    S.Sequence([S.WarmupConstant(1.0, 4), S.WarmupCosine(1.0, 0, 20)], [4]),
    S.Product(S.Constant(2.0), S.HFCosineFactor(3, 30)),
    S.HFWSDFactor(3, 10, 5, "cosine", "1-sqrt", 0.1, 0.5),
    S.HFCosineWarmupWithMinLRFactor(3, 30, 0.5, 0.1, 0.2),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_to_dict_is_json_and_rebuilds_the_same_schedule(schedule):
    data = json.loads(json.dumps(schedule.to_dict()))
    rebuilt = S.schedule_from_dict(data)
    assert rebuilt == schedule
    steps = np.arange(60)
    assert rebuilt(steps).tolist() == schedule(steps).tolist()


def test_schedule_from_dict_rejects_unknown_types_and_keys():
    with pytest.raises(ValueError, match="not a schedule"):
        S.schedule_from_dict({"type": "Nope"})
    with pytest.raises(ValueError, match="unknown keys \\['bogus'\\]"):
        S.schedule_from_dict({"type": "Constant", "value": 1.0, "bogus": 2})


def test_phases_are_ordered_and_start_at_zero():
    for schedule in ALL:
        starts = [p.start for p in schedule.phases(until=100)]
        assert starts[0] == 0 and starts == sorted(starts), type(schedule).__name__


def test_importing_the_math_layer_does_not_import_torch():
    modules = "lrkit, lrkit.schedules, lrkit.schedules.clock, lrkit.schedules.torch_formulas"
    code = f"import sys, {modules}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_lrkit_schedules_alone_knows_every_schedule_type():
    """A fresh ``import lrkit.schedules`` rebuilds every type, the clock's StepView included, whatever else
    was imported before: the types are a table, not a side effect of importing their modules."""
    code = (
        "import lrkit.schedules as S\n"
        "print(S.schedule_types())\n"
        "view = S.schedule_from_dict({'type': 'StepView', 'schedule': {'type': 'Constant', 'value': 0.5}, "
        "'per_step': 4})\n"
        "assert view(3) == 0.5, view\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(S.schedule_types())


# ----------------------------------------------------------------------------- boundaries


@pytest.mark.parametrize(
    ("total", "fraction"),
    [(7, 0.4), (1000, 0.1236), (9, 0.65), (2, 0.4)],  # fraction * total = 2.8, 123.6, 5.85, 0.8: int() would floor
)
def test_wsd_decay_fraction_rounds_to_the_nearest_step(total, fraction):
    length = round(fraction * total)
    assert length != int(fraction * total)  # the cases where rounding and flooring disagree
    schedule = S.WSD(PEAK, 0, total, decay_fraction=fraction, min_lr=FLOOR)
    start = total - length
    assert schedule.decay_length == length
    assert S.Phase("linear decay", start) in schedule.phases()
    steps = np.arange(total + 3)
    expected = [PEAK if t <= start else decay_ref("linear", PEAK, FLOOR, min((t - start) / length, 1.0)) for t in steps]
    np.testing.assert_allclose(schedule(steps), expected, rtol=1e-13)
    assert schedule(start) == PEAK and schedule(start + 1) < PEAK and schedule(total) == FLOOR


@pytest.mark.parametrize(
    ("warmup", "total", "decay"),
    [(10, 30, {"decay_steps": 20}), (4, 10, {"decay_fraction": 0.6}), (0, 25, {"decay_fraction": 1.0})],
)
def test_wsd_without_a_stable_phase_decays_right_after_warmup(warmup, total, decay):
    schedule = S.WSD(PEAK, warmup, total, min_lr=FLOOR, warmup_start_lr=START, **decay)
    assert warmup + schedule.decay_length == total
    warmup_phase = [S.Phase("warmup", 0)] if warmup else []
    assert schedule.phases() == [*warmup_phase, S.Phase("linear decay", warmup), S.Phase("floor", total)]
    steps = np.arange(total + 3)
    expected = [
        warmup_ref(t, START, PEAK, warmup)
        if t < warmup
        else decay_ref("linear", PEAK, FLOOR, min((t - warmup) / (total - warmup), 1.0))
        for t in steps
    ]
    np.testing.assert_allclose(schedule(steps), expected, rtol=1e-13)
    assert schedule(warmup) == PEAK and schedule(warmup + 1) < PEAK and schedule(total) == FLOOR


def test_the_later_piece_of_a_sequence_owns_its_boundary_step_on_both_paths():
    """``i`` is the number of boundaries ``<= t``: at ``t == boundaries[k]`` piece ``k + 1`` runs at its step 0.
    The pieces jump there, so a piece that kept its boundary would show."""
    pieces = [S.Constant(0.5), S.WarmupConstant(1.0, 4, 0.25), S.Constant(0.1), S.WarmupLinear(0.8, 0, 10, 0.2)]
    boundaries = [3, 8, 9]
    joined = S.Sequence(pieces, boundaries)

    def owner(t: float) -> float:
        i = sum(b <= t for b in boundaries)
        return pieces[i](t - ([0, *boundaries])[i])

    steps = [0, 1, 2, 2.5, 2.999, 3, 3.001, 3.5, 4, 7, 7.999, 8, 8.5, 9, 9.25, 10, 20, 30]
    expected = [owner(t) for t in steps]
    assert [joined(t) for t in steps] == expected  # the scalar path
    assert joined(np.asarray(steps, dtype=np.float64)).tolist() == expected  # the array path
    assert joined(np.asarray(boundaries)).tolist() == [joined(b) for b in boundaries] == [0.25, 0.1, 0.8]


def test_a_tensor_argument_must_be_a_0_dim_tensor_and_is_checked_by_its_name() -> None:
    from lrkit.schedules._checks import check_real

    half = np.float64(0.5).reshape(())  # a 0-dim numpy array: accepted as it is
    assert check_real("gamma", np.asarray(half), low=0.0, tensor_ok=True) is not None
    with pytest.raises(TypeError, match=r"^gamma must be a real number, got gamma=array\(\[0\.5\]\) \(ndarray\)$"):
        check_real("gamma", np.array([0.5]), low=0.0, tensor_ok=True)  # 1-dim: not a scalar tensor
    with pytest.raises(ValueError, match=r"^gamma must be in \[0\.0, inf\), got gamma=-1\.0$"):
        check_real("gamma", np.asarray(-1.0), low=0.0, tensor_ok=True)


def test_a_tensor_argument_is_checked_against_every_bound_and_an_open_bound_shows_inf() -> None:
    from lrkit.schedules._checks import check_real

    bounds = {"low": 0.0, "high": 1.0, "low_open": True, "high_open": True, "tensor_ok": True}
    for edge in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"^factor must be in \(0\.0, 1\.0\), got factor={edge}$"):
            check_real("factor", np.asarray(edge), **bounds)
    with pytest.raises(ValueError, match=r"^x must be in \(-inf, 1\.0\], got x=2\.0$"):
        check_real("x", 2.0, high=1.0)
