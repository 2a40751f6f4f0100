"""Bad input raises ValueError or TypeError, and the message names the argument and the value."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

import lrkit


def sgd() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)


@dataclass
class Case:
    id: str
    build: Callable[[Any, Any], Any]  # (module, optimizer) -> scheduler; module is lrkit or torch's
    error: type[Exception]
    match: str  # must name the argument and the value


# --------------------------------------------------------------------------- torch accepts, LRs go wrong


@dataclass
class Accepted(Case):
    # What goes wrong in torch: called with torch's scheduler, returns a description of
    # the damage (asserted non-empty) so the case shows why lrkit refuses the value.
    damage: Callable[[Any], str] | None = None


def _run(scheduler: Any, steps: int = 40, metric: Callable[[int], float] | None = None) -> list[float]:
    lrs = []
    for t in range(steps):
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric(t))
        lrs.extend(scheduler.get_last_lr())
    return lrs


def raises(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except ZeroDivisionError as err:
        return f"ZeroDivisionError: {err}"
    return ""


def negative(scheduler: Any) -> str:
    return "a negative LR" if min(_run(scheduler)) < 0 else ""


def not_finite(scheduler: Any) -> str:
    return "a NaN LR" if not all(map(math.isfinite, _run(scheduler))) else ""


def zero(scheduler: Any) -> str:
    return "the LR collapses to 0" if 0.0 in _run(scheduler) else ""


def closed_form_disagrees(scheduler: Any) -> str:
    """step() and step(epoch) give different LRs at the same epoch."""
    recursive = _run(scheduler, 10)[-1]
    scheduler.step(scheduler.last_epoch)
    return "recursive and closed forms disagree" if scheduler.get_last_lr()[-1] != recursive else ""


def second_scheduler_never_runs(scheduler: Any) -> str:
    _run(scheduler, 10)
    return "schedulers[1] never runs" if scheduler._schedulers[1].last_epoch <= 0 else ""


TORCH_ACCEPTS = [
    Accepted(
        "ConstantLR-factor-0",
        lambda m, o: m.ConstantLR(o, factor=0, total_iters=5),
        ValueError,
        r"factor must be in \(0\.0, 1\.0\], got factor=0\b",
        lambda s: raises(lambda: _run(s, 10)),
    ),
    Accepted(
        "ConstantLR-total_iters-0",
        lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=0),
        ValueError,
        r"total_iters must be a positive int, got total_iters=0\b",
        closed_form_disagrees,
    ),
    Accepted(
        "LinearLR-total_iters-0",
        lambda m, o: m.LinearLR(o, total_iters=0),
        ValueError,
        r"total_iters must be a positive int, got total_iters=0\b",
        lambda s: raises(lambda: s.step(3)),
    ),
    Accepted(
        "PolynomialLR-total_iters-0",
        lambda m, o: m.PolynomialLR(o, total_iters=0),
        ValueError,
        r"total_iters must be a positive int, got total_iters=0\b",
        lambda s: raises(lambda: s.step(3)),
    ),
    Accepted(
        "PolynomialLR-power-negative",
        lambda m, o: m.PolynomialLR(o, total_iters=5, power=-1.0),
        ValueError,
        r"power must be in \[0\.0, inf\), got power=-1\.0",
        lambda s: raises(lambda: _run(s, 10)),
    ),
    Accepted(
        "CosineAnnealingLR-T_max-0",
        lambda m, o: m.CosineAnnealingLR(o, T_max=0),
        ValueError,
        r"T_max must be in \(0\.0, inf\), got T_max=0\b",
        lambda s: raises(lambda: _run(s, 3)),
    ),
    Accepted(
        "CosineAnnealingLR-eta_min-negative",
        lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=-0.1),
        ValueError,
        r"eta_min must be in \[0\.0, inf\), got eta_min=-0\.1",
        negative,
    ),
    Accepted(
        "StepLR-step_size-0",
        lambda m, o: m.StepLR(o, step_size=0),
        ValueError,
        r"step_size must be a positive int, got step_size=0\b",
        lambda s: raises(lambda: _run(s, 3)),
    ),
    Accepted(
        "StepLR-step_size-negative",
        lambda m, o: m.StepLR(o, step_size=-3, gamma=0.5),
        ValueError,
        r"step_size must be a positive int, got step_size=-3\b",
        closed_form_disagrees,
    ),
    Accepted(
        "StepLR-gamma-0",
        lambda m, o: m.StepLR(o, step_size=2, gamma=0.0),
        ValueError,
        r"gamma must be in \(0\.0, inf\), got gamma=0\.0",
        zero,
    ),
    Accepted(
        "StepLR-gamma-negative",
        lambda m, o: m.StepLR(o, step_size=2, gamma=-0.5),
        ValueError,
        r"gamma must be in \(0\.0, inf\), got gamma=-0\.5",
        negative,
    ),
    Accepted(
        "ExponentialLR-gamma-nan",
        lambda m, o: m.ExponentialLR(o, gamma=float("nan")),
        ValueError,
        r"gamma must be finite, got gamma=nan",
        not_finite,
    ),
    Accepted(
        "ExponentialLR-gamma-inf",
        lambda m, o: m.ExponentialLR(o, gamma=float("inf")),
        ValueError,
        r"gamma must be finite, got gamma=inf",
        not_finite,
    ),
    Accepted(
        "MultiStepLR-negative-milestone",
        lambda m, o: m.MultiStepLR(o, [-1, 10], gamma=0.5),
        ValueError,
        r"milestones\[0\] must be an int >= 0, got milestones\[0\]=-1\b",
        closed_form_disagrees,
    ),
    Accepted(
        "CosineAnnealingWarmRestarts-eta_min-negative",
        lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=10, eta_min=-1.0),
        ValueError,
        r"eta_min must be in \[0\.0, inf\), got eta_min=-1\.0",
        negative,
    ),
    Accepted(
        "CyclicLR-base_lr-negative",
        lambda m, o: m.CyclicLR(o, -0.01, 0.1, step_size_up=5),
        ValueError,
        r"base_lr\[0\] must be in \[0\.0, inf\), got base_lr\[0\]=-0\.01",
        negative,
    ),
    Accepted(
        "OneCycleLR-max_lr-negative",
        lambda m, o: m.OneCycleLR(o, -0.1, total_steps=50),
        ValueError,
        r"max_lr\[0\] must be in \[0\.0, inf\), got max_lr\[0\]=-0\.1",
        negative,
    ),
    Accepted(
        "ReduceLROnPlateau-factor-0",
        lambda m, o: m.ReduceLROnPlateau(o, factor=0.0, patience=1),
        ValueError,
        r"factor must be in \(0\.0, 1\.0\), got factor=0\.0",
        lambda s: "the LR collapses to 0" if 0.0 in _run(s, metric=lambda t: 1.0) else "",
    ),
    Accepted(
        "ReduceLROnPlateau-patience-negative",
        lambda m, o: m.ReduceLROnPlateau(o, patience=-1),
        ValueError,
        r"patience must be an int >= 0, got patience=-1\b",
        lambda s: "decays while the metric improves" if _run(s, 3, lambda t: 1.0 - t)[-1] < 0.1 else "",
    ),
    Accepted(
        "ReduceLROnPlateau-threshold-negative",
        lambda m, o: m.ReduceLROnPlateau(o, threshold=-0.5, patience=0),
        ValueError,
        r"threshold must be in \[0\.0, inf\), got threshold=-0\.5",
        lambda s: "never decays on a worsening metric" if _run(s, 5, lambda t: 1.0 + t / 100)[-1] == 0.1 else "",
    ),
    Accepted(
        "SequentialLR-milestones-unsorted",
        lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2), m.LinearLR(o), m.ConstantLR(o)], milestones=[5, 3]),
        ValueError,
        r"milestones must be strictly increasing, got milestones=\[5, 3\]",
        lambda s: second_scheduler_never_runs(s),
    ),
]


@pytest.mark.parametrize("case", TORCH_ACCEPTS, ids=lambda c: c.id)
def test_torch_accepts_lrkit_refuses(case: Accepted) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = case.build(torch_lr, sgd())  # torch constructs it without complaint...
        if case.damage is not None:
            assert case.damage(scheduler), "...and the LRs it then produces are wrong"
    with pytest.raises(case.error, match=case.match):
        case.build(lrkit, sgd())


def test_linear_start_factor_zero() -> None:
    """#86454 (division by zero) is fixed in torch 2.13, which now refuses without naming the value."""
    with pytest.raises(ValueError, match="Starting multiplicative factor"):
        torch_lr.LinearLR(sgd(), start_factor=0)
    with pytest.raises(ValueError, match=r"start_factor must be in \(0\.0, 1\.0\], got start_factor=0\b"):
        lrkit.LinearLR(sgd(), start_factor=0)


