"""``step(epoch)`` landing exactly on a schedule's boundaries, with torch 2.13 as the oracle,
and the refusals at the edges of the scheduler state.

Each epoch is reached by one ``step(epoch)`` on a freshly built pair (torch's closed form,
or CosineAnnealingWarmRestarts' own epoch arithmetic), and again by walking the epochs in
order on one pair; every group's LR must equal torch's with ``==``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

import lrkit
from lrkit.schedulers import torch_compat

GROUP_LRS = (0.1, 0.037)


def optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [torch.zeros(1)], "lr": lr} for lr in GROUP_LRS], lr=GROUP_LRS[0])


def lrs(opt: torch.optim.Optimizer) -> list[float]:
    return [group["lr"] for group in opt.param_groups]


def step_to(scheduler: Any, epoch: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's EPOCH_DEPRECATION_WARNING, mirrored by lrkit
        scheduler.step(epoch)


def build(module: Any, name: str, kwargs: dict[str, Any]) -> tuple[Any, torch.optim.Optimizer]:
    opt = optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(module, name)(opt, **kwargs), opt


def around(*points: int) -> list[int]:
    return sorted({e for p in points for e in (p - 1, p, p + 1) if e >= 0})


# (class, arguments, epochs to land on)
CASES: list[tuple[str, dict[str, Any], list[float]]] = [
    ("ConstantLR", {"factor": 0.25, "total_iters": 4}, around(4)),
    ("ConstantLR", {"factor": 0.5, "total_iters": 1}, around(1)),
    ("LinearLR", {"start_factor": 0.25, "end_factor": 0.75, "total_iters": 5}, around(5)),
    ("LinearLR", {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 3}, around(3, 6)),
    ("StepLR", {"step_size": 3, "gamma": 0.5}, around(3, 6, 9)),
    ("StepLR", {"step_size": 1, "gamma": 0.5}, around(1, 2)),
    ("MultiStepLR", {"milestones": [2, 5, 9], "gamma": 0.3}, around(2, 5, 9)),
    ("MultiStepLR", {"milestones": [4, 4, 7], "gamma": 0.5}, around(4, 7)),
    ("MultiStepLR", {"milestones": [6, 1, 6, 6], "gamma": 0.5}, around(1, 6)),
    ("PolynomialLR", {"total_iters": 5, "power": 2.0}, around(5, 10)),
    ("PolynomialLR", {"total_iters": 4, "power": 1.0}, around(4)),
    ("CosineAnnealingLR", {"T_max": 6, "eta_min": 0.001}, around(6, 12, 18)),
    ("CosineAnnealingLR", {"T_max": 1}, around(1, 2)),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 1, "eta_min": 0.002}, around(3, 6, 9)),
    # T_mult=2: restarts at T_0 * (2**k - 1) = 4, 12, 28
    ("CosineAnnealingWarmRestarts", {"T_0": 4, "T_mult": 2, "eta_min": 0.002}, around(4, 12, 28)),
    # T_mult=3: restarts at 2, 2 + 6 = 8, 8 + 18 = 26
    ("CosineAnnealingWarmRestarts", {"T_0": 2, "T_mult": 3}, around(2, 8, 26)),
    (
        "CosineAnnealingWarmRestarts",
        {"T_0": 4, "T_mult": 2, "eta_min": 0.002},
        [3.5, 3.999, 4.0, 4.0001, 4.5, 11.75, 12.0, 12.25, 27.9, 28.0, 28.1],
    ),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 1}, [2.5, 3.0, 3.5, 5.999, 6.0, 6.001]),
]


def case_id(case: tuple[str, dict[str, Any], list[float]]) -> str:
    name, kwargs, _ = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_step_epoch_lands_on_every_boundary_like_torch(case: tuple[str, dict[str, Any], list[float]]) -> None:
    name, kwargs, epochs = case
    for epoch in epochs:
        ours, our_opt = build(torch_compat, name, copy.deepcopy(kwargs))
        theirs, their_opt = build(torch_lr, name, copy.deepcopy(kwargs))
        step_to(ours, epoch)
        step_to(theirs, epoch)
        assert lrs(our_opt) == lrs(their_opt), f"{name} after step({epoch})"
        assert ours.get_last_lr() == theirs.get_last_lr(), f"{name} after step({epoch})"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_step_epoch_walking_across_the_boundaries_matches_torch(case: tuple[str, dict[str, Any], list[float]]) -> None:
    name, kwargs, epochs = case
    ours, our_opt = build(torch_compat, name, copy.deepcopy(kwargs))
    theirs, their_opt = build(torch_lr, name, copy.deepcopy(kwargs))
    for epoch in epochs:
        step_to(ours, epoch)
        step_to(theirs, epoch)
        assert lrs(our_opt) == lrs(their_opt), f"{name} after step({epoch})"


# --------------------------------------------------------------------------- refusals


def sequential(milestones: list[int]) -> Callable[[], Any]:
    def make() -> Any:
        opt = optimizer()
        first = lrkit.ConstantLR(opt, factor=0.5, total_iters=2)
        second = lrkit.StepLR(opt, step_size=2)
        third = lrkit.ExponentialLR(opt, gamma=0.9)
        return lrkit.SequentialLR(opt, [first, second, third], milestones=milestones)

    return make


def test_sequential_lr_refuses_a_repeated_milestone() -> None:
    with pytest.raises(ValueError, match=r"milestones must be strictly increasing, got milestones=\[3, 3\]"):
        sequential([3, 3])()


@pytest.mark.parametrize(
    ("milestones", "why"),
    [
        ([4, 4], r"milestones must be strictly increasing, got milestones=\[4, 4\]"),
        ([9, 3], r"milestones must be strictly increasing, got milestones=\[9, 3\]"),
        ([0, 0], r"milestones\[0\] must be a positive int, got milestones\[0\]=0"),
        ([1.7, 2.2], r"milestones\[0\] must be an int"),
        (["x", 2], r"milestones\[0\] must be an int"),
        ([3], r"SequentialLR expects one milestone fewer than schedulers \(2\), got milestones=\[3\]"),
    ],
)
def test_sequential_lr_refuses_bad_milestones_in_a_loaded_state(milestones: list[Any], why: str) -> None:
    scheduler = sequential([3, 5])()
    scheduler.step()
    before = scheduler.state_dict()
    with pytest.raises(lrkit.StateError, match=r"^state\['_milestones'\] is malformed: " + why):
        scheduler.load_state_dict({**before, "_milestones": milestones})
    assert scheduler.state_dict() == before


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "ConstantLR"])
def test_a_bool_last_epoch_in_a_state_is_refused_and_changes_nothing(name: str) -> None:
    kwargs = {"StepLR": {"step_size": 2}, "CosineAnnealingLR": {"T_max": 5}, "ConstantLR": {"factor": 0.5}}[name]
    scheduler, opt = build(torch_compat, name, kwargs)
    for _ in range(3):
        scheduler.step()
    before, lrs_before = copy.deepcopy(scheduler.state_dict()), lrs(opt)
    with pytest.raises(lrkit.StateError, match=r"state\['last_epoch'\] must be an int, got True"):
        scheduler.load_state_dict({**before, "last_epoch": True})
    assert scheduler.state_dict() == before
    assert scheduler.last_epoch == 3
    assert lrs(opt) == lrs_before


@pytest.mark.parametrize("last_epoch", [0, 1, 5, 12, 15])
def test_cosine_annealing_first_counted_step_takes_torchs_closed_form(last_epoch: int) -> None:
    """CosineAnnealingLR's recursion has a first-step branch: with ``_step_count`` 0 (a state saved before any
    step was counted) the next step takes the closed form from ``base_lr``, in torch and in lrkit alike."""

    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)

    ours_opt, theirs_opt = optimizer(), optimizer()
    ours = lrkit.CosineAnnealingLR(ours_opt, T_max=12, eta_min=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch_lr.CosineAnnealingLR(theirs_opt, T_max=12, eta_min=0.01)
        ours.load_state_dict({**ours.state_dict(), "last_epoch": last_epoch, "_step_count": 0})
        theirs.load_state_dict({**theirs.state_dict(), "last_epoch": last_epoch, "_step_count": 0})
        for opt in (ours_opt, theirs_opt):  # the groups' LR is not base_lr: the closed form must ignore it
            opt.param_groups[0]["lr"] = 0.2
        for _ in range(30):
            ours.step()
            theirs.step()
            assert ours_opt.param_groups[0]["lr"] == theirs_opt.param_groups[0]["lr"]
