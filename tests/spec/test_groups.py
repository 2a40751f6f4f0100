"""Per-group schedules (PerGroup), layer-wise LR decay and the trainer's named groups, against oracles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lrkit
from lrkit import schedules as S
from lrkit.schedulers.base import StateError
from lrkit.spec.groups import PerGroup, scale_absolute_lrs
from lrkit.train import checkpoint as ckpt
from lrkit.train.command import run_train
from lrkit.train.metrics import plot_run
from lrkit.train.models import build_model
from lrkit.train.param_groups import layer_depths, layerwise_lr_decay, part_groups, scale_groups
from tests.conftest import TINY, parse, run_schedule
from tests.conftest import train_run as run

PEAKS = (1e-3, 3e-4, 5e-4)
CHILDREN: list[dict[str, Any]] = [
    {"type": "WarmupCosine", "warmup_steps": 5, "total_steps": 40, "min_lr": 1e-5},
    {"type": "WSD", "warmup_steps": 0, "total_steps": 40, "decay_steps": 10, "decay_shape": "1-sqrt"},
    {"type": "HFSchedule", "name": "cosine_with_min_lr", "num_warmup_steps": 3, "num_training_steps": 30,
     "scheduler_specific_kwargs": {"min_lr": 5e-5}},
]  # fmt: skip
STEPS = 50


def make_optimizer(peaks: tuple[float, ...] = PEAKS, names: list[str] | None = None) -> torch.optim.Optimizer:
    groups: list[dict[str, Any]] = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": p} for p in peaks]
    for group, name in zip(groups, names or []):
        group["name"] = name
    return torch.optim.SGD(groups, lr=peaks[0])


def lrs_over(scheduler: Any, optimizer: torch.optim.Optimizer, steps: int = STEPS) -> list[list[float]]:
    """Every group's LR at steps 0..``steps`` (test_llm's stepping loop)."""
    return run_schedule(scheduler, optimizer, steps)


def alone(spec: dict[str, Any], peak: float, backend: str = "lrkit") -> list[float]:
    """The oracle: the child spec built by itself on a one-group optimizer whose LR is the group's."""
    optimizer = make_optimizer((peak,))
    return [lr[0] for lr in lrs_over(lrkit.build_scheduler(spec, optimizer, backend=backend), optimizer)]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- PerGroup


def test_each_group_follows_its_child_built_alone() -> None:
    optimizer = make_optimizer()
    ours = lrs_over(lrkit.build_scheduler({"type": "PerGroup", "schedulers": CHILDREN}, optimizer), optimizer)
    for g, (child, peak) in enumerate(zip(CHILDREN, PEAKS)):
        assert [lr[g] for lr in ours] == alone(child, peak)


def test_torch_backend_equals_lrkit_and_each_child_in_torch() -> None:
    spec = {"type": "PerGroup", "schedulers": CHILDREN}
    optimizer = make_optimizer()
    ours = lrs_over(lrkit.build_scheduler(spec, optimizer), optimizer)
    optimizer = make_optimizer()
    native = lrkit.build_scheduler(spec, optimizer, backend="torch")
    assert isinstance(native, torch.optim.lr_scheduler.LambdaLR)
    theirs = lrs_over(native, optimizer)
    np.testing.assert_allclose(theirs, ours, rtol=4.5e-16, atol=0)  # schedule(t) / base * base: one ulp
    for g, (child, peak) in enumerate(zip(CHILDREN, PEAKS)):
        np.testing.assert_allclose([lr[g] for lr in theirs], alone(child, peak, "torch"), rtol=4.5e-16, atol=0)


def test_dict_keyed_by_group_name_equals_the_list() -> None:
    names = ["embed", "body", "head"]
    keyed = {"type": "PerGroup", "schedulers": {"head": CHILDREN[2], "embed": CHILDREN[0], "body": CHILDREN[1]}}
    optimizer = make_optimizer(names=names)
    by_name = lrs_over(lrkit.build_scheduler(keyed, optimizer), optimizer)
    optimizer = make_optimizer()
    listed = {"type": "PerGroup", "names": names, "schedulers": CHILDREN}
    assert by_name == lrs_over(lrkit.build_scheduler(listed, optimizer), optimizer)
    optimizer = make_optimizer(names=names)
    torch_keyed = lrs_over(lrkit.build_scheduler(keyed, optimizer, backend="torch"), optimizer)
    np.testing.assert_allclose(torch_keyed, by_name, rtol=4.5e-16, atol=0)


