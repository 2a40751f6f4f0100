"""lrkit inside the real ``transformers.Trainer`` (:mod:`lrkit.integrations.hf_trainer`), on CPU.

The oracles: ``transformers.get_scheduler`` and ``lrkit.build_scheduler`` stepped by hand, a
``TrainingSchedule`` resumed alone, and an uninterrupted Trainer run. LRs are compared with ==.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from lrkit.integrations.hf_trainer import LrkitTrainer, group_lr_keys, hf_schedule_spec  # noqa: E402
from lrkit.runtime import ResumeError, ScheduleError, TrainingSchedule  # noqa: E402
from lrkit.spec import build_scheduler  # noqa: E402
from tests.integrations.hf_trainer_tiny import tiny_args, tiny_data, tiny_model, update_logs  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


# ---------------------------------------------------------------------------------------------- helpers


def lrs_by_hand(scheduler: Any, optimizer: torch.optim.Optimizer, updates: int) -> list[list[float]]:
    """Each group's LR used by updates 1..``updates``: the LR before the scheduler's step after that update."""
    out = []
    for _ in range(updates):
        out.append([float(g["lr"]) for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return out


def toy_optimizer(peaks: list[float]) -> torch.optim.Optimizer:
    """An optimizer with one group per peak LR, for the oracles; its default LR (which transformers'
    polynomial and ``min_lr`` read) is group 0's, as the Trainer's optimizer has ``args.learning_rate``."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in peaks]
    return torch.optim.SGD(groups, lr=peaks[0])


def logged_lrs(trainer: Trainer, after: int = 0) -> list[list[float]]:
    """Each update's per-group LRs as the Trainer logged them (``learning_rate/group_<i>``), for the updates
    after ``after`` (a resumed Trainer's log history starts with the checkpoint's)."""
    keys = group_lr_keys(trainer.optimizer)
    return [[entry[k] for k in keys] for entry in update_logs(trainer.state.log_history) if entry["step"] > after]


