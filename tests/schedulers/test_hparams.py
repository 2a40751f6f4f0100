"""Hyperparameter schedules (weight decay, betas, momentum, clip): the values reach the optimizer and take effect."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lrkit import schedules as S
from lrkit.schedulers.base import StateError
from lrkit.schedulers.hparams import HyperparamScheduler, schedule_from_text
from lrkit.train.command import run_train
from tests.conftest import TINY, parse
from tests.conftest import train_run as run

WD = S.WarmupCosine(peak_lr=0.1, warmup_steps=0, total_steps=8, min_lr=0.01)
BETA2 = S.Decay(start_lr=0.95, decay_steps=6, min_lr=0.99, decay_shape="cosine")  # a rise: 0.95 -> 0.99


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]


def adamw(params: list[torch.nn.Parameter], **kwargs: Any) -> torch.optim.AdamW:
    groups = [{"params": [params[0]], "weight_decay": 0.1}, {"params": [params[1]], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.95), **kwargs)


def fake_grads(params: list[torch.nn.Parameter], step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


def test_param_groups_hold_the_scheduled_values_at_every_step() -> None:
    optimizer = adamw(make_params())
    wd = HyperparamScheduler(optimizer, "weight_decay", [WD, None])  # the no-decay group is left alone
    beta2 = HyperparamScheduler(optimizer, "beta2", BETA2.to_dict())
    for t in range(12):
        assert optimizer.param_groups[0]["weight_decay"] == WD(t)
        assert optimizer.param_groups[1]["weight_decay"] == 0.0
        assert [g["betas"] for g in optimizer.param_groups] == [(0.9, BETA2(t))] * 2
        assert wd.get_last_value() == [WD(t), None] and beta2.current() == [BETA2(t)] * 2
        optimizer.step()
        wd.step()
        beta2.step()
    assert optimizer.param_groups[0]["betas"][1] == 0.99  # the end of the rise, held


def test_scheduled_values_take_effect_like_torch_configured_with_them() -> None:
    """One AdamW update at step t with the scheduled values == torch's AdamW built with those values."""
    t = 5
    ours = make_params()
    optimizer = adamw(ours)
    wd = HyperparamScheduler(optimizer, "weight_decay", [WD, None])
    beta2 = HyperparamScheduler(optimizer, "beta2", BETA2)
    wd.step(t)
    beta2.step(t)
    theirs = make_params()
    groups = [{"params": [theirs[0]], "weight_decay": WD(t)}, {"params": [theirs[1]], "weight_decay": 0.0}]
    reference = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, BETA2(t)))
    for params, opt in ((ours, optimizer), (theirs, reference)):
        fake_grads(params, 0)
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert not torch.equal(ours[0], make_params()[0])  # the update moved the parameters


def test_every_update_uses_the_value_of_its_step() -> None:
    """Over several updates, bit-equal to torch's AdamW whose groups are set by hand before each update."""
    ours, theirs = make_params(), make_params()
    optimizer, reference = adamw(ours), adamw(theirs)
    wd = HyperparamScheduler(optimizer, "weight_decay", [WD, None])
    beta2 = HyperparamScheduler(optimizer, "beta2", BETA2)
    for t in range(8):
        reference.param_groups[0]["weight_decay"] = WD(t)
        for group in reference.param_groups:
            group["betas"] = (0.9, BETA2(t))
        for params, opt in ((ours, optimizer), (theirs, reference)):
            fake_grads(params, t)
            opt.step()
        wd.step()
        beta2.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_sgd_momentum_and_a_value_no_group_holds() -> None:
    params = make_params()
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.5)
    momentum = HyperparamScheduler(optimizer, "momentum", {"type": "Decay", "start_lr": 0.5, "decay_steps": 4,
                                                           "min_lr": 0.9})  # fmt: skip
    clip = HyperparamScheduler(None, "grad_clip", S.Decay(1.0, 4, 0.25))
    for t in range(6):
        assert optimizer.param_groups[0]["momentum"] == S.Decay(0.5, 4, 0.9)(t)
        assert clip.get_last_value() == [S.Decay(1.0, 4, 0.25)(t)]
        momentum.step()
        clip.step()


def test_tensor_values_are_filled_in_place() -> None:
    wd, betas = torch.tensor(0.1), (torch.tensor(0.9), torch.tensor(0.95))
    optimizer = argparse.Namespace(param_groups=[{"lr": 1e-3, "weight_decay": wd, "betas": betas}])
    HyperparamScheduler(optimizer, "weight_decay", S.Constant(0.05))
    HyperparamScheduler(optimizer, "beta2", S.Constant(0.98))
    group = optimizer.param_groups[0]
    assert group["weight_decay"] is wd and float(wd) == pytest.approx(0.05)
    assert group["betas"] is betas and float(betas[1]) == pytest.approx(0.98)


def test_values_out_of_range_and_missing_keys_are_errors_naming_them() -> None:
    optimizer = adamw(make_params())
    with pytest.raises(ValueError, match=r"beta2 must be in \[0.0, 1.0\), got beta2=1.0 .*param_groups\[0\] at step"):
        HyperparamScheduler(optimizer, "beta2", S.Decay(0.95, 10, 1.0))
    with pytest.raises(ValueError, match=r"grad_clip must be in \(0.0, inf\), got grad_clip=0.0"):
        HyperparamScheduler(None, "grad_clip", S.WarmupConstant(1.0, warmup_steps=10))  # 0 at step 0
    with pytest.raises(ValueError, match="grad_clip.*is not a param-group key"):
        HyperparamScheduler(optimizer, "grad_clip", S.Constant(1.0))
    with pytest.raises(ValueError, match=r"param_groups\[0\] has no numeric 'momentum' key"):
        HyperparamScheduler(optimizer, "momentum", S.Constant(0.9))
    sgd = torch.optim.SGD(make_params(), lr=0.1)
    with pytest.raises(ValueError, match=r"beta2 is betas\[1\], but param_groups\[0\] has no 'betas'"):
        HyperparamScheduler(sgd, "beta2", S.Constant(0.99))
    with pytest.raises(ValueError, match=r"one per param group \(2\), got 3"):
        HyperparamScheduler(optimizer, "weight_decay", [WD, WD, WD])


