"""A bad spec raises ValueError or TypeError, and the message names the key and the value."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import lrkit


def sgd() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)


@pytest.mark.parametrize(
    "spec,error,match",
    [
        ({"type": "StepLRR", "step_size": 3}, ValueError, r"spec\['type'\]='StepLRR' is not a known scheduler"),
        ({"step_size": 3}, ValueError, r"spec\['type'\]=None is not a known scheduler"),
        ({"type": "StepLR", "stepsize": 3}, ValueError, r"spec \(StepLR\) has unknown keys \['stepsize'\]"),
        ({"type": "StepLR", "step_size": 3, "last_epoch": 4}, ValueError, r"unknown keys \['last_epoch'\]"),
        (
            {
                "type": "SequentialLR",
                "milestones": [3],
                "schedulers": [{"type": "StepLR", "step_size": 3}, {"type": "Nope"}],
            },
            ValueError,
            r"spec\['schedulers'\]\[1\]\['type'\]='Nope' is not a known scheduler",
        ),
        (
            {"type": "ChainedScheduler", "schedulers": [{"type": "StepLR", "step_size": 3, "gama": 0.5}]},
            ValueError,
            r"spec\['schedulers'\]\[0\] \(StepLR\) has unknown keys \['gama'\]",
        ),
        (
            {"type": "ChainedScheduler"},
            ValueError,
            r"spec \(ChainedScheduler\) needs a non-empty list under "
            r"'schedulers', got None",
        ),
        (["StepLR"], TypeError, r"spec must be a dict with a 'type' key, got \['StepLR'\]"),
        ({"type": "StepLR", "step_size": 0}, ValueError, r"step_size must be a positive int, got step_size=0\b"),
    ],
    ids=[
        "unknown-type",
        "no-type",
        "unknown-key",
        "last_epoch-key",
        "unknown-child-type",
        "unknown-child-key",
        "composite-without-children",
        "not-a-dict",
        "invalid-value",
    ],
)
def test_invalid_spec(spec: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        lrkit.build_scheduler(spec, sgd())


def test_invalid_backend() -> None:
    with pytest.raises(ValueError, match=r"backend must be 'lrkit' or 'torch', got backend='jax'"):
        lrkit.build_scheduler({"type": "StepLR", "step_size": 3}, sgd(), backend="jax")  # type: ignore[arg-type]