# --------------------------------------------------------------------------- refused by both (lrkit names it)


def _other_optimizer_child(m: Any, o: Any) -> Any:
    return m.SequentialLR(o, [m.StepLR(o, 2), m.StepLR(sgd(), 3)], milestones=[2])


REFUSED = [
    # torch accepts this one too, and cos is even, so it behaves as T_max=10: refused as nonsense.
    Case(
        "CosineAnnealingLR-T_max-negative",
        lambda m, o: m.CosineAnnealingLR(o, T_max=-10),
        ValueError,
        r"T_max must be in \(0\.0, inf\), got T_max=-10\b",
    ),
    Case(
        "StepLR-step_size-float",
        lambda m, o: m.StepLR(o, step_size=2.5),
        TypeError,
        r"step_size must be an int, got step_size=2\.5 \(float\)",
    ),
    Case(
        "StepLR-step_size-bool",
        lambda m, o: m.StepLR(o, step_size=True),
        TypeError,
        r"step_size must be an int, got step_size=True \(bool\)",
    ),
    Case(
        "StepLR-gamma-str",
        lambda m, o: m.StepLR(o, 3, gamma="0.1"),
        TypeError,
        r"gamma must be a real number, got gamma='0\.1' \(str\)",
    ),
    Case(
        "ExponentialLR-gamma-bool",
        lambda m, o: m.ExponentialLR(o, gamma=True),
        TypeError,
        r"gamma must be a real number, got gamma=True \(bool\)",
    ),
    Case(
        "MultiStepLR-not-a-list",
        lambda m, o: m.MultiStepLR(o, 5),
        TypeError,
        r"milestones must be a list of ints, got milestones=5\b",
    ),
    Case(
        "MultiStepLR-float-milestone",
        lambda m, o: m.MultiStepLR(o, [3, 1.5]),
        TypeError,
        r"milestones\[1\] must be an int, got milestones\[1\]=1\.5",
    ),
    Case(
        "ConstantLR-factor-above-1",
        lambda m, o: m.ConstantLR(o, factor=1.5),
        ValueError,
        r"factor must be in \(0\.0, 1\.0\], got factor=1\.5",
    ),
    Case(
        "LinearLR-end_factor-above-1",
        lambda m, o: m.LinearLR(o, end_factor=1.5),
        ValueError,
        r"end_factor must be in \[0\.0, 1\.0\], got end_factor=1\.5",
    ),
    Case(
        "LinearLR-start_factor-nan",
        lambda m, o: m.LinearLR(o, start_factor=float("nan")),
        ValueError,
        r"start_factor must be finite, got start_factor=nan",
    ),
    Case(
        "CosineAnnealingWarmRestarts-T_0-0",
        lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=0),
        ValueError,
        r"T_0 must be a positive int, got T_0=0\b",
    ),
    Case(
        "CosineAnnealingWarmRestarts-T_mult-0",
        lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=0),
        ValueError,
        r"T_mult must be a positive int, got T_mult=0\b",
    ),
    Case(
        "CosineAnnealingWarmRestarts-T_mult-float",
        lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2.0),
        TypeError,
        r"T_mult must be an int, got T_mult=2\.0 \(float\)",
    ),
    Case(
        "CyclicLR-step_size_up-0",
        lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=0, step_size_down=10),
        ValueError,
        r"step_size_up must be in \(0\.0, inf\), got step_size_up=0\b",
    ),
    Case(
        "CyclicLR-mode",
        lambda m, o: m.CyclicLR(o, 0.01, 0.1, mode="sawtooth"),
        ValueError,
        r"mode must be one of .*got mode='sawtooth'",
    ),
    Case(
        "CyclicLR-max_lr-per-group",
        lambda m, o: m.CyclicLR(o, 0.01, [0.1, 0.2]),
        ValueError,
        r"max_lr must have one value per param group \(1\), got 2 values: max_lr=\[0\.1, 0\.2\]",
    ),
    Case(
        "CyclicLR-no-momentum",
        lambda m, o: m.CyclicLR(torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))]), 0.01, 0.1),
        ValueError,
        r"cycle_momentum=True needs an optimizer with 'momentum' or 'betas' \(Adagrad has neither\)",
    ),
    Case(
        "OneCycleLR-no-length",
        lambda m, o: m.OneCycleLR(o, 0.1),
        ValueError,
        r"total_steps=None, epochs=None, steps_per_epoch=None",
    ),
    Case(
        "OneCycleLR-total_steps-0",
        lambda m, o: m.OneCycleLR(o, 0.1, total_steps=0),
        ValueError,
        r"total_steps must be a positive int, got total_steps=0\b",
    ),
    Case(
        "OneCycleLR-pct_start",
        lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10, pct_start=1.5),
        ValueError,
        r"pct_start must be in \[0\.0, 1\.0\], got pct_start=1\.5",
    ),
    Case(
        "OneCycleLR-pct_start-int",
        lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10, pct_start=1),
        TypeError,
        r"pct_start must be a float in \[0, 1\], got pct_start=1\b",
    ),
    Case(
        "OneCycleLR-anneal_strategy",
        lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10, anneal_strategy="exp"),
        ValueError,
        r"anneal_strategy must be one of 'cos', 'linear'; got anneal_strategy='exp'",
    ),
    Case(
        "OneCycleLR-div_factor-0",
        lambda m, o: m.OneCycleLR(o, 0.1, total_steps=10, div_factor=0.0),
        ValueError,
        r"div_factor must be in \(0\.0, inf\), got div_factor=0\.0",
    ),
    Case(
        "ReduceLROnPlateau-factor-1",
        lambda m, o: m.ReduceLROnPlateau(o, factor=1.0),
        ValueError,
        r"factor must be in \(0\.0, 1\.0\), got factor=1\.0",
    ),
    Case(
        "ReduceLROnPlateau-mode",
        lambda m, o: m.ReduceLROnPlateau(o, mode="avg"),
        ValueError,
        r"mode must be one of 'min', 'max'; got mode='avg'",
    ),
    Case(
        "ReduceLROnPlateau-threshold_mode",
        lambda m, o: m.ReduceLROnPlateau(o, threshold_mode="pct"),
        ValueError,
        r"threshold_mode must be one of 'rel', 'abs'; got threshold_mode='pct'",
    ),
    Case(
        "ReduceLROnPlateau-min_lr-per-group",
        lambda m, o: m.ReduceLROnPlateau(o, min_lr=[0.0, 0.1]),
        ValueError,
        r"min_lr must have one value per param group \(1\), got 2 values: min_lr=\[0\.0, 0\.1\]",
    ),
    Case(
        "LambdaLR-not-callable",
        lambda m, o: m.LambdaLR(o, 0.5),
        TypeError,
        r"lr_lambda should be a function, got lr_lambda\[0\]=0\.5 \(float\)",
    ),
    Case(
        "LambdaLR-per-group",
        lambda m, o: m.LambdaLR(o, [abs, abs]),
        ValueError,
        r"Expected 1 lr_lambdas, but got 2: lr_lambda must have one function per param group, got "
        r"lr_lambda=\[<built-in function abs>",
    ),
    Case(
        "SequentialLR-milestone-count",
        lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2), m.StepLR(o, 3)], milestones=[2, 4]),
        ValueError,
        r"one milestone fewer than schedulers \(1\), got milestones=\[2, 4\]",
    ),
    Case(
        "SequentialLR-other-optimizer",
        _other_optimizer_child,
        ValueError,
        r"same optimizer, but schedulers\[1\] \(StepLR\) is bound to a different one",
    ),
    Case(
        "ChainedScheduler-other-optimizer",
        lambda m, o: m.ChainedScheduler([m.StepLR(o, 2), m.StepLR(sgd(), 3)]),
        ValueError,
        r"same optimizer, but schedulers\[1\] \(StepLR\) is bound to a different one",
    ),
    Case(
        "SequentialLR-ReduceLROnPlateau",
        lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2), m.ReduceLROnPlateau(o)], milestones=[2]),
        ValueError,
        r"SequentialLR does not support .?ReduceLROnPlateau.*schedulers\[1\]",
    ),
    Case(
        "ChainedScheduler-ReduceLROnPlateau",
        lambda m, o: m.ChainedScheduler([m.StepLR(o, 2), m.ReduceLROnPlateau(o)]),
        ValueError,
        r"ChainedScheduler does not support .?ReduceLROnPlateau.*schedulers\[1\]",
    ),
    Case(
        "SequentialLR-empty",
        lambda m, o: m.SequentialLR(o, [], milestones=[]),
        ValueError,
        r"SequentialLR expects a non-empty list of schedulers, got schedulers=\[\]",
    ),
]


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.id)
def test_invalid_construction(case: Case) -> None:
    with pytest.raises(case.error, match=case.match):
        case.build(lrkit, sgd())