def test_names_must_match_the_groups() -> None:
    names = ["embed", "body", "head"]
    with pytest.raises(ValueError, match=r"names\[1\]='head' but param_groups\[1\] is named 'body'"):
        PerGroup(make_optimizer(names=names), CHILDREN, names=["embed", "head", "body"])
    with pytest.raises(ValueError, match=r"missing \['head'\], unknown \['lm_head'\]"):
        PerGroup(make_optimizer(names=names), {"embed": CHILDREN[0], "body": CHILDREN[1], "lm_head": CHILDREN[2]})
    with pytest.raises(ValueError, match="need every param group to carry a 'name'"):
        PerGroup(make_optimizer(), {"embed": CHILDREN[0]})
    with pytest.raises(ValueError, match=r"one spec per param group \(3\), got 2"):
        PerGroup(make_optimizer(), CHILDREN[:2])


def test_a_child_that_is_not_a_pure_schedule_is_refused_by_name() -> None:
    children = [CHILDREN[0], {"type": "StepLR", "step_size": 3}, CHILDREN[2]]
    with pytest.raises(TypeError, match=r"PerGroup schedulers\[1\] is a StepLR.*WarmupCosine"):
        PerGroup(make_optimizer(), children)
    with pytest.raises(TypeError, match=r"PerGroup schedulers\[1\] \('body'\) is a StepLR"):
        PerGroup(make_optimizer(names=["embed", "body", "head"]), children)


def test_a_childs_error_names_the_group_and_its_peak() -> None:
    children = [CHILDREN[0], {**CHILDREN[0], "min_lr": 4e-4}, CHILDREN[2]]  # above group 1's peak 3e-4
    with pytest.raises(ValueError, match=r"PerGroup schedulers\[1\]: WarmupCosine: min_lr must be <= peak_lr"):
        PerGroup(make_optimizer(), children)
    with pytest.raises(ValueError, match=r"schedulers\[0\]\['type'\]='Nope'"):
        PerGroup(make_optimizer(), [{"type": "Nope"}, *CHILDREN[1:]])


def test_json_state_and_spec_round_trip_resume_exactly() -> None:
    spec = {"type": "PerGroup", "schedulers": CHILDREN}
    optimizer = make_optimizer()
    full = lrs_over(lrkit.build_scheduler(spec, optimizer), optimizer)

    optimizer = make_optimizer()
    first = lrkit.build_scheduler(spec, optimizer)
    assert first.to_spec() == spec
    head = lrs_over(first, optimizer, 17)
    state = json.loads(json.dumps(first.state_dict()))
    opt_state = optimizer.state_dict()
    optimizer = make_optimizer()
    optimizer.load_state_dict(opt_state)
    second = lrkit.build_scheduler(first.to_spec(), optimizer)
    second.load_state_dict(state)
    assert head + lrs_over(second, optimizer, STEPS - 17)[1:] == full
    bad = {**state, "schedules": state["schedules"][:2]}
    with pytest.raises(StateError, match="one schedule per param group"):
        second.load_state_dict(bad)


def test_spec_schedules_without_an_optimizer_match_the_bound_ones() -> None:
    """What --lr-resume-policy extend uses: the groups' schedules from the spec and the peaks alone."""
    names = ["embed", "body", "head"]
    spec = {"names": names, "schedulers": CHILDREN}
    bound = PerGroup(make_optimizer(names=names), **spec)
    assert PerGroup.spec_schedules(list(PEAKS), **spec) == bound.schedules


def test_per_group_inside_sequential_lr() -> None:
    spec = {
        "type": "SequentialLR",
        "milestones": [10],
        "schedulers": [{"type": "WarmupConstant", "warmup_steps": 10}, {"type": "PerGroup", "schedulers": CHILDREN}],
    }
    optimizer = make_optimizer()
    ours = lrs_over(lrkit.build_scheduler(spec, optimizer), optimizer)
    for g, (child, peak) in enumerate(zip(CHILDREN, PEAKS)):
        expected = [S.WarmupConstant(peak, 10)(t) for t in range(10)] + alone(child, peak)[: STEPS + 1 - 10]
        assert [lr[g] for lr in ours] == expected


