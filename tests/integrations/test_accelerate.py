"""lrkit inside accelerate (issue 14): the real ``accelerate launch`` on 2 CPU processes (gloo), a tiny model.

The oracle of every LR is the schedule's own: ``lrkit.build_scheduler(spec, optimizer)`` stepped by hand once
per successful update, or ``lrkit.TrainingSchedule`` alone for a resume policy; a resume is compared with the
straight run. accelerate's own path (the same lrkit scheduler given to ``accelerator.prepare``) runs beside it as
the negative control: on 2 processes without ``split_batches`` it steps twice per update.

``accelerate launch --cpu --num_processes 2`` starts one process in accelerate 1.15 (its ``simple_launcher``;
several CPU processes need mpirun), so the tests launch ``--multi_gpu --num_processes 2`` with
``ACCELERATE_USE_CPU=true``: torch.distributed.run starts 2 ranks and accelerate makes them MULTI_CPU with gloo.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

import lrkit
from lrkit.integrations.accelerate import AcceleratedSchedule, prepare_schedule
from lrkit.runtime import ResumeError, ScheduleError, TrainingSchedule
from tests.integrations.accelerate_train import run

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("accelerate_train.py")
DOC = ROOT / "docs" / "integrations" / "accelerate.md"
SPEC = {"type": "WarmupCosine", "warmup_steps": 3, "total_steps": 8, "min_lr": 1e-4}
PEAK = 1e-2  # the scripts' AdamW lr
UPDATES, GA, SAVE_AT = 6, 2, 3


def launch(script: Path, *args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``accelerate launch`` of ``script`` on 2 CPU processes (gloo)."""
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    return subprocess.run([*cmd, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def output_of(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout[-3000:] + proc.stderr[-5000:]


def oracle(spec: dict[str, Any], successful: list[bool], backend: str = "lrkit") -> list[list[float]]:
    """The LR after each update: ``lrkit.build_scheduler(spec, opt)`` stepped by hand on the successful ones."""
    opt = torch.optim.AdamW(torch.nn.Linear(4, 1).parameters(), lr=PEAK)
    scheduler = lrkit.build_scheduler(spec, opt, backend=backend)
    out = []
    for ok in successful:
        if ok:
            with warnings.catch_warnings():  # torch warns: no optimizer.step() before it, as intended here
                warnings.simplefilter("ignore")
                scheduler.step()
        out.append([group["lr"] for group in opt.param_groups])
    return out


def base_run(name: str, **over: Any) -> dict[str, Any]:
    """A run of accelerate_train.py: SPEC, 6 updates of 2 micro-batches, check_ranks, and ``over``."""
    config = {"name": name, "spec": SPEC, "updates": UPDATES, "ga": GA, "split_batches": False, "check_ranks": True}
    return {**config, **over}


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two launches on 2 processes (each launch costs seconds: the runs share them). The first: straight runs
    (split_batches False and True, a skipped update). The second: a resume from the checkpoint the first one
    saved after update 3, then the ```python blocks of docs/integrations/accelerate.md as one script (run as
    __main__, in a folder of its own). Each rank's record by run name, and the second launch."""
    tmp = tmp_path_factory.mktemp("accelerate")
    checkpoint = tmp / "checkpoint"
    straight = [
        base_run("plain", control=True, save_at=SAVE_AT, save_dir=str(checkpoint)),
        base_run("split", split_batches=True, control=True),
        base_run("skip", scaler=True, inf_at=3),
    ]
    (tmp / "launch0.json").write_text(json.dumps({"out": str(tmp), "runs": straight}))
    first = launch(SCRIPT, str(tmp / "launch0.json"), cwd=tmp)
    assert first.returncode == 0, output_of(first)

    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    (tmp / "docs").mkdir()
    (tmp / "docs" / "train.py").write_text("\n".join(blocks))
    resumed = [base_run("resumed", resume_from=str(checkpoint), start_at=SAVE_AT)]
    then = {"script": str(tmp / "docs" / "train.py"), "cwd": str(tmp / "docs")}
    (tmp / "launch1.json").write_text(json.dumps({"out": str(tmp), "runs": resumed, "then": then}))
    second = launch(SCRIPT, str(tmp / "launch1.json"), cwd=tmp)

    names = [r["name"] for r in straight + resumed]
    paths = {n: [tmp / f"{n}.rank{r}.json" for r in (0, 1)] for n in names}
    records = {n: [json.loads(p.read_text()) for p in ps] for n, ps in paths.items() if all(p.exists() for p in ps)}
    return {"records": records, "checkpoint": checkpoint, "second": second, "blocks": blocks}


def lrs(record: dict[str, Any]) -> list[list[float]]:
    return [u["lr"] for u in record["updates"]]


# --------------------------------------------------------------------------- 2 processes


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "split"])
def test_one_schedule_step_per_update_on_two_processes(launched: dict[str, Any], name: str) -> None:
    """gradient_accumulation_steps=2 on 2 processes, split_batches False and True: the schedule steps once per
    update (6 updates of 12 micro-batches each rank), its LRs are the pure schedule's, while accelerate's own
    AcceleratedScheduler steps the same lrkit scheduler twice per update unless split_batches."""
    record = launched["records"][name][0]
    assert record["num_processes"] == 2
    assert [u["steps"] for u in record["updates"]] == [1, 2, 3, 4, 5, 6]
    assert record["real_steps"] == UPDATES
    assert record["lr_start"] == oracle(SPEC, [False])[0]
    assert lrs(record) == oracle(SPEC, [True] * UPDATES)
    stepped_by_accelerate = oracle(SPEC, [True] * (2 * UPDATES))[1::2] if name == "plain" else lrs(record)
    assert record["control"] == stepped_by_accelerate
    if name == "plain":
        assert record["control"] != lrs(record)  # the problem the integration solves


@pytest.mark.distributed
@pytest.mark.slow
def test_same_lr_on_both_ranks(launched: dict[str, Any]) -> None:
    """check_ranks=True all-gathered the LRs after every update in every run (a difference raises); the
    records agree as well, update for update, and so do the parameters (DDP)."""
    for name, (rank0, rank1) in launched["records"].items():
        assert rank0["updates"] == rank1["updates"], name
        assert rank0["params"] == rank1["params"], name


@pytest.mark.distributed
@pytest.mark.slow
def test_a_skipped_update_does_not_step_the_schedule(launched: dict[str, Any]) -> None:
    """The accelerator's GradScaler (torch.amp.GradScaler("cpu"): accelerate makes none on CPU) skips update 3,
    whose gradient is inf on rank 0 only: DDP's all-reduce makes it inf on both ranks, accelerate reports
    optimizer_step_was_skipped on both, and the schedule stays put: 5 steps for 6 updates, the LRs of the pure
    schedule stepped on the 5 successful ones."""
    for record in launched["records"]["skip"]:
        skipped = [u["skipped"] for u in record["updates"]]
        assert skipped == [False, False, True, False, False, False]
        assert [u["steps"] for u in record["updates"]] == [1, 2, 2, 3, 4, 5]
        assert record["real_steps"] == 5
        assert lrs(record) == oracle(SPEC, [not s for s in skipped])


@pytest.mark.distributed
@pytest.mark.slow
def test_resume_in_a_new_launch_is_bit_identical(launched: dict[str, Any]) -> None:
    """save_state after update 3, a new launch load_state's it and trains on: the LR it starts with is the one
    in force at the checkpoint, and its LRs after updates 4-6 and its final parameters equal (==) the straight
    run's, on both ranks."""
    records = launched["records"]
    assert "resumed" in records, output_of(launched["second"])
    for straight, resumed in zip(records["plain"], records["resumed"]):
        assert resumed["steps_start"] == SAVE_AT
        assert resumed["lr_start"] == straight["updates"][SAVE_AT - 1]["lr"]
        assert resumed["updates"] == straight["updates"][SAVE_AT:]
        assert resumed["params"] == straight["params"]
        assert resumed["notes"] == []


@pytest.mark.distributed
@pytest.mark.slow
def test_saved_state_loads_with_weights_only(launched: dict[str, Any]) -> None:
    """accelerate loads registered objects with weights_only=False (checkpointing.py load_custom_state); the
    schedule's file loads with weights_only=True too, as plain data."""
    path = launched["checkpoint"] / "custom_checkpoint_0.pkl"
    state = torch.load(path, weights_only=True)
    assert state == json.loads(json.dumps(state))
    assert state["scheduler_steps"] == SAVE_AT and state["scheduler_spec"] == SPEC


@pytest.mark.distributed
@pytest.mark.slow
def test_the_docs_example_runs_on_two_processes(launched: dict[str, Any]) -> None:
    """The ```python blocks of docs/integrations/accelerate.md (the code the docs test runs in one process) ran
    as one script on the 2 processes of the second launch: it asserts its own LRs, and both ranks report the 4
    updates of 2 processes."""
    assert launched["blocks"]
    second = launched["second"]
    assert second.returncode == 0, output_of(second)
    output = second.stdout + second.stderr
    assert sorted(re.findall(r"rank (\d) of 2: 4 updates", output)) == ["0", "1"], output_of(second)


# --------------------------------------------------------------------------- one process, in this one


@pytest.fixture
def fresh_accelerate() -> Iterator[None]:
    """Each in-process run starts from accelerate's shared state as a new process would, and leaves none."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


POLICY_SAVE_AT = 4  # in the cosine decay: extend and cooldown have something to refit
LONGER = {**SPEC, "total_steps": 12}


@pytest.fixture(scope="module")
def policy_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One process, 12 updates of SPEC; save_state after update 4."""
    tmp = tmp_path_factory.mktemp("policies")
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    try:
        run(base_run("straight", updates=12, save_at=POLICY_SAVE_AT, save_dir=str(tmp / "checkpoint")), tmp)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    return {"dir": tmp, "straight": json.loads((tmp / "straight.rank0.json").read_text())}


def resume_with(policy_checkpoint: dict[str, Any], policy: str, spec: dict[str, Any]) -> dict[str, Any]:
    tmp = policy_checkpoint["dir"]
    name = policy.replace(":", "_")
    config = base_run(
        name, spec=spec, updates=12, policy=policy, resume_from=str(tmp / "checkpoint"), start_at=POLICY_SAVE_AT
    )
    run(config, tmp)
    return json.loads((tmp / f"{name}.rank0.json").read_text())


def alone(policy: str, spec: dict[str, Any], updates: int) -> list[list[float]]:
    """The oracle of a resume: TrainingSchedule alone, SPEC stepped to the checkpoint, then ``spec`` resumed
    under ``policy``; the LR now, then after each further update."""
    before = TrainingSchedule(SPEC, torch.optim.AdamW(torch.nn.Linear(4, 1).parameters(), lr=PEAK))
    for _ in range(POLICY_SAVE_AT):
        before.step()
    after = TrainingSchedule(spec, torch.optim.AdamW(torch.nn.Linear(4, 1).parameters(), lr=PEAK))
    after.load_state_dict(json.loads(json.dumps(before.state_dict())), policy)
    out = [after.get_last_lr()]
    for _ in range(updates):
        after.step()
        out.append(after.get_last_lr())
    return out


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_accelerate")
def test_resume_policies_in_load_state(policy_checkpoint: dict[str, Any]) -> None:
    """load_state with total_steps 8 -> 12 under each policy: strict refuses with the diff; checkpoint keeps the
    old schedule (the straight run's LRs); override starts the new one at step 4 (an LR jump, reported);
    extend is continuous and reaches min_lr at update 12; cooldown:3 is continuous and reaches min_lr at
    update 7. Every sequence equals TrainingSchedule alone under the same policy."""
    straight = policy_checkpoint["straight"]
    at_checkpoint = straight["updates"][POLICY_SAVE_AT - 1]["lr"]
    rest = 12 - POLICY_SAVE_AT

    with pytest.raises(ResumeError, match=r"total_steps: 8 -> 12"):
        resume_with(policy_checkpoint, "strict", LONGER)

    results = {p: resume_with(policy_checkpoint, p, LONGER) for p in ["checkpoint", "override", "extend", "cooldown:3"]}
    for policy, record in results.items():
        assert record["steps_start"] == POLICY_SAVE_AT
        assert [record["lr_start"], *lrs(record)] == alone(policy, LONGER, rest), policy

    assert lrs(results["checkpoint"]) == lrs(straight)[POLICY_SAVE_AT:]
    assert any("checkpoint" in note for note in results["checkpoint"]["notes"])

    jump = oracle(LONGER, [True] * POLICY_SAVE_AT)[-1]
    assert results["override"]["lr_start"] == jump != at_checkpoint
    assert any("jump" in note for note in results["override"]["notes"])

    for policy in ["extend", "cooldown:3"]:
        assert results[policy]["lr_start"] == at_checkpoint, policy
    assert lrs(results["extend"])[-1] == [SPEC["min_lr"]]
    assert lrs(results["extend"])[-2] != [SPEC["min_lr"]]
    assert lrs(results["cooldown:3"])[2:] == [[SPEC["min_lr"]]] * (rest - 2)
    assert lrs(results["cooldown:3"])[1] != [SPEC["min_lr"]]


def tiny(accelerator: Accelerator) -> tuple[Any, Any]:
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK)
    return accelerator.prepare(model, optimizer)


def one_update(accelerator: Accelerator, model: Any, optimizer: Any) -> None:
    accelerator.backward(model(torch.ones(2, 4)).pow(2).mean())
    optimizer.step()
    optimizer.zero_grad()


@pytest.mark.usefixtures("fresh_accelerate")
def test_torch_backend_state_round_trips_with_weights_only(tmp_path: Path) -> None:
    """backend="torch" (PyTorch's own classes): save_state writes plain data that weights_only loads, and
    load_state in a new run restores the LR (replayed)."""
    accelerator = Accelerator(cpu=True)
    model, optimizer = tiny(accelerator)
    schedule = prepare_schedule(accelerator, SPEC, optimizer, backend="torch")
    for _ in range(5):
        one_update(accelerator, model, optimizer)
    accelerator.save_state(str(tmp_path))
    state = torch.load(tmp_path / "custom_checkpoint_0.pkl", weights_only=True)
    assert state["scheduler_backend"] == "torch" and state["scheduler_steps"] == 5

    accelerator = Accelerator(cpu=True)
    model, optimizer = tiny(accelerator)
    resumed = prepare_schedule(accelerator, SPEC, optimizer, backend="torch")
    accelerator.load_state(str(tmp_path))
    assert resumed.last_epoch == 5
    assert resumed.get_last_lr() == schedule.get_last_lr() == oracle(SPEC, [True] * 5, backend="torch")[-1]


@pytest.mark.usefixtures("fresh_accelerate")
def test_an_lrkit_scheduler_not_yet_stepped_is_taken_by_its_spec() -> None:
    """``lrkit.get_scheduler(...)`` built on the optimizer, given instead of a spec: its first LR is undone and
    the schedule is its spec's, stepped by the optimizer (transformers' names)."""
    accelerator = Accelerator(cpu=True)
    model, optimizer = tiny(accelerator)
    hf = lrkit.get_scheduler("cosine", optimizer.optimizer, num_warmup_steps=2, num_training_steps=10)
    schedule = prepare_schedule(accelerator, hf, optimizer)
    for _ in range(3):
        one_update(accelerator, model, optimizer)
    assert schedule.to_spec() == hf.to_spec()
    assert schedule.get_last_lr() == oracle(hf.to_spec(), [True] * 3)[-1]


@pytest.mark.usefixtures("fresh_accelerate")
def test_a_metric_schedule_steps_on_step_metric_after_real_updates_only(tmp_path: Path) -> None:
    """ReduceLROnPlateau follows the loss: the hook only marks the update; step(metric=) applies it once, and
    does nothing after a gradient-accumulation micro-step. The LRs equal lrkit's ReduceLROnPlateau stepped by
    hand with the same losses."""
    spec = {"type": "ReduceLROnPlateau", "patience": 0, "factor": 0.5}
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model, optimizer = tiny(accelerator)
    schedule = prepare_schedule(accelerator, spec, optimizer)
    ref_opt = torch.optim.AdamW(torch.nn.Linear(4, 1).parameters(), lr=PEAK)
    reference = lrkit.build_scheduler(spec, ref_opt)
    losses = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 0.5, 0.5]
    stepped = []
    for loss in losses:
        with accelerator.accumulate(model):
            one_update(accelerator, model, optimizer)
            stepped.append(schedule.step(metric=loss))
        if accelerator.sync_gradients:
            reference.step(loss)
            assert schedule.get_last_lr() == [g["lr"] for g in ref_opt.param_groups]
    assert stepped == [False, True] * 4
    assert schedule.last_epoch == 4 and schedule.get_last_lr() == [PEAK / 4]

    one_update(accelerator, model, optimizer)  # an update whose metric never came
    with pytest.raises(ScheduleError, match="step\\(metric=<loss>\\)"):
        accelerator.save_state(str(tmp_path))


@pytest.mark.usefixtures("fresh_accelerate")
def test_refusals_name_the_argument() -> None:
    """A scheduler of the optimizer already given to accelerator.prepare (it would step too, twice per update
    on 2 processes), a stepped scheduler, options given twice and a non-optimizer are refused."""
    accelerator = Accelerator(cpu=True)
    model, optimizer = tiny(accelerator)
    with pytest.raises(ScheduleError, match="optimizer must be a torch.optim.Optimizer"):
        prepare_schedule(accelerator, SPEC, model)
    stepped = lrkit.build_scheduler(SPEC, optimizer.optimizer)
    stepped.step()
    with pytest.raises(ScheduleError, match=r"already stepped \(last_epoch=1\)"):
        prepare_schedule(accelerator, stepped, optimizer)
    own = TrainingSchedule(SPEC, optimizer.optimizer)
    with pytest.raises(ScheduleError, match="got resume_policy as well"):
        prepare_schedule(accelerator, own, optimizer, resume_policy="extend")
    accelerator.prepare(lrkit.build_scheduler(SPEC, optimizer.optimizer))
    with pytest.raises(ScheduleError, match="already wraps a scheduler of this optimizer"):
        prepare_schedule(accelerator, SPEC, optimizer)
    assert accelerator._custom_objects == []


@pytest.mark.usefixtures("fresh_accelerate")
def test_prepare_hands_it_back_and_remove_unbinds() -> None:
    """accelerator.prepare(schedule) returns it unwrapped (no AcceleratedScheduler, no second save); after
    remove() the optimizer's steps no longer step it."""
    accelerator = Accelerator(cpu=True)
    model, optimizer = tiny(accelerator)
    schedule = prepare_schedule(accelerator, SPEC, optimizer)
    assert isinstance(schedule, AcceleratedSchedule)
    assert accelerator.prepare(schedule) is schedule and accelerator._schedulers == []
    assert accelerator._custom_objects == [schedule]
    one_update(accelerator, model, optimizer)
    schedule.remove()
    one_update(accelerator, model, optimizer)
    assert schedule.last_epoch == 1
