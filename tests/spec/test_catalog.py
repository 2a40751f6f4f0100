"""The catalog: a schedule declared once, in one record, shows up in the flags, the specs, preview and align."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

import pytest
import torch

from lrkit import cli
from lrkit import schedules as S
from lrkit.schedulers.llm import ScheduleLR
from lrkit.spec import CATALOG, CliName, SpecType, build_scheduler, register, registry, spec_types
from lrkit.tools.flags import ScheduleFlagError, add_schedule_arguments, scheduler_names, spec_from_args


class HalfwayLR(ScheduleLR):
    """A toy schedule: linear from the peak LR to half of it at ``total_steps``."""

    def __init__(self, optimizer: Any, total_steps: int, last_epoch: int = -1) -> None:
        self._bind(optimizer, last_epoch, total_steps=total_steps)

    @classmethod
    def _schedule(cls, peak_lr: float, total_steps: int) -> S.Schedule:
        return S.Decay(peak_lr, total_steps, peak_lr / 2, "linear")


#: The one place the toy is declared.
TOY = SpecType(
    "HalfwayLR",
    HalfwayLR,
    HalfwayLR.torch_builder,
    cli=(CliName("halfway", lambda f: {"type": "HalfwayLR", "total_steps": f.need("total_steps")}, needs_total=True),),
    align_case={"type": "HalfwayLR", "total_steps": 10},
)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> SpecType:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register(TOY)
    return TOY


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_schedule_arguments(parser)
    return parser.parse_args(list(argv))


def _optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def test_a_toy_schedule_is_in_the_flags(toy):
    assert "halfway" in scheduler_names()
    assert spec_from_args(_flags("--lr-scheduler", "halfway", "--total-steps", "10")) == toy.align_case
    with pytest.raises(ScheduleFlagError, match="--min-lr does not apply to --lr-scheduler halfway"):
        spec_from_args(_flags("--lr-scheduler", "halfway", "--total-steps", "10", "--min-lr", "0.01"))
    with pytest.raises(ScheduleFlagError, match="needs --total-steps"):
        spec_from_args(_flags("--lr-scheduler", "halfway"))


def test_a_toy_schedule_is_in_the_specs_and_matches_its_torch_oracle(toy):
    assert "HalfwayLR" in spec_types()
    ours, theirs = _optimizer(), _optimizer()
    mine, torch_one = build_scheduler(toy.align_case, ours), build_scheduler(toy.align_case, theirs, backend="torch")
    lrs = []
    for _ in range(12):
        assert mine.get_last_lr() == pytest.approx(torch_one.get_last_lr(), rel=1e-15)
        lrs.append(mine.get_last_lr()[0])
        ours.step(), theirs.step(), mine.step(), torch_one.step()
    assert lrs[0] == 0.1 and lrs[10:] == [0.05, 0.05]
    assert all(a > b for a, b in zip(lrs[:10], lrs[1:11]))
    assert mine.to_spec() == toy.align_case


def test_a_toy_schedule_is_in_preview_and_the_align_list(toy, capsys):
    assert cli.main(["preview", "--lr-scheduler", "halfway", "--total-steps", "10", "--lr", "0.1"]) == 0
    assert "lrkit preview: HalfwayLR" in capsys.readouterr().out
    assert cli.main(["align", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "llm-HalfwayLR" in listed and '"total_steps": 10' in listed


def test_registration_is_explicit_and_a_short_name_belongs_to_one_type(monkeypatch):
    # A fresh interpreter: importing lrkit registers the catalog and nothing else.
    code = "import lrkit.spec as s; assert [r.name for r in s.spec_records()] == [r.name for r in s.CATALOG]"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    clash = SpecType("Other", HalfwayLR, cli=(CliName("cosine", lambda f: {}),))
    with pytest.raises(ValueError, match="short name 'cosine' is already WarmupCosine's"):
        register(clash)
    assert "Other" not in spec_types()


def test_every_built_in_short_name_builds_a_spec_of_its_own_type():
    """Each record's short names make specs of that record's type (or wrap it: warmups, Clocked)."""
    for record in CATALOG:
        for name in (c.name for c in record.cli):
            argv = ["--lr-scheduler", name, "--total-steps", "100", "--lr", "0.1"]
            extra = {
                "step": ["--step-size", "10"],
                "multistep": ["--milestones", "30,60"],
                "exponential": ["--gamma", "0.9"],
                "wsd": ["--decay-steps", "20"],
                "wsd-s": ["--num-cycles", "2", "--decay-steps", "20"],
                "power": ["--power-coefficient", "0.3", "--power-exponent", "-0.5"],
                "log-warmup": ["--warmup-steps", "10"],
                "inverse-sqrt": ["--warmup-steps", "10"],
                "cosine-restarts": ["--cycle-steps", "50"],
                "hf:warmup_stable_decay": ["--decay-steps", "20"],
                "hf:cosine_with_min_lr": ["--min-lr", "0.01"],
                "hf:cosine_warmup_with_min_lr": ["--min-lr", "0.01"],
            }.get(name, [])
            spec = spec_from_args(_flags(*argv, *extra))
            assert spec["type"] == record.name, (name, spec)
            build_scheduler(spec, _optimizer())


def test_the_hf_short_names_are_transformers_names():
    """``get_scheduler`` takes transformers' names, whose formulas are one table in lrkit.schedules; the
    catalog's ``hf:`` short names are exactly those names."""
    hf_names = {cli.name[3:] for record in CATALOG for cli in record.cli if cli.name.startswith("hf:")}
    assert hf_names == set(S.HF_SCHEDULER_NAMES)


def _two_groups() -> torch.optim.Optimizer:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.SGD([{"params": [a], "lr": 0.01}, {"params": [b], "lr": 0.002}], lr=0.01, momentum=0.9)


def _advance(scheduler: Any, metric: bool) -> None:
    scheduler.optimizer.step()
    scheduler.step(1.0) if metric else scheduler.step()


@pytest.mark.parametrize("record", [r for r in CATALOG if r.align_case is not None], ids=lambda r: r.name)
def test_the_torch_backend_state_is_plain_data_and_resumes(record: SpecType, tmp_path) -> None:
    """accelerate's load_state and torch.load default to weights_only=True: the torch backend's state (torch's
    classes, and LambdaLR over lrkit's schedules) must load that way, and continue as if never interrupted."""
    spec, metric = record.align_case, record.name == "ReduceLROnPlateau"
    straight, first = (
        build_scheduler(spec, _two_groups(), backend="torch"),
        build_scheduler(spec, _two_groups(), backend="torch"),
    )
    for _ in range(4):
        _advance(straight, metric)
        _advance(first, metric)
    torch.save(first.state_dict(), tmp_path / "scheduler.pt")
    resumed = build_scheduler(spec, _two_groups(), backend="torch")
    resumed.load_state_dict(torch.load(tmp_path / "scheduler.pt", weights_only=True))
    for group, lr in zip(resumed.optimizer.param_groups, first.get_last_lr()):
        group["lr"] = lr  # what optimizer.load_state_dict restores
    for _ in range(6):
        _advance(straight, metric)
        _advance(resumed, metric)
        assert resumed.get_last_lr() == straight.get_last_lr()