class StopAt(TrainerCallback):
    """Stops training after update ``step`` (its checkpoint, if due, is saved first): an interrupted run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step == self.step:
            control.should_training_stop = True
            control.should_save = True
        return control


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# ---------------------------------------------------------------- the schedule: HF's names and lrkit's specs

HF_NAMES = [
    ("linear", None),
    ("cosine", None),
    ("cosine_with_restarts", {"num_cycles": 2}),
    ("polynomial", {"lr_end": 1e-4, "power": 2.0}),
    ("constant", None),
    ("constant_with_warmup", None),
    ("inverse_sqrt", None),
    ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
    ("cosine_warmup_with_min_lr", {"min_lr": 1e-3}),
    ("warmup_stable_decay", {"num_decay_steps": 3}),
]


@pytest.mark.parametrize(("name", "kwargs"), HF_NAMES, ids=[n for n, _ in HF_NAMES])
def test_hf_names_give_transformers_lrs(tmp_path: Path, name: str, kwargs: dict[str, Any] | None) -> None:
    """``args.lr_scheduler_type`` and ``lr_scheduler_kwargs`` give the LRs of ``transformers.get_scheduler``."""
    max_steps = 8
    args = tiny_args(tmp_path, lr_scheduler_type=name, lr_scheduler_kwargs=kwargs or {}, warmup_steps=0.25)
    trainer = LrkitTrainer(model=tiny_model(), args=args, train_dataset=tiny_data())
    trainer.train()
    peaks = [args.learning_rate] * len(trainer.optimizer.param_groups)
    opt = toy_optimizer(peaks)
    reference = transformers.get_scheduler(
        name, opt, args.get_warmup_steps(max_steps), max_steps, scheduler_specific_kwargs=kwargs
    )
    assert logged_lrs(trainer) == lrs_by_hand(reference, opt, max_steps)
    assert trainer.lr_scheduler.steps == max_steps


def test_hf_spec_is_what_lrkit_get_scheduler_records() -> None:
    """The spec of a transformers name equals ``lrkit.get_scheduler(...).to_spec()`` and records only what
    transformers passes on (constant: nothing; inverse_sqrt: no length)."""
    import lrkit

    opt = toy_optimizer([1e-2])
    spec = hf_schedule_spec("cosine", 2, 10, {"num_cycles": 0.5})
    assert spec == lrkit.get_scheduler("cosine", opt, 2, 10, {"num_cycles": 0.5}).to_spec()
    assert hf_schedule_spec("cosine", 2, 10, {})["scheduler_specific_kwargs"] is None
    assert hf_schedule_spec("constant", 2, 10, {"x": 1}) == lrkit.get_scheduler("constant", opt).to_spec()
    assert hf_schedule_spec(transformers.SchedulerType.INVERSE_SQRT, 2, 10)["num_training_steps"] is None
    with pytest.raises(ScheduleError, match="lr_scheduler_type='reduce_lr_on_plateau'"):
        hf_schedule_spec("reduce_lr_on_plateau", 0, 10)


# ------------------------------------------------------------- 1. one step per update with accumulation


def test_one_step_per_update_with_gradient_accumulation(tmp_path: Path) -> None:
    """gradient_accumulation_steps=4: 24 micro-batches, 6 updates, 6 schedule steps; every group's logged LR
    equals the lrkit spec stepped by hand once per update (two groups with their own peaks)."""
    spec = {"type": "WarmupCosine", "warmup_steps": 2, "total_steps": 6, "min_lr": 1e-4}
    model = tiny_model()
    opt = torch.optim.AdamW(
        [
            {"params": model.hidden.parameters(), "lr": 1e-2},
            {"params": model.head.parameters(), "lr": 3e-3, "name": "head"},
        ]
    )
    args = tiny_args(tmp_path, gradient_accumulation_steps=4, max_steps=6)
    trainer = LrkitTrainer(model=model, args=args, train_dataset=tiny_data(), optimizers=(opt, None), lr_schedule=spec)
    trainer.train()

    assert model.calls == 24  # micro-batches
    assert trainer.state.global_step == 6
    assert [int(s["step"]) for s in opt.state.values()] == [6] * 4  # AdamW's own update count, per parameter
    assert trainer.lr_scheduler.steps == 6
    assert trainer.lr_scheduler.to_spec() == spec

    oracle_opt = toy_optimizer([1e-2, 3e-3])
    expected = lrs_by_hand(build_scheduler(spec, oracle_opt), oracle_opt, 6)
    assert logged_lrs(trainer) == expected
    logs = update_logs(trainer.state.log_history)
    assert group_lr_keys(opt) == ["learning_rate/group_0", "learning_rate/head"]
    assert [e["learning_rate"] for e in logs] == [lrs[0] for lrs in expected]  # the Trainer's own key: group 0
    assert expected[1][0] != expected[1][1]  # the groups differ, so a group-0-only log would fail above


# ------------------------------------------------------------------------------------- 2. DDP, 2 ranks


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_two_ranks_same_lr_one_step_per_update(tmp_path: Path) -> None:
    """torchrun --nproc-per-node 2 (gloo): both ranks log the same LRs (lr_check_ranks=True all-gathers them
    after every update), one schedule step per update, equal to transformers' scheduler by hand."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run(
        [*cmd, str(HERE / "hf_trainer_ddp.py"), str(tmp_path)], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    lrs = [[e["learning_rate/group_0"] for e in r["logs"]] for r in ranks]
    assert lrs[0] == lrs[1]
    for r in ranks:
        assert r["global_step"] == r["schedule_steps"] == 6
        assert r["forward_calls"] == 12  # 6 updates x 2 micro-batches on each rank
    opt = toy_optimizer([ranks[0]["peak"]])
    reference = transformers.get_scheduler("cosine", opt, 2, 6)
    assert [[x] for x in lrs[0]] == lrs_by_hand(reference, opt, 6)


# ---------------------------------------------------------------------------------- 3. a skipped update