# --------------------------------------------------------------------------- floors scale with the group


def test_absolute_lrs_scale_with_each_groups_factor() -> None:
    peak, factors = 1e-3, [0.25, 1.0]
    cosine = {"type": "WarmupCosine", "warmup_steps": 2, "total_steps": 10, "min_lr": 1e-4, "warmup_start_lr": 1e-5}
    scaled = scale_absolute_lrs(cosine, factors)
    assert scaled["min_lr"] == [cosine["min_lr"] * f for f in factors]
    assert scaled["warmup_start_lr"] == [cosine["warmup_start_lr"] * f for f in factors]
    # The oracle: the schedule written for the base LR, times each group's factor.
    base = S.WarmupCosine(peak, 2, 10, min_lr=cosine["min_lr"], warmup_start_lr=cosine["warmup_start_lr"])
    optimizer = make_optimizer(tuple(peak * f for f in factors))
    got = lrs_over(lrkit.build_scheduler(scaled, optimizer), optimizer, 12)
    np.testing.assert_allclose(got, [[f * base(t) for f in factors] for t in range(13)], rtol=1e-12, atol=0)
    assert scale_absolute_lrs(cosine, [1.0, 1.0]) == cosine  # nothing to scale: the spec is unchanged
    step = {"type": "StepLR", "step_size": 3}
    assert scale_absolute_lrs(step, [0.5, 1.0]) == step  # multiplicative: no absolute LR in it
    per_group = scale_absolute_lrs({"type": "PerGroup", "schedulers": [cosine, cosine]}, [0.5, 2.0])
    assert [c["min_lr"] for c in per_group["schedulers"]] == [cosine["min_lr"] * 0.5, cosine["min_lr"] * 2.0]
    sequential = scale_absolute_lrs({"type": "SequentialLR", "milestones": [3], "schedulers": [step, cosine]}, [0.5])
    assert sequential["schedulers"][1]["min_lr"] == cosine["min_lr"] * 0.5  # one group: a scalar

    transformers = pytest.importorskip("transformers")
    hf = {"type": "HFSchedule", "name": "cosine_with_min_lr", "num_warmup_steps": 0, "num_training_steps": 10,
          "scheduler_specific_kwargs": {"min_lr": 1e-4}}  # fmt: skip
    assert scale_absolute_lrs(hf, [0.5, 1.0]) == hf  # transformers converts min_lr with the default LR already
    # The oracle: transformers on the whole optimizer, whose default LR is the base LR --min-lr is written for.
    optimizer = make_optimizer((peak * 0.5, peak))
    optimizer.defaults["lr"] = peak
    oracle = transformers.get_scheduler(
        "cosine_with_min_lr", optimizer, num_warmup_steps=0, num_training_steps=10,
        scheduler_specific_kwargs={"min_lr": 1e-4},
    )  # fmt: skip
    expected = lrs_over(oracle, optimizer, 10)
    per_group = scale_absolute_lrs({"type": "PerGroup", "schedulers": [hf, hf]}, [0.5, 1.0])
    optimizer = make_optimizer((peak * 0.5, peak))
    np.testing.assert_allclose(
        lrs_over(lrkit.build_scheduler(per_group, optimizer), optimizer, 10), expected, rtol=1e-12
    )
    optimizer = make_optimizer((peak * 0.5, peak))
    optimizer.defaults["lr"] = peak
    np.testing.assert_allclose(lrs_over(lrkit.build_scheduler(hf, optimizer), optimizer, 10), expected, rtol=1e-12)


# --------------------------------------------------------------------------- layer-wise LR decay


def _depth_by_name(model_name: str, name: str, num_layers: int) -> int:
    """The oracle's depths, from the parameter names of the two models."""
    prefix = "transformer.h." if model_name == "gpt2" else "layers."
    if name.startswith(prefix):
        return int(name[len(prefix) :].split(".")[0]) + 1
    if name in ("transformer.wte.weight", "transformer.wpe.weight", "tok_embeddings.weight"):
        return 0
    return num_layers + 1


