"""lrkit's guarantees in a plain PyTorch loop: TrainingSchedule bound to the optimizer (issue 14).

One schedule step per successful update (accumulation micro-steps and GradScaler skips move nothing, fused
optimizers included), a bit-identical resume, the resume policies, and the same LR on every rank. The
oracle is the scheduler built from the same spec and stepped by hand once per real update.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lrkit
from lrkit.runtime import ResumeError, ScheduleError, TrainingSchedule

SPEC = {"type": "WarmupCosine", "warmup_steps": 3, "total_steps": 12, "min_lr": 1e-4}
LONGER = {**SPEC, "total_steps": 20}


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _optimizer(model: torch.nn.Module, fused: bool = False) -> torch.optim.Optimizer:
    head, body = list(model[2].parameters()), list(model[0].parameters())
    groups = [{"params": body, "lr": 1e-2}, {"params": head, "lr": 3e-3, "name": "head"}]
    return torch.optim.AdamW(groups, fused=fused) if fused else torch.optim.AdamW(groups)


def _oracle_lrs(spec: dict[str, Any], updates: int) -> list[list[float]]:
    """Each update's LRs from the scheduler of ``spec`` stepped by hand: what the bound schedule must give."""
    optimizer = _optimizer(_model())
    scheduler = lrkit.build_scheduler(spec, optimizer)
    lrs = [scheduler.get_last_lr()]
    for _ in range(updates):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return lrs


def _train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    updates: range,
    accumulation: int = 2,
    inf_at: int | None = None,
    seed: int = 1,
) -> list[list[float]]:
    """``updates`` updates of ``accumulation`` micro-batches each; update ``inf_at`` gets an inf gradient.
    Returns the LRs in force after each update (the data depends only on the update's index)."""
    seen = []
    for update in updates:
        generator = torch.Generator().manual_seed(seed * 1000 + update)
        for _ in range(accumulation):
            x, y = torch.randn(8, 4, generator=generator), torch.randn(8, 1, generator=generator)
            scaler.scale(torch.nn.functional.mse_loss(model(x), y) / accumulation).backward()
        if update == inf_at:
            next(model.parameters()).grad.fill_(float("inf"))  # type: ignore[union-attr]
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        seen.append([float(g["lr"]) for g in optimizer.param_groups])
    return seen


def _real_updates(optimizer: torch.optim.Optimizer) -> int:
    return int(next(iter(optimizer.state.values()))["step"])


def test_bound_schedule_steps_once_per_update_with_gradient_accumulation() -> None:
    model = _model()
    optimizer = _optimizer(model)
    schedule = TrainingSchedule(SPEC, optimizer)
    schedule.bind()
    seen = _train(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), range(8), accumulation=4)
    assert schedule.steps == _real_updates(optimizer) == 8
    assert seen == _oracle_lrs(SPEC, 8)[1:]


@pytest.mark.parametrize("fused", [False, True], ids=["for-loop", "fused"])
def test_an_update_the_grad_scaler_skipped_does_not_step(fused: bool) -> None:
    """The scaler skips update 3 (inf gradient): unfused, it never calls optimizer.step(); fused, it calls it
    with found_inf set and the kernel skips. Either way 7 real updates, 7 schedule steps."""
    model = _model()
    optimizer = _optimizer(model, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    schedule = TrainingSchedule(SPEC, optimizer)
    schedule.bind()
    seen = _train(model, optimizer, scaler, range(8), inf_at=3)
    assert scaler.get_scale() == 128.0  # the skip happened
    assert schedule.steps == _real_updates(optimizer) == 7
    oracle = _oracle_lrs(SPEC, 7)
    assert seen == oracle[1:4] + [oracle[3]] + oracle[4:]  # update 3 moved nothing


def test_step_with_scaler_steps_unless_the_update_was_skipped() -> None:
    model = _model()
    optimizer = _optimizer(model)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    schedule = TrainingSchedule(SPEC, optimizer)
    advanced = []
    for update in range(5):
        x = torch.randn(8, 4)
        scaler.scale(model(x).pow(2).mean()).backward()
        if update == 2:
            next(model.parameters()).grad.fill_(float("nan"))  # type: ignore[union-attr]
        advanced.append(schedule.step_with_scaler(scaler, optimizer))
        optimizer.zero_grad()
    assert advanced == [True, True, False, True, True]
    assert schedule.steps == _real_updates(optimizer) == 4


def test_interrupt_and_resume_is_bit_identical(tmp_path) -> None:
    """8 updates straight, against 4, a checkpoint (torch.save, loaded weights_only) and 4 more in new objects:
    the same LRs and the same parameters, bit for bit."""
    model = _model()
    optimizer = _optimizer(model)
    TrainingSchedule(SPEC, optimizer).bind()
    straight = _train(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), range(8))

    first_model = _model()
    first_opt = _optimizer(first_model)
    first = TrainingSchedule(SPEC, first_opt)
    first.bind()
    before = _train(first_model, first_opt, torch.amp.GradScaler("cpu", enabled=False), range(4))
    torch.save(
        {"model": first_model.state_dict(), "optimizer": first_opt.state_dict(), "schedule": first.state_dict()},
        tmp_path / "ckpt.pt",
    )
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    resumed_model = _model(seed=7)  # another init: everything must come from the checkpoint
    resumed_model.load_state_dict(checkpoint["model"])
    resumed_opt = _optimizer(resumed_model)
    resumed = TrainingSchedule(SPEC, resumed_opt)
    resumed.bind()
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    assert resumed.load_state_dict(checkpoint["schedule"]) == []
    after = _train(resumed_model, resumed_opt, torch.amp.GradScaler("cpu", enabled=False), range(4, 8))
    assert before + after == straight
    for mine, theirs in zip(resumed_model.parameters(), model.parameters()):
        assert torch.equal(mine, theirs)