class InfGradAt(TrainerCallback):
    """Makes update ``step`` (1-based) non-finite: an inf in one gradient, after clipping, before the step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step + 1 == self.step:
            kwargs["model"].head.bias.grad.fill_(float("inf"))


def test_fp16_on_cpu_has_no_grad_scaler(tmp_path: Path) -> None:
    """Why the skip test sets the scaler itself: with use_cpu=True, fp16=True builds no GradScaler in
    accelerate 1.15 (mixed precision says fp16, but nothing scales or skips)."""
    trainer = LrkitTrainer(model=tiny_model(), args=tiny_args(tmp_path, fp16=True), train_dataset=tiny_data())
    assert trainer.accelerator.mixed_precision == "fp16"
    assert trainer.accelerator.scaler is None and not trainer.accelerator.native_amp


@pytest.mark.parametrize("optim", ["adamw_torch_fused", "adamw_torch"])
def test_update_skipped_by_the_grad_scaler_does_not_step(tmp_path: Path, optim: str) -> None:
    """A torch.amp.GradScaler("cpu") in the Trainer's accelerator (its backward scales the loss, its optimizer
    wrapper steps through the scaler) and an inf gradient on update 3: the scaler skips it and the schedule
    does not step: 7 schedule steps for 8 updates, and the LR of update 3 is used again by update 4. With
    the fused AdamW (transformers' default) accelerate reports no skip, and the Trainer steps the schedule
    anyway; :class:`TrainerSchedule` sees the scaler back off and moves nothing."""
    spec = {"type": "WarmupCosine", "warmup_steps": 2, "total_steps": 8, "min_lr": 1e-4}
    args = tiny_args(tmp_path, max_steps=8, max_grad_norm=0.0, optim=optim)
    trainer = LrkitTrainer(
        model=tiny_model(), args=args, train_dataset=tiny_data(), lr_schedule=spec, callbacks=[InfGradAt(3)]
    )
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    trainer.accelerator.scaler = scaler  # fp16 on CPU has none (test above): the real scaler, set by hand
    trainer.train()

    assert scaler.get_scale() == 2.0**7  # one backoff: the scaler found the inf and skipped update 3
    assert [int(s["step"]) for s in trainer.optimizer.state.values()] == [7] * 4  # AdamW stepped 7 times
    assert trainer.optimizer.optimizer.defaults.get("fused") is (True if optim == "adamw_torch_fused" else None)
    assert trainer.state.global_step == 8
    assert trainer.lr_scheduler.steps == 7
    opt = toy_optimizer([args.learning_rate] * 2)
    schedule = lrs_by_hand(build_scheduler(spec, opt), opt, 8)
    assert logged_lrs(trainer) == schedule[:3] + schedule[2:7]


# --------------------------------------------------------------------- 4. interrupt and resume, exact


def test_interrupt_and_resume_is_bit_identical(tmp_path: Path) -> None:
    """8 updates straight vs. stopped after update 3 (checkpoint-3) and resumed from it in a new Trainer: the
    same per-group LRs and losses at every update and the same final parameters (==). scheduler.pt is the
    schedule's plain state, loadable with weights_only=True, and holds its spec."""
    args = {"gradient_accumulation_steps": 2, "max_steps": 8, "save_steps": 3}
    straight = LrkitTrainer(model=tiny_model(), args=tiny_args(tmp_path / "a", **args), train_dataset=tiny_data())
    straight.train()

    first = LrkitTrainer(
        model=tiny_model(), args=tiny_args(tmp_path / "b", **args), train_dataset=tiny_data(), callbacks=[StopAt(3)]
    )
    first.train()
    checkpoint = tmp_path / "b" / "checkpoint-3"
    state = torch.load(checkpoint / "scheduler.pt", weights_only=True)
    assert json.loads(json.dumps(state)) == state
    assert state["scheduler_spec"] == straight.lr_scheduler.to_spec() and state["scheduler_steps"] == 3

    resumed = LrkitTrainer(model=tiny_model(seed=1), args=tiny_args(tmp_path / "b", **args), train_dataset=tiny_data())
    resumed.train(resume_from_checkpoint=str(checkpoint))

    assert resumed.lr_scheduler.steps == straight.lr_scheduler.steps == 8
    assert logged_lrs(first) + logged_lrs(resumed, after=3) == logged_lrs(straight)
    losses = [[e["loss"] for e in update_logs(t.state.log_history)] for t in (first, resumed, straight)]
    assert losses[1][:3] == losses[0]  # the resumed log history starts with the checkpoint's
    assert losses[1] == losses[2]
    a, b = params(straight.model), params(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------- 5. resume with a changed schedule


@pytest.fixture(scope="module")
def checkpoint_4_of_10(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[float]]]:
    """A cosine run of 10 updates stopped after update 4: its checkpoint and its per-group LRs."""
    out = tmp_path_factory.mktemp("hf_resume")
    trainer = LrkitTrainer(
        model=tiny_model(), args=tiny_args(out, max_steps=10), train_dataset=tiny_data(), callbacks=[StopAt(4)]
    )
    trainer.train()
    return out / "checkpoint-4", logged_lrs(trainer)


def resume(tmp: Path, checkpoint: Path, policy: str, max_steps: int) -> LrkitTrainer:
    """A new Trainer that resumes ``checkpoint`` with ``max_steps`` under ``policy``."""
    trainer = LrkitTrainer(
        model=tiny_model(),
        args=tiny_args(tmp, max_steps=max_steps),
        train_dataset=tiny_data(),
        lr_resume_policy=policy,
    )
    trainer.train(resume_from_checkpoint=str(checkpoint))
    return trainer


def alone(policy: str, max_steps: int, groups: int) -> list[list[float]]:
    """The oracle: a TrainingSchedule of the 10-update cosine, stepped 4 times, its state loaded into one of
    ``max_steps`` under ``policy``, then stepped to the end: the LRs of updates 5..max_steps."""
    old_opt, new_opt = toy_optimizer([1e-2] * groups), toy_optimizer([1e-2] * groups)
    old = TrainingSchedule(hf_schedule_spec("cosine", 2, 10), old_opt)
    lrs_by_hand(old, old_opt, 4)
    new = TrainingSchedule(hf_schedule_spec("cosine", 2, max_steps), new_opt, resume_policy=policy)
    new.load_state_dict(json.loads(json.dumps(old.state_dict())))
    return lrs_by_hand(new, new_opt, max_steps - 4)


def test_resume_changed_schedule_strict_refuses_with_the_diff(
    tmp_path: Path, checkpoint_4_of_10: tuple[Path, list[list[float]]]
) -> None:
    """max_steps 10 -> 16 under the default policy: a ResumeError naming the change; no update runs."""
    checkpoint, _ = checkpoint_4_of_10
    trainer = LrkitTrainer(model=tiny_model(), args=tiny_args(tmp_path, max_steps=16), train_dataset=tiny_data())
    with pytest.raises(ResumeError, match=r"num_training_steps: 10 -> 16") as refused:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert "lr_resume_policy='checkpoint'" in str(refused.value)
    assert logged_lrs(trainer, after=4) == []


def test_resume_from_a_plain_trainer_checkpoint_is_refused(tmp_path: Path) -> None:
    """A checkpoint of the plain Trainer holds a LambdaLR state, no schedule: a ScheduleError that says so."""
    plain = Trainer(model=tiny_model(), args=tiny_args(tmp_path, max_steps=2, save_steps=2), train_dataset=tiny_data())
    plain.train()
    trainer = LrkitTrainer(model=tiny_model(), args=tiny_args(tmp_path, max_steps=4), train_dataset=tiny_data())
    with pytest.raises(ScheduleError, match=r"holds no TrainingSchedule state .*last_epoch"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


def test_resume_changed_schedule_checkpoint_keeps_it(
    tmp_path: Path, checkpoint_4_of_10: tuple[Path, list[list[float]]]
) -> None:
    """``checkpoint``: updates 5..16 follow the checkpoint's 10-update cosine (as transformers' function
    computes it past its end), and the schedule in force is the checkpoint's."""
    checkpoint, before = checkpoint_4_of_10
    trainer = resume(tmp_path, checkpoint, "checkpoint", 16)
    opt = toy_optimizer([1e-2] * len(before[0]))
    old = lrs_by_hand(transformers.get_scheduler("cosine", opt, 2, 10), opt, 16)
    assert before == old[:4]
    assert logged_lrs(trainer, after=4) == old[4:]
    assert trainer.lr_scheduler.to_spec() == hf_schedule_spec("cosine", 2, 10)
    assert any("num_training_steps" in note for note in trainer.lr_scheduler.resume_notes)


def test_resume_changed_schedule_override_jumps(
    tmp_path: Path, checkpoint_4_of_10: tuple[Path, list[list[float]]], caplog: pytest.LogCaptureFixture
) -> None:
    """``override``: updates 5..16 follow the 16-update cosine from its step 4, a jump the notes report (on the
    ``lrkit`` logger too)."""
    checkpoint, before = checkpoint_4_of_10
    with caplog.at_level(logging.WARNING, logger="lrkit"):
        trainer = resume(tmp_path, checkpoint, "override", 16)
    opt = toy_optimizer([1e-2] * len(before[0]))
    new = lrs_by_hand(transformers.get_scheduler("cosine", opt, 2, 16), opt, 16)
    assert logged_lrs(trainer, after=4) == new[4:]
    old_opt = toy_optimizer([1e-2] * len(before[0]))
    assert new[4] != lrs_by_hand(transformers.get_scheduler("cosine", old_opt, 2, 10), old_opt, 5)[4]  # a jump
    assert any("jump" in note for note in trainer.lr_scheduler.resume_notes)
    assert any("jump" in r.getMessage() for r in caplog.records if r.name == "lrkit")


def test_resume_changed_schedule_extend_is_continuous(
    tmp_path: Path, checkpoint_4_of_10: tuple[Path, list[list[float]]]
) -> None:
    """``extend``: update 5 uses the LR the 10-update run would have used, and updates 5..16 equal a
    TrainingSchedule resumed alone under ``extend``; the refitted schedule ends on its floor (0)."""
    checkpoint, before = checkpoint_4_of_10
    trainer = resume(tmp_path, checkpoint, "extend", 16)
    got = logged_lrs(trainer, after=4)
    assert got == alone("extend", 16, len(before[0]))
    opt = toy_optimizer([1e-2] * len(before[0]))
    old = lrs_by_hand(transformers.get_scheduler("cosine", opt, 2, 10), opt, 10)
    assert got[0] == old[4]  # continuous at the resume
    assert got[1] > old[5] and all(a >= b for a, b in zip(got, got[1:]))  # a longer, monotone decay
    assert trainer.lr_scheduler.get_last_lr() == [0.0] * len(before[0])


def test_resume_cooldown_decays_to_min_lr_over_n(
    tmp_path: Path, checkpoint_4_of_10: tuple[Path, list[list[float]]]
) -> None:
    """``cooldown:3`` (same max_steps): update 5 uses the LR in force, updates 5..10 equal a TrainingSchedule
    resumed alone under ``cooldown:3``, and from update 8 (3 steps after the resume) on the LR is 0."""
    checkpoint, before = checkpoint_4_of_10
    trainer = resume(tmp_path, checkpoint, "cooldown:3", 10)
    got = logged_lrs(trainer, after=4)
    assert got == alone("cooldown:3", 10, len(before[0]))
    opt = toy_optimizer([1e-2] * len(before[0]))
    old = lrs_by_hand(transformers.get_scheduler("cosine", opt, 2, 10), opt, 10)
    assert got[0] == old[4]
    assert got[1] != old[5] and got[1][0] > 0.0  # decaying, and not along the old cosine
    assert got[3:] == [[0.0] * len(before[0])] * 3


# ----------------------------------------------------------------------------------------- refusals


def test_refuses_a_scheduler_given_with_the_optimizer(tmp_path: Path) -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    with pytest.raises(ScheduleError, match=r"optimizers=\(optimizer, scheduler\) gave a LambdaLR"):
        LrkitTrainer(model=model, args=tiny_args(tmp_path), train_dataset=tiny_data(), optimizers=(opt, sched))


def test_refuses_a_bad_policy_and_a_metric_schedule(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match=r"lr_resume_policy: .*'cooldown'"):
        LrkitTrainer(model=tiny_model(), args=tiny_args(tmp_path), lr_resume_policy="cooldown")
    trainer = LrkitTrainer(
        model=tiny_model(),
        args=tiny_args(tmp_path, lr_scheduler_type="reduce_lr_on_plateau", eval_strategy="steps", eval_steps=2),
        train_dataset=tiny_data(),
        eval_dataset=tiny_data(8),
    )
    with pytest.raises(ScheduleError, match=r"lr_scheduler_type='reduce_lr_on_plateau'"):
        trainer.train()