# --------------------------------------------------------------------------- lrkit-only inputs


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda o: lrkit.StepLR([0.1], 3), TypeError, r"optimizer must be a torch\.optim\.Optimizer.*optimizer=list"),
        (
            lambda o: lrkit.StepLR(o, 3, last_epoch=-2),
            ValueError,
            r"last_epoch must be an int >= -1, got last_epoch=-2",
        ),
        (
            lambda o: lrkit.SequentialLR(o, [lrkit.StepLR(o, 2), lrkit.StepLR(o, 3)], milestones=[0]),
            ValueError,
            r"milestones\[0\] must be a positive int, got milestones\[0\]=0\b",
        ),
        (
            lambda o: lrkit.ChainedScheduler([torch_lr.StepLR(o, 2)]),
            TypeError,
            r"schedulers\[0\] must be an lrkit scheduler, got torch\.optim\.lr_scheduler\.StepLR",
        ),
        (lambda o: lrkit.ChainedScheduler([]), ValueError, r"non-empty list of schedulers, got \[\]"),
    ],
    ids=["not-an-optimizer", "last_epoch", "SequentialLR-milestone-0", "torch-child", "ChainedScheduler-empty"],
)
def test_invalid_binding(build: Callable[[Any], Any], error: type[Exception], match: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match):
            build(sgd())


def test_load_state_of_another_class() -> None:
    scheduler = lrkit.StepLR(sgd(), 3)
    with pytest.raises(ValueError, match=r"cannot load a LinearLR state into a StepLR"):
        scheduler.load_state_dict(lrkit.LinearLR(sgd()).state_dict())


@pytest.mark.parametrize("key", ["gamma", "last_epoch", "base_lrs"])
def test_load_state_with_missing_keys(key: str) -> None:
    scheduler = lrkit.StepLR(sgd(), 3)
    state = {k: v for k, v in lrkit.StepLR(sgd(), 3).state_dict().items() if k != key}
    with pytest.raises(ValueError, match=rf"StepLR state is missing keys \['{key}'\]"):
        scheduler.load_state_dict(state)


def test_stepping_errors() -> None:
    one_cycle = lrkit.OneCycleLR(sgd(), 0.1, total_steps=3)
    for _ in range(3):
        one_cycle.step()
    with pytest.raises(ValueError, match=r"Tried to step 4 times\. The specified number of total steps is 3"):
        one_cycle.step()
    with pytest.raises(ValueError, match=r"epoch must be in \[0\.0, inf\), got epoch=-1"):
        lrkit.CosineAnnealingWarmRestarts(sgd(), T_0=5).step(-1)