def _checkpoint_at(updates: int) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
    model = _model()
    optimizer = _optimizer(model)
    schedule = TrainingSchedule(SPEC, optimizer)
    schedule.bind()
    _train(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), range(updates))
    return optimizer.state_dict(), schedule.state_dict(), schedule.get_last_lr()


def test_a_changed_schedule_is_refused_with_the_diff_and_extend_is_continuous() -> None:
    optimizer_state, state, lrs_at_checkpoint = _checkpoint_at(6)
    refused_opt = _optimizer(_model())
    refused = TrainingSchedule(LONGER, refused_opt)
    refused_opt.load_state_dict(optimizer_state)
    with pytest.raises(ResumeError, match=r"total_steps: 12 -> 20[\s\S]*resume_policy='checkpoint'"):
        refused.load_state_dict(state)
    assert refused.steps == 0 and refused.to_spec() == LONGER  # a refused resume changes nothing

    model = _model()
    optimizer = _optimizer(model)
    extended = TrainingSchedule(LONGER, optimizer, resume_policy="extend")
    extended.bind()
    optimizer.load_state_dict(optimizer_state)
    extended.load_state_dict(state)
    assert extended.get_last_lr() == lrs_at_checkpoint  # continuous
    seen = _train(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), range(6, 20))
    assert seen[-1] == [1e-4, 1e-4]  # the floor, at the new end
    assert all(a[0] >= b[0] for a, b in zip([lrs_at_checkpoint, *seen], seen))  # still decaying, no jump up


def test_a_plain_scheduler_checkpoint_resumes_under_a_policy() -> None:
    """A state saved by a plain lrkit scheduler (it carries its spec) resumes into a TrainingSchedule: the
    scheduler alone can only keep or refuse it; the component puts the longer schedule in force."""
    optimizer = _optimizer(_model())
    scheduler = lrkit.build_scheduler(SPEC, optimizer)
    for _ in range(6):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    with pytest.raises(lrkit.StateError, match="total_steps: 12 -> 20"):
        lrkit.build_scheduler(LONGER, _optimizer(_model())).load_state_dict(state)
    resumed_opt = _optimizer(_model())
    resumed_opt.load_state_dict(optimizer.state_dict())
    resumed = TrainingSchedule(LONGER, resumed_opt, resume_policy="extend")
    notes = resumed.load_state_dict(state)
    assert resumed.steps == 6 and resumed.get_last_lr() == scheduler.get_last_lr()
    assert "refitted" in notes[0] and "resume_policy='extend'" in notes[0]


def test_a_schedule_that_follows_a_metric_cannot_be_bound() -> None:
    schedule = TrainingSchedule({"type": "ReduceLROnPlateau", "patience": 1}, _optimizer(_model()))
    with pytest.raises(ScheduleError, match=r"follows a metric.*step\(metric="):
        schedule.bind()


def _rank(rank: int, init_file: str, results: Any, skew: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same model on both ranks, as DDP broadcasts it
        model = _model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = _optimizer(model)
        if skew and rank == 1:
            optimizer.param_groups[1]["lr"] *= 2  # a rank built with another peak: the check must name it
        schedule = TrainingSchedule(SPEC, optimizer, check_ranks=True)
        schedule.bind()
        lrs, error = [], None
        try:
            for update in range(6):
                generator = torch.Generator().manual_seed(100 * rank + update)  # each rank its own data shard
                for _ in range(2):
                    x, y = torch.randn(4, 4, generator=generator), torch.randn(4, 1, generator=generator)
                    (torch.nn.functional.mse_loss(ddp(x), y) / 2).backward()
                optimizer.step()
                optimizer.zero_grad()
                lrs.append(schedule.get_last_lr())
        except ScheduleError as err:
            error = str(err)
        results[rank] = (lrs, schedule.steps, error, [p.detach().clone() for p in model.parameters()])
        dist.barrier()  # leave together: gloo aborts a rank torn down while its peer is still in a collective
    finally:
        dist.destroy_process_group()


def _two_ranks(skew: bool) -> dict[int, Any]:
    with tempfile.TemporaryDirectory() as tmp, mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(os.path.join(tmp, "rdzv"), results, skew), nprocs=2, join=True)
        return dict(results)


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_on_two_ranks_holds_the_same_lr_and_one_step_per_update() -> None:
    results = _two_ranks(skew=False)
    (lrs0, steps0, error0, params0), (lrs1, steps1, error1, params1) = results[0], results[1]
    assert error0 is None and error1 is None
    assert steps0 == steps1 == 6
    assert lrs0 == lrs1 == _oracle_lrs(SPEC, 6)[1:]
    assert all(torch.equal(a, b) for a, b in zip(params0, params1))


@pytest.mark.distributed
@pytest.mark.slow
def test_check_ranks_names_the_ranks_that_differ() -> None:
    """Negative control: a rank holding another LR is caught at the first update, on every rank."""
    results = _two_ranks(skew=True)
    for rank in (0, 1):
        lrs, steps, error, _ = results[rank]
        assert steps == 1 and lrs == []
        assert error is not None and "after update 1" in error and "rank 1:" in error
