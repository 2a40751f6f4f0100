"""Schedules as data: ``build_scheduler`` with both backends, ``to_spec`` round trips, fingerprints."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import warnings
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr
from torch.optim import swa_utils

import lrkit
import lrkit.schedulers.torch_compat
from lrkit import build_scheduler, spec_fingerprint

TORCH_CLASSES = list(lrkit.schedulers.torch_compat.__all__)  # torch.optim.lr_scheduler's 15 names and SWALR


def linear_warmup(epoch: int) -> float:
    return min(1.0, (epoch + 1) / 10)


def decay(epoch: int) -> float:
    return 0.98


LEAVES: dict[str, dict[str, Any]] = {
    "LambdaLR": {"type": "LambdaLR", "lr_lambda": linear_warmup},
    "MultiplicativeLR": {"type": "MultiplicativeLR", "lr_lambda": decay},
    "StepLR": {"type": "StepLR", "step_size": 3, "gamma": 0.5},
    "MultiStepLR": {"type": "MultiStepLR", "milestones": [5, 11, 11], "gamma": 0.3},
    "ConstantLR": {"type": "ConstantLR", "factor": 0.25, "total_iters": 7},
    "LinearLR": {"type": "LinearLR", "start_factor": 0.1, "total_iters": 5},
    "ExponentialLR": {"type": "ExponentialLR", "gamma": 0.95},
    "PolynomialLR": {"type": "PolynomialLR", "total_iters": 30, "power": 2.0},
    "CosineAnnealingLR": {"type": "CosineAnnealingLR", "T_max": 9, "eta_min": 1e-4},
    "ReduceLROnPlateau": {"type": "ReduceLROnPlateau", "mode": "max", "patience": 2, "factor": 0.3},
    "CyclicLR": {"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.2, "step_size_up": 4, "mode": "triangular2"},
    "CosineAnnealingWarmRestarts": {"type": "CosineAnnealingWarmRestarts", "T_0": 4, "T_mult": 2},
    "OneCycleLR": {"type": "OneCycleLR", "max_lr": [0.3, 0.2], "total_steps": 80, "anneal_strategy": "linear"},
    "SWALR": {"type": "SWALR", "swa_lr": [0.01, 0.02], "anneal_epochs": 7, "anneal_strategy": "linear"},
}
# Nestings that torch runs itself (the composite-in-SequentialLR cases are in test_torch_parity).
SPECS: dict[str, dict[str, Any]] = {
    **LEAVES,
    "SequentialLR": {
        "type": "SequentialLR",
        "schedulers": [LEAVES["LinearLR"], LEAVES["CosineAnnealingLR"], LEAVES["StepLR"]],
        "milestones": [5, 20],
    },
    "ChainedScheduler": {
        "type": "ChainedScheduler",
        "schedulers": [LEAVES["ConstantLR"], LEAVES["ExponentialLR"], LEAVES["CyclicLR"]],
    },
    "Chained(Sequential)": {
        "type": "ChainedScheduler",
        "schedulers": [
            {"type": "SequentialLR", "schedulers": [LEAVES["LinearLR"], LEAVES["PolynomialLR"]], "milestones": [6]},
            LEAVES["MultiStepLR"],
        ],
    },
    "Sequential(Chained first)": {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "ChainedScheduler", "schedulers": [LEAVES["StepLR"], LEAVES["LinearLR"]]},
            LEAVES["OneCycleLR"],
        ],
        "milestones": [12],
    },
}
STEPS = 60


def make_optimizer() -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (0.1, 0.04)]
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def trace(spec: dict[str, Any], backend: str) -> list[tuple[Any, ...]]:
    optimizer = make_optimizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = build_scheduler(spec, optimizer, backend=backend)  # type: ignore[arg-type]
        out = []
        for t in range(STEPS):
            groups = optimizer.param_groups
            out.append(
                (tuple(scheduler.get_last_lr()), tuple(g["lr"] for g in groups), tuple(g["momentum"] for g in groups))
            )
            if spec["type"] == "ReduceLROnPlateau":
                scheduler.step([1.0, 2.0, 2.0, 1.5, 2.0, 2.0, 2.0][t % 7])
            else:
                scheduler.step()
    return out


def test_every_torch_class_is_a_spec_type() -> None:
    assert set(TORCH_CLASSES) <= set(lrkit.spec_types())
    assert {spec["type"] for spec in SPECS.values()} == set(TORCH_CLASSES)


@pytest.mark.parametrize("name", list(SPECS))
def test_backends_build_their_own_classes(name: str) -> None:
    spec = SPECS[name]
    ours = build_scheduler(spec, make_optimizer())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = build_scheduler(spec, make_optimizer(), backend="torch")
    assert type(ours) is getattr(lrkit, spec["type"])
    assert type(theirs) is (swa_utils.SWALR if spec["type"] == "SWALR" else getattr(torch_lr, spec["type"]))
    for child in getattr(theirs, "_schedulers", []):
        assert type(child).__module__ == "torch.optim.lr_scheduler"


@pytest.mark.parametrize("name", list(SPECS))
def test_backends_give_equal_lrs(name: str) -> None:
    assert trace(SPECS[name], "lrkit") == trace(SPECS[name], "torch")


def includes(returned: Any, given: Any) -> bool:
    """``returned`` holds every key of ``given`` with the same value, recursively; it may add defaults."""
    if isinstance(given, dict):
        return isinstance(returned, dict) and all(k in returned and includes(returned[k], v) for k, v in given.items())
    if isinstance(given, list):
        return isinstance(returned, list) and len(returned) == len(given) and all(map(includes, returned, given))
    return type(returned) is type(given) and returned == given


@pytest.mark.parametrize("name", list(SPECS))
def test_to_spec_round_trip(name: str) -> None:
    spec = SPECS[name]
    scheduler = build_scheduler(spec, make_optimizer())
    returned = scheduler.to_spec()
    assert returned["type"] == spec["type"]
    assert includes(returned, spec)  # what the user gave comes back unchanged, defaults filled in
    assert trace(returned, "lrkit") == trace(spec, "lrkit")
    assert trace(returned, "torch") == trace(spec, "lrkit")
    assert build_scheduler(returned, make_optimizer()).to_spec() == returned


@pytest.mark.parametrize("name", [n for n in SPECS if "Lambda" not in n and "Multiplicative" not in n])
def test_to_spec_is_json(name: str) -> None:
    returned = build_scheduler(SPECS[name], make_optimizer()).to_spec()
    assert json.loads(json.dumps(returned, allow_nan=False)) == returned
    assert trace(json.loads(json.dumps(returned)), "lrkit") == trace(SPECS[name], "lrkit")


def test_to_spec_is_a_copy() -> None:
    scheduler = build_scheduler(SPECS["Chained(Sequential)"], make_optimizer())
    returned = scheduler.to_spec()
    returned["schedulers"][0]["milestones"].append(99)
    returned["schedulers"][1]["gamma"] = 0.0
    assert scheduler.to_spec() == build_scheduler(SPECS["Chained(Sequential)"], make_optimizer()).to_spec()


def test_to_spec_of_directly_built_schedulers() -> None:
    """Schedulers built by hand, not from a spec, return a spec that rebuilds them."""
    optimizer = make_optimizer()
    scheduler = lrkit.SequentialLR(
        optimizer,
        [lrkit.LinearLR(optimizer, start_factor=0.2, total_iters=4), lrkit.MultiStepLR(optimizer, (3, 9))],
        milestones=[4],
    )
    spec = scheduler.to_spec()
    assert spec == {
        "type": "SequentialLR",
        "milestones": [4],
        "schedulers": [
            {"type": "LinearLR", "start_factor": 0.2, "end_factor": 1.0, "total_iters": 4},
            {"type": "MultiStepLR", "milestones": [3, 9], "gamma": 0.1},
        ],
    }
    assert trace(spec, "torch") == trace(spec, "lrkit")


# --------------------------------------------------------------------------- fingerprints

JSON_SPECS = {name: spec for name, spec in SPECS.items() if "Lambda" not in name and "Multiplicative" not in name}


def test_fingerprint_ignores_key_order() -> None:
    spec = SPECS["Sequential(Chained first)"]

    def reversed_keys(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reversed_keys(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reversed_keys(v) for v in value]
        return value

    reordered = reversed_keys(spec)
    assert list(reordered) != list(spec)
    assert spec_fingerprint(reordered) == spec_fingerprint(spec)
    assert spec_fingerprint(json.loads(json.dumps(spec))) == spec_fingerprint(spec)


def test_fingerprint_is_stable_across_processes() -> None:
    specs = list(JSON_SPECS.values())
    here = [spec_fingerprint(s) for s in specs]
    code = (
        "import json, sys, lrkit; print(json.dumps([lrkit.spec_fingerprint(s) for s in json.loads(sys.stdin.read())]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another str hash than this process's (random) one
    result = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(specs), capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(result.stdout) == here


def test_fingerprint_of_rebuilt_schedule_is_unchanged() -> None:
    for spec in JSON_SPECS.values():
        returned = build_scheduler(spec, make_optimizer()).to_spec()
        rebuilt = build_scheduler(returned, make_optimizer()).to_spec()
        assert spec_fingerprint(rebuilt) == spec_fingerprint(returned)


def _mutations() -> list[tuple[str, dict[str, Any]]]:
    base = SPECS["Chained(Sequential)"]
    out = []

    def mutated(what: str, change: Any) -> None:
        spec = copy.deepcopy(base)
        change(spec)
        out.append((what, spec))

    mutated("gamma by one ulp", lambda s: s["schedulers"][1].__setitem__("gamma", 0.30000000000000004))
    mutated("a milestone deep inside", lambda s: s["schedulers"][0].__setitem__("milestones", [7]))
    mutated("a child's type", lambda s: s["schedulers"][0]["schedulers"][1].__setitem__("type", "LinearLR"))
    mutated("child order", lambda s: s["schedulers"].reverse())
    mutated("an explicit default", lambda s: s["schedulers"][0]["schedulers"][0].__setitem__("end_factor", 1.0))
    mutated("int instead of float", lambda s: s["schedulers"][0]["schedulers"][1].__setitem__("power", 2))
    mutated("a child removed", lambda s: s["schedulers"].pop())
    return out


def test_fingerprint_is_sensitive() -> None:
    base = spec_fingerprint(SPECS["Chained(Sequential)"])
    for what, spec in _mutations():
        assert spec_fingerprint(spec) != base, what
    fingerprints = [spec_fingerprint(s) for s in JSON_SPECS.values()]
    assert len(set(fingerprints)) == len(fingerprints)


def test_fingerprint_refuses_non_data() -> None:
    with pytest.raises(TypeError, match="Object of type function is not JSON serializable"):
        spec_fingerprint(SPECS["LambdaLR"])
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        spec_fingerprint({"type": "ExponentialLR", "gamma": float("nan")})