@pytest.mark.parametrize("model_name", ["gpt2", "llama3"])
def test_llrd_peaks_follow_beits_formula(model_name: str) -> None:
    torch.manual_seed(0)
    model = build_model(model_name, "tiny")
    lr, decay, num_layers = 1e-3, 0.7, model.config.n_layer
    groups = layerwise_lr_decay(model, lr, decay, weight_decay=0.1)
    beit = [decay ** (num_layers + 1 - i) for i in range(num_layers + 2)]  # LayerDecayValueAssigner's values
    seen: list[int] = []
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        for param in group["params"]:
            depth = _depth_by_name(model_name, names[id(param)], num_layers)
            assert group["lr"] == lr * beit[depth] and group["lr_factor"] == beit[depth]
            assert group["weight_decay"] == (0.1 if param.dim() >= 2 else 0.0)
            assert group["name"].endswith("_no_decay") == (param.dim() < 2)
            seen.append(id(param))
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # every parameter once (tied: once)
    assert groups[0]["name"] == "embed" and groups[-1]["name"].startswith("head")
    assert layer_depths(model)[1] == num_layers


def test_gpt2_tied_head_is_an_embedding_and_parts_are_named() -> None:
    model = build_model("gpt2", "tiny")
    groups = {g["name"]: g for g in part_groups(model, 1e-3, weight_decay=0.1)}
    assert list(groups) == ["embed", "body", "body_no_decay", "head_no_decay"]
    assert any(p is model.lm_head.weight for p in groups["embed"]["params"])
    llama = build_model("llama3", "tiny")
    assert [g["name"] for g in part_groups(llama, 1e-3)] == ["embed", "body", "body_no_decay", "head", "head_no_decay"]


def test_scale_groups_and_bad_input() -> None:
    model = build_model("llama3", "tiny")
    groups = scale_groups(part_groups(model, 1e-3), {"body": 0.5, "head_no_decay": 2.0})
    factors = {g["name"]: g["lr_factor"] for g in groups}
    assert factors == {"embed": 1.0, "body": 0.5, "body_no_decay": 0.5, "head": 1.0, "head_no_decay": 2.0}
    assert [g["lr"] for g in groups] == [1e-3 * factors[g["name"]] for g in groups]
    with pytest.raises(ValueError, match=r"no param group is named 'trunk'; the groups are \['embed'"):
        scale_groups(part_groups(model, 1e-3), {"trunk": 0.5})
    with pytest.raises(ValueError, match=r"decay must be in \(0.0, 1.0\], got decay=1.5"):
        layerwise_lr_decay(model, 1e-3, 1.5)


# --------------------------------------------------------------------------- the trainer

LR, MIN_LR, WARMUP, TOTAL = 1e-3, 1e-4, 2, 5
EMBED = {"type": "WSD", "warmup_steps": 0, "total_steps": TOTAL, "decay_steps": 2, "min_lr": 2e-5}
GROUP_FLAGS = [
    "--param-groups", "parts", "--lr", str(LR), "--lr-scheduler", "cosine", "--warmup-steps", str(WARMUP),
    "--total-steps", str(TOTAL), "--min-lr", str(MIN_LR), "--group-lr", "body=0.5",
    "--group-schedule", "embed=" + json.dumps(EMBED),
]  # fmt: skip