def test_json_state_resumes_exactly_and_a_bad_state_changes_nothing() -> None:
    optimizer = adamw(make_params())
    straight = HyperparamScheduler(optimizer, "weight_decay", [WD, None])
    values = []
    for _ in range(10):
        straight.step()
        values.append(straight.get_last_value())
    first = HyperparamScheduler(adamw(make_params()), "weight_decay", [WD, None])
    for _ in range(4):
        first.step()
    state = json.loads(json.dumps(first.state_dict()))
    second = HyperparamScheduler(adamw(make_params()), "weight_decay", [S.Constant(0.3), None])
    second.load_state_dict(state)  # the stored schedules win
    resumed = []
    for _ in range(6):
        second.step()
        resumed.append(second.get_last_value())
    assert resumed == values[4:]
    before = second.state_dict()
    for bad, message in (
        ({**state, "key": "beta2"}, "state\\['key'\\] must be 'weight_decay'"),
        ({**state, "last_epoch": -1}, "last_epoch"),
        ({**state, "schedules": [{"type": "Constant", "value": -1.0}, None]}, "value must be in"),
    ):
        with pytest.raises(StateError, match=message):
            second.load_state_dict(bad)
        assert second.state_dict() == before


def test_schedule_from_text(tmp_path: Path) -> None:
    assert schedule_from_text("constant:0.1") == S.Constant(0.1)
    assert schedule_from_text("cosine:0.95:0.99", total_steps=100) == S.Decay(0.95, 100, 0.99, "cosine")
    assert schedule_from_text("linear:0.1:0.01:20", total_steps=100) == S.Decay(0.1, 20, 0.01, "linear")
    assert schedule_from_text(json.dumps(WD.to_dict())) == WD
    (tmp_path / "wd.json").write_text(json.dumps(WD.to_dict()))
    assert schedule_from_text(f"@{tmp_path / 'wd.json'}") == WD
    with pytest.raises(ValueError, match="--wd-schedule must be a JSON schedule.*got 'cosin:0.1:0.01'"):
        schedule_from_text("cosin:0.1:0.01", 10, name="--wd-schedule")
    with pytest.raises(ValueError, match="needs its length"):
        schedule_from_text("cosine:0.1:0.01", None, name="--wd-schedule")


# --------------------------------------------------------------------------- the trainer

FLAGS = [
    "--lr-scheduler", "cosine", "--warmup-steps", "1", "--total-steps", "6", "--weight-decay", "0.1",
    "--wd-schedule", "cosine:0.2:0.02", "--beta2-schedule", "linear:0.95:0.99:4",
    "--grad-clip-schedule", "linear:2.0:0.5",
]  # fmt: skip


def test_trainer_schedules_reach_the_optimizer_and_resume_exactly(tmp_path: Path) -> None:
    straight = run(tmp_path / "a", *FLAGS, "--num-iterations", "6")
    wd, beta2, clip = S.Decay(0.2, 6, 0.02, "cosine"), S.Decay(0.95, 4, 0.99), S.Decay(2.0, 6, 0.5)
    for r in straight:  # the values of step s are the schedules at s - 1; nanoGPT's no-decay group keeps 0
        t = r["step"] - 1
        assert r["weight_decay"] == [wd(t), 0.0]
        assert r["beta2"] == [beta2(t), beta2(t)]
        assert r["grad_clip"] == clip(t)

    run(tmp_path / "b", *FLAGS, "--num-iterations", "3", "--save-interval", "3")
    resumed = run(tmp_path / "b", *FLAGS, "--num-iterations", "6", "--resume", "auto")

    def trace(records: list[dict[str, Any]]) -> list[Any]:
        return [(r["step"], r["lr"], r["loss"], r["weight_decay"], r["beta2"], r["grad_clip"]) for r in records]

    assert trace(resumed) == trace(straight)


def test_trainer_resume_with_another_hparam_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(tmp_path, *FLAGS, "--num-iterations", "3", "--save-interval", "3")
    at = FLAGS.index("--wd-schedule") + 1
    changed = [*FLAGS[:at], "cosine:0.3:0.03", *FLAGS[at + 1 :]]
    args = parse(*TINY, "--run-dir", str(tmp_path), *changed, "--num-iterations", "5", "--resume", "auto")
    assert run_train(copy.deepcopy(args)) == 2
    err = capsys.readouterr().err
    assert "--wd-schedule gives" in err and "--lr-resume-policy checkpoint" in err and "override" in err
    records = run(tmp_path, *changed, "--num-iterations", "5", "--resume", "auto", "--lr-resume-policy", "override")
    assert [r["weight_decay"][0] for r in records[3:]] == [S.Decay(0.3, 6, 0.03, "cosine")(t) for t in (3, 4)]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--optimizer", "sgd", "--beta2-schedule", "constant:0.99"], "--beta2-schedule needs --optimizer adamw"),
        (["--momentum-schedule", "constant:0.9"], "--momentum-schedule needs --optimizer sgd"),
        (["--beta2-schedule", "linear:0.9:1.0"], "beta2 must be in [0.0, 1.0), got beta2=1.0"),
    ],
)
def test_bad_hparam_flags_are_reported_before_any_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run_train(parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "2", *argv)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "metrics.jsonl").exists()