def test_trainer_logs_every_groups_lr_and_each_follows_its_schedule(tmp_path: Path) -> None:
    records = run(tmp_path / "straight", *GROUP_FLAGS, "--num-iterations", "6")
    names = ["embed", "body", "body_no_decay", "head_no_decay"]
    factors = {"embed": 1.0, "body": 0.5, "body_no_decay": 0.5, "head_no_decay": 1.0}
    assert all(r["lr_groups"] == names for r in records)
    oracle = {name: S.WarmupCosine(LR * f, WARMUP, TOTAL, MIN_LR * f) for name, f in factors.items()}
    oracle["embed"] = S.WSD(LR, 0, TOTAL, decay_steps=2, min_lr=2e-5)
    for r in records:  # the LR of step s is the schedule at s - 1
        assert r["lr"] == [oracle[name](r["step"] - 1) for name in names]
    assert records[-1]["lr"][1] == MIN_LR * 0.5  # the body's floor scaled with its peak
    native = run(tmp_path / "torch", *GROUP_FLAGS, "--num-iterations", "6", "--scheduler-backend", "torch")
    np.testing.assert_allclose([r["lr"] for r in native], [r["lr"] for r in records], rtol=4.5e-16, atol=0)

    # The checkpoint records the whole per-group spec, and a resume continues it exactly.
    run(tmp_path / "resumed", *GROUP_FLAGS, "--num-iterations", "3", "--save-interval", "3")
    payload = ckpt.load_checkpoint(ckpt.find_latest_valid(tmp_path / "resumed"))
    spec = payload["schedule"]["scheduler_spec"]
    assert spec["type"] == "PerGroup" and spec["names"] == names and spec["schedulers"][0] == EMBED
    resumed = run(tmp_path / "resumed", *GROUP_FLAGS, "--num-iterations", "6", "--resume", "auto")
    assert [(r["lr"], r["loss"]) for r in resumed] == [(r["lr"], r["loss"]) for r in records]
    plot_run(tmp_path / "resumed" / "metrics.jsonl", tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 0


def test_cooldown_on_resume_takes_each_groups_own_floor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``cooldown:N`` on a PerGroup schedule decays every group to its child's min_lr, not to 0."""
    run(tmp_path, *GROUP_FLAGS, "--num-iterations", "3", "--save-interval", "3")
    records = run(
        tmp_path, *GROUP_FLAGS, "--num-iterations", "6", "--resume", "auto", "--lr-resume-policy", "cooldown:2"
    )
    floors = [EMBED["min_lr"], MIN_LR * 0.5, MIN_LR * 0.5, MIN_LR]  # embed, body, body_no_decay, head_no_decay
    straight = run(tmp_path / "straight", *GROUP_FLAGS, "--num-iterations", "4")
    assert records[3]["lr"] == straight[3]["lr"]  # continuous: the cooldown starts from the LR in force
    assert records[5]["lr"] == floors
    assert records[4]["lr"] == [S.Decay(lr, 2, floor)(1) for lr, floor in zip(records[3]["lr"], floors)]
    assert "to min_lr [2e-05, 5e-05, 5e-05, 0.0001]" in capsys.readouterr().err


def test_trainer_layer_decay_scales_peaks_and_floors(tmp_path: Path) -> None:
    decay, layers = 0.5, 4
    records = run(
        tmp_path, "--layer-decay", str(decay), "--lr", str(LR), "--lr-scheduler", "cosine",
        "--total-steps", "3", "--min-lr", str(MIN_LR), "--num-iterations", "4",
    )  # fmt: skip
    names = records[0]["lr_groups"]
    depth = {"embed": 0, "head": layers + 1, **{f"block{i}": i + 1 for i in range(layers)}}
    factors = [decay ** (layers + 1 - depth[n.removesuffix("_no_decay")]) for n in names]
    assert records[0]["lr"] == [LR * f for f in factors]  # no warmup: step 1 runs at the peak
    assert records[-1]["lr"] == [MIN_LR * f for f in factors]  # step 4 = schedule(3) = the floor


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--group-lr", "body=0.5"], "--group-lr needs named groups"),
        (["--param-groups", "parts", "--group-lr", "trunk=0.5"], "no param group is named 'trunk'"),
        (["--param-groups", "parts", "--layer-decay", "0.5"], "--layer-decay needs --param-groups layers"),
        (["--layer-decay", "1.5"], "--layer-decay 1.5: decay must be in (0.0, 1.0]"),
        (
            ["--param-groups", "parts", "--lr-scheduler", "step", "--step-size", "2", "--group-schedule",
             'embed={"type": "WarmupConstant", "warmup_steps": 1}'],
            "follow --lr-scheduler, a StepLR, which cannot be bound to one group",
        ),
    ],
)  # fmt: skip
def test_bad_group_flags_are_reported_before_any_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run_train(parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "2", *argv)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "metrics.jsonl").exists()
