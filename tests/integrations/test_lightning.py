"""lrkit inside Lightning: :class:`lrkit.integrations.lightning.LrkitSchedule` on the real ``pl.Trainer``.

Every run is a real ``pl.Trainer.fit`` of a tiny module on CPU over in-memory data. The oracles: a recorder
that notes the LRs of every real ``optimizer.step()`` (torch's step *pre*-hook: a skipped fp16 update and an
accumulation micro-batch never call it), the pure schedule (``lrkit.build_scheduler`` stepped by hand), a
``TrainingSchedule`` alone, and an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.precision import MixedPrecision

import lrkit
from lrkit.integrations.lightning import LrkitSchedule
from lrkit.runtime import ResumeError, ScheduleError, TrainingSchedule

ROOT = Path(__file__).resolve().parents[2]
PEAK, MIN_LR = 1e-2, 1e-4
#: 8 batches of 2 per epoch.
SAMPLES, BATCH = 16, 2
COSINE = {"type": "WarmupCosine", "warmup_steps": 2, "total_steps": 8, "min_lr": MIN_LR}
HF_COSINE = {
    "type": "HFSchedule",
    "name": "cosine",
    "num_warmup_steps": 2,
    "num_training_steps": 8,
    "scheduler_specific_kwargs": None,
}
#: Each spec's length key (what ``extend`` may change).
LENGTH = {"WarmupCosine": "total_steps", "HFSchedule": "num_training_steps"}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


class Tiny(pl.LightningModule):
    """A two-layer regression net; ``groups``: "one" (one unnamed group), "named" (body, head) or "unnamed"
    (two groups without names), the head's peak a tenth of the body's. ``inf_at``: the backward calls
    (1-based micro-batches) whose head gradient becomes inf, before the GradScaler unscales it."""

    def __init__(
        self, groups: str = "one", inf_at: tuple[int, ...] = (), seed: int = 0, lightning_scheduler: Any = None
    ):
        super().__init__()
        torch.manual_seed(seed)
        self.body = torch.nn.Linear(4, 8)
        self.head = torch.nn.Linear(8, 1)
        self.groups = groups
        self.inf_at = set(inf_at)
        self.backwards = 0
        self.lightning_scheduler = lightning_scheduler

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.head(torch.tanh(self.body(x))).float(), y)

    def on_after_backward(self) -> None:
        self.backwards += 1
        if self.backwards in self.inf_at:
            assert self.head.weight.grad is not None
            self.head.weight.grad.fill_(float("inf"))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(param_groups(self, self.groups), weight_decay=0.0)
        if self.lightning_scheduler is None:
            return optimizer
        spec, backend = self.lightning_scheduler, "lrkit"
        if isinstance(spec, tuple):
            spec, backend = spec
        scheduler = lrkit.build_scheduler(spec, optimizer, backend=backend)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def param_groups(model: torch.nn.Module, groups: str) -> list[dict[str, Any]]:
    """The param groups of ``model`` (``body`` and ``head`` attributes) for ``groups`` (see :class:`Tiny`)."""
    body, head = list(model.body.parameters()), list(model.head.parameters())
    if groups == "one":
        return [{"params": body + head, "lr": PEAK}]
    named = [{"params": body, "lr": PEAK, "name": "body"}, {"params": head, "lr": PEAK / 10, "name": "head"}]
    return named if groups == "named" else [{k: v for k, v in g.items() if k != "name"} for g in named]


class Recorder(pl.Callback):
    """The LRs of every real ``optimizer.step()``, from torch's step pre-hook (lrkit's own hook is a post-hook)."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.lrs: list[list[float]] = []
        self._handle: Any = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[self.index]
        self._handle = optimizer.register_step_pre_hook(
            lambda opt, *_: self.lrs.append([float(g["lr"]) for g in opt.param_groups])
        )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._handle.remove()


def data(samples: int = SAMPLES) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(samples, 4, generator=generator)
    y = torch.randn(samples, 1, generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)


def trainer(tmp_path: Path, callbacks: list[pl.Callback], **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": tmp_path,
        "accumulate_grad_batches": 2,
    }
    return pl.Trainer(callbacks=callbacks, **{**options, **kwargs})


def pure(spec: Mapping[str, Any], updates: int, groups: str = "one", backend: str = "lrkit") -> list[list[float]]:
    """The LR of each of ``updates`` updates under the pure schedule: ``lrkit.build_scheduler`` stepped by hand
    (``backend="torch"``: PyTorch's own class)."""
    optimizer = torch.optim.AdamW(param_groups(Tiny(groups), groups))
    scheduler = lrkit.build_scheduler(dict(spec), optimizer, backend=backend)  # type: ignore[arg-type]
    out = []
    for _ in range(updates):
        out.append([float(g["lr"]) for g in optimizer.param_groups])
        scheduler.step()
    return out


def alone(first: Mapping[str, Any], then: Mapping[str, Any], policy: str, before: int, after: int) -> list[list[float]]:
    """A TrainingSchedule alone (no Lightning): ``before`` updates of ``first``, its state, a resume with ``then``
    under ``policy``; the LRs of the ``after`` updates after the resume."""
    model = Tiny()
    optimizer = torch.optim.AdamW(param_groups(model, "one"))
    schedule = TrainingSchedule(dict(first), optimizer)
    for _ in range(before):
        schedule.step()
    state = json.loads(json.dumps(schedule.state_dict()))
    optimizer2 = torch.optim.AdamW(param_groups(model, "one"))
    optimizer2.load_state_dict(optimizer.state_dict())
    resumed = TrainingSchedule(dict(then), optimizer2, resume_policy=policy)
    resumed.load_state_dict(state)
    out = []
    for _ in range(after):
        out.append(resumed.get_last_lr())
        resumed.step()
    return out


def same(a: torch.nn.Module, b: torch.nn.Module) -> list[bool]:
    """Whether each parameter of ``a`` equals ``b``'s, bit for bit."""
    return [torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True)]


# ---------------------------------------------------------------------- 1. one step per update


@pytest.mark.parametrize(("samples", "accumulate"), [(16, 2), (10, 2), (16, 1)])
def test_one_schedule_step_per_optimizer_update(tmp_path: Path, samples: int, accumulate: int) -> None:
    """With ``accumulate_grad_batches`` the schedule steps once per optimizer update, not per micro-batch;
    Lightning also steps on an epoch's last batch (5 batches, accumulating 2: 3 updates an epoch)."""
    epochs = 2
    updates = epochs * math.ceil(samples // BATCH / accumulate)
    spec = {**COSINE, "total_steps": updates}
    record, cb = Recorder(), LrkitSchedule(spec)
    fit = trainer(tmp_path, [cb, record], max_epochs=epochs, accumulate_grad_batches=accumulate)
    fit.fit(Tiny(), data(samples))
    assert cb.schedule is not None
    assert len(record.lrs) == updates == fit.global_step
    assert cb.schedule.steps == cb.schedule.last_epoch == updates
    assert record.lrs == pure(spec, updates)
    assert cb.schedule.get_last_lr() == [MIN_LR]


class TwoOptimizers(pl.LightningModule):
    """Manual optimization: the body's optimizer steps every batch, the head's every 2nd batch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Linear(4, 8)
        self.head = torch.nn.Linear(8, 1)
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> None:
        body, head = self.optimizers()
        x, y = batch
        self.manual_backward(torch.nn.functional.mse_loss(self.head(torch.tanh(self.body(x))), y))
        body.step()
        body.zero_grad()
        if batch_idx % 2 == 1:
            head.step()
            head.zero_grad()

    def configure_optimizers(self) -> Any:
        return [torch.optim.SGD(self.body.parameters(), lr=0.5), torch.optim.AdamW(self.head.parameters(), lr=PEAK)]


def test_manual_optimization_schedules_the_chosen_optimizer(tmp_path: Path) -> None:
    """``optimizer_index=1`` under manual optimization: the head's optimizer, stepped by the module itself every
    2nd batch, gets the schedule, once per its own step; the body's optimizer keeps its LR."""
    cb, body, head = LrkitSchedule(COSINE, optimizer_index=1), Recorder(0), Recorder(1)
    fit = trainer(tmp_path, [cb, body, head], max_epochs=2, accumulate_grad_batches=1)
    fit.fit(TwoOptimizers(), data())
    assert body.lrs == [[0.5]] * 16
    assert cb.schedule is not None and cb.schedule.optimizer is fit.optimizers[1] and cb.schedule.steps == 8
    assert head.lrs == pure(COSINE, 8)


def test_a_second_fit_of_the_same_trainer_continues_the_schedule(tmp_path: Path) -> None:
    """Lightning keeps ``global_step`` across two ``fit`` calls of one Trainer (and builds a new optimizer):
    the schedule goes on where the first fit left it."""
    cb, record = LrkitSchedule(COSINE), Recorder()
    fit = trainer(tmp_path, [cb, record], max_epochs=1)
    module = Tiny()
    fit.fit(module, data())
    fit.fit_loop.max_epochs = 2
    fit.fit(module, data())
    assert cb.schedule is not None and cb.schedule.steps == fit.global_step == 8
    assert record.lrs == pure(COSINE, 8)


# ---------------------------------------------------------------------- 3. a skipped fp16 update


def amp() -> MixedPrecision:
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=256.0))


def test_an_update_the_grad_scaler_skipped_does_not_step_the_schedule(tmp_path: Path) -> None:
    """An inf gradient on the 2nd update (backward 4, accumulating 2) under Lightning's ``MixedPrecision`` with
    a CPU ``GradScaler``: the scaler skips ``optimizer.step`` and halves its scale; the schedule stays put.
    Lightning's ``global_step`` counts the skipped update all the same."""
    boundaries = 2 * SAMPLES // BATCH // 2
    record, cb = Recorder(), LrkitSchedule(COSINE)
    precision = amp()
    fit = trainer(tmp_path, [cb, record], max_epochs=2, plugins=[precision])
    fit.fit(Tiny(inf_at=(4,)), data())
    assert precision.scaler is not None and precision.scaler.get_scale() == 128.0  # exactly one skip
    assert cb.schedule is not None
    assert len(record.lrs) == boundaries - 1 == cb.schedule.steps
    assert fit.global_step == boundaries
    assert record.lrs == pure(COSINE, boundaries - 1)


def test_lightning_own_scheduler_steps_on_a_skipped_update(tmp_path: Path) -> None:
    """The negative control: the same run with the schedule returned from ``configure_optimizers`` (Lightning
    owns it) advances on the skipped update, so it runs one update ahead of the optimizer."""
    boundaries = 2 * SAMPLES // BATCH // 2
    record = Recorder()
    fit = trainer(tmp_path, [record], max_epochs=2, plugins=[amp()])
    fit.fit(Tiny(inf_at=(4,), lightning_scheduler=COSINE), data())
    assert len(record.lrs) == boundaries - 1
    assert fit.lr_scheduler_configs[0].scheduler.last_epoch == boundaries
    assert record.lrs != pure(COSINE, boundaries - 1)


# ---------------------------------------------------------------------- 4. interrupt and resume


def test_interrupt_and_resume_is_bit_identical(tmp_path: Path) -> None:
    """4 epochs straight vs. 2 epochs, ``trainer.save_checkpoint``, and ``fit(ckpt_path=...)`` to 4 epochs in a
    new Trainer, callback and module (another init): the LR of every update and the final parameters are
    equal; the checkpoint's callback state is plain data."""
    spec = {**COSINE, "total_steps": 16}
    straight, record = Tiny(), Recorder()
    trainer(tmp_path / "a", [LrkitSchedule(spec), record], max_epochs=4).fit(straight, data())
    assert record.lrs == pure(spec, 16)

    first, record1 = Tiny(), Recorder()
    run1 = trainer(tmp_path / "b", [LrkitSchedule(spec), record1], max_epochs=2)
    run1.fit(first, data())
    ckpt = tmp_path / "half.ckpt"
    run1.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)
    state = saved["callbacks"][LrkitSchedule(spec).state_key]
    assert json.loads(json.dumps(state)) == state and state["schedule"]["scheduler_steps"] == 8

    second, record2, cb = Tiny(seed=7), Recorder(), LrkitSchedule(spec)
    assert same(second, first) == [False] * 4
    trainer(tmp_path / "c", [cb, record2], max_epochs=4).fit(second, data(), ckpt_path=ckpt, weights_only=True)
    assert record1.lrs + record2.lrs == record.lrs
    assert len(record2.lrs) == 8 and cb.resume_notes == []
    assert same(second, straight) == [True] * 4


def test_a_mid_epoch_model_checkpoint_resumes_the_lr_exactly(tmp_path: Path) -> None:
    """``ModelCheckpoint(every_n_train_steps=3)`` saves inside the fit, after update 3 (batch 6 of 8). Resumed
    from it, the LRs of updates 4..8 equal the uninterrupted run's. (The parameters do not: a plain DataLoader
    is not resumable, so Lightning restarts its epoch's data; it warns so.)"""
    straight = Recorder()
    trainer(tmp_path / "a", [LrkitSchedule(COSINE), straight], max_epochs=2).fit(Tiny(), data())
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    run1 = trainer(tmp_path / "b", [LrkitSchedule(COSINE), saver], max_epochs=2, enable_checkpointing=True)
    run1.fit(Tiny(), data())
    record, cb = Recorder(), LrkitSchedule(COSINE)
    run2 = trainer(tmp_path / "c", [cb, record], max_epochs=2)
    run2.fit(Tiny(), data(), ckpt_path=tmp_path / "ckpt" / "epoch=0-step=3.ckpt")
    assert record.lrs == straight.lrs[3:] and len(record.lrs) == 5
    assert cb.schedule is not None and cb.schedule.steps == run2.global_step == 8


def test_resume_after_a_skipped_update_is_bit_identical(tmp_path: Path) -> None:
    """The skip in the first half: the resumed run continues from 7 schedule steps (not Lightning's 8 steps),
    and equals the uninterrupted run with the same skip, LRs and parameters."""
    straight, record = Tiny(inf_at=(4,)), Recorder()
    trainer(tmp_path / "a", [LrkitSchedule(COSINE), record], max_epochs=2, plugins=[amp()]).fit(straight, data())

    first, record1, cb1 = Tiny(inf_at=(4,)), Recorder(), LrkitSchedule(COSINE)
    run1 = trainer(tmp_path / "b", [cb1, record1], max_epochs=1, plugins=[amp()])
    run1.fit(first, data())
    assert cb1.schedule is not None and cb1.schedule.steps == 3 and run1.global_step == 4
    run1.save_checkpoint(tmp_path / "half.ckpt")
    second, record2 = Tiny(seed=7), Recorder()
    run2 = trainer(tmp_path / "c", [LrkitSchedule(COSINE), record2], max_epochs=2, plugins=[amp()])
    run2.fit(second, data(), ckpt_path=tmp_path / "half.ckpt")
    assert record1.lrs + record2.lrs == record.lrs == pure(COSINE, 7)
    assert same(second, straight) == [True] * 4


# ---------------------------------------------------------------------- 5. resume with a changed schedule


@pytest.fixture(scope="module", params=[COSINE, HF_COSINE], ids=lambda s: s["type"])
def halfway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, list]:
    """One epoch (4 updates) of an 8-update schedule, saved: the spec, the checkpoint, the LRs of its updates."""
    spec = dict(request.param)
    tmp = tmp_path_factory.mktemp("halfway")
    record = Recorder()
    run = trainer(tmp, [LrkitSchedule(spec), record], max_epochs=1)
    run.fit(Tiny(), data())
    run.save_checkpoint(tmp / "half.ckpt")
    return spec, tmp / "half.ckpt", record.lrs


def resume(tmp_path: Path, ckpt: Path, spec: Mapping[str, Any], policy: str) -> tuple[LrkitSchedule, list]:
    """``fit(ckpt_path=ckpt)`` one more epoch (4 updates) with ``spec`` under ``policy``."""
    cb, record = LrkitSchedule(spec, resume_policy=policy), Recorder()
    trainer(tmp_path, [cb, record], max_epochs=2).fit(Tiny(seed=3), data(), ckpt_path=ckpt)
    return cb, record.lrs


def test_strict_refuses_a_changed_schedule_with_the_diff(tmp_path: Path, halfway: tuple) -> None:
    """The default policy: ``fit`` stops before any update with the diff, the checkpoint's path and how to pass
    another policy; the callback still holds the checkpoint's state, unchanged."""
    spec, ckpt, _ = halfway
    key = LENGTH[spec["type"]]
    cb, record = LrkitSchedule({**spec, key: 16}), Recorder()
    with pytest.raises(ResumeError) as refused:
        trainer(tmp_path, [cb, record], max_epochs=2).fit(Tiny(), data(), ckpt_path=ckpt)
    message = str(refused.value)
    assert f"  {key}: 8 -> 16\n" in message and str(ckpt) in message and "resume_policy=" in message
    assert record.lrs == []
    assert cb.state_dict() == torch.load(ckpt, weights_only=True)["callbacks"][cb.state_key]


def test_lightning_own_torch_scheduler_drops_a_changed_schedule_on_resume(tmp_path: Path) -> None:
    """The negative control: with torch's ``CosineAnnealingLR`` returned from ``configure_optimizers``,
    ``fit(ckpt_path=...)`` loads the checkpoint's scheduler state over the ``T_max=16`` schedule asked for; the
    old ``T_max=8`` runs on, without an error or a note."""
    old = {"type": "CosineAnnealingLR", "T_max": 8, "eta_min": MIN_LR}
    new = {**old, "T_max": 16}
    run = trainer(tmp_path, [], max_epochs=1)
    run.fit(Tiny(lightning_scheduler=(old, "torch")), data())
    run.save_checkpoint(tmp_path / "half.ckpt")
    record = Recorder()
    resumed = trainer(tmp_path, [record], max_epochs=2)
    resumed.fit(Tiny(lightning_scheduler=(new, "torch")), data(), ckpt_path=tmp_path / "half.ckpt")
    assert type(resumed.lr_scheduler_configs[0].scheduler) is torch.optim.lr_scheduler.CosineAnnealingLR
    assert record.lrs == pure(old, 8, backend="torch")[4:] != pure(new, 8, backend="torch")[4:]


def test_lightning_own_lrkit_scheduler_refuses_a_changed_schedule_on_resume(tmp_path: Path) -> None:
    """The same with lrkit's ``WarmupCosine`` in ``configure_optimizers``: its ``load_state_dict`` refuses the
    checkpoint's state of another schedule (no silent drop), but offers no resume policy on this path."""
    run = trainer(tmp_path, [], max_epochs=1)
    run.fit(Tiny(lightning_scheduler=COSINE), data())
    run.save_checkpoint(tmp_path / "half.ckpt")
    resumed = trainer(tmp_path, [], max_epochs=2)
    with pytest.raises(lrkit.StateError, match="total_steps: 8 -> 16"):
        resumed.fit(Tiny(lightning_scheduler={**COSINE, "total_steps": 16}), data(), ckpt_path=tmp_path / "half.ckpt")


@pytest.mark.parametrize("policy", ["checkpoint", "override", "extend", "cooldown:2"])
def test_resume_policy_with_a_longer_schedule(
    tmp_path: Path, halfway: tuple, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each policy resumes the 8-update run with a 16-update spec and gives the LRs of a TrainingSchedule alone
    resumed the same way; what each means, against the pure schedules."""
    spec, ckpt, lrs_before = halfway
    longer = {**spec, LENGTH[spec["type"]]: 16}
    with caplog.at_level(logging.WARNING, logger="lrkit"):
        cb, lrs = resume(tmp_path, ckpt, longer, policy)
    assert cb.schedule is not None
    assert lrs == alone(spec, longer, policy, 4, 4)
    assert lrs_before == pure(spec, 4)
    in_force = pure(spec, 5)[4]  # the LR the 5th update had under the checkpoint's schedule
    if policy == "checkpoint":
        assert lrs == pure(spec, 8)[4:] and cb.schedule.to_spec() == spec
    elif policy == "override":
        assert lrs == pure(longer, 8)[4:] and lrs[0] != in_force
        assert any("jump" in note for note in cb.resume_notes)
    elif policy == "extend":
        assert lrs[0] == in_force  # continuous
        assert lrs[1:] != pure(spec, 8)[5:] and lrs[1:] != pure(longer, 8)[5:]  # the rest refitted
    else:
        floor = [MIN_LR] if spec["type"] == "WarmupCosine" else [0.0]
        assert lrs[0] == in_force and lrs[2:] == [floor, floor]
    assert cb.resume_notes and all(note in caplog.text for note in cb.resume_notes)


# ---------------------------------------------------------------------- 6. LearningRateMonitor


@pytest.mark.parametrize(
    ("groups", "names"),
    [
        ("named", ["lr-AdamW/body", "lr-AdamW/head"]),
        ("unnamed", ["lr-AdamW/pg1", "lr-AdamW/pg2"]),
        ("one", ["lr-AdamW"]),
    ],
)
def test_learning_rate_monitor_logs_each_group(tmp_path: Path, groups: str, names: list[str]) -> None:
    """With no Lightning scheduler, ``LearningRateMonitor`` logs every group of the optimizer by its "name" (or
    pg<i>) before each batch: at logged step s, the LR of update s+1 of the pure schedule, for each group."""
    logger = CSVLogger(tmp_path, name="run", version=0)
    fit = trainer(
        tmp_path,
        [LrkitSchedule(COSINE), LearningRateMonitor(logging_interval="step")],
        max_epochs=2,
        logger=logger,
        log_every_n_steps=1,
    )
    fit.fit(Tiny(groups), data())
    rows = (tmp_path / "run" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert sorted(h for h in header if h.startswith("lr-")) == names
    logged: dict[int, list[float]] = {}
    for row in rows[1:]:
        cells = dict(zip(header, row.split(",")))
        value = [float(cells[name]) for name in names]
        assert logged.setdefault(int(cells["step"]), value) == value  # micro-batches of one update agree
    assert sorted(logged) == list(range(8))
    assert [logged[s] for s in range(8)] == pure(COSINE, 8, groups)


# ---------------------------------------------------------------------- refusals


def test_a_lightning_scheduler_on_the_same_optimizer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="configure_optimizers returned an lr_scheduler"):
        trainer(tmp_path, [LrkitSchedule(COSINE)], max_epochs=1).fit(Tiny(lightning_scheduler=COSINE), data())


def test_resuming_a_checkpoint_without_lrkit_state_is_refused(tmp_path: Path) -> None:
    run = trainer(tmp_path, [], max_epochs=1)
    run.fit(Tiny(), data())
    run.save_checkpoint(tmp_path / "plain.ckpt")
    with pytest.raises(ScheduleError, match="holds no LrkitSchedule"):
        trainer(tmp_path, [LrkitSchedule(COSINE)], max_epochs=2).fit(Tiny(), data(), ckpt_path=tmp_path / "plain.ckpt")


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ScheduleError, match="resume_policy='sometimes'"):
        LrkitSchedule(COSINE, resume_policy="sometimes")
    with pytest.raises(ScheduleError, match="spec=.*'type' key"):
        LrkitSchedule({"warmup_steps": 2})
    with pytest.raises(ScheduleError, match="must hold 'schedule'.*got \\['scheduler_steps'\\]"):
        LrkitSchedule(COSINE).load_state_dict({"scheduler_steps": 3})


def test_a_metric_schedule_is_refused_at_fit_start(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="follows a metric"):
        trainer(tmp_path, [LrkitSchedule({"type": "ReduceLROnPlateau"})], max_epochs=1).fit(Tiny(), data())


# ---------------------------------------------------------------------- 2. DDP


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_two_ranks_hold_the_same_lr(tmp_path: Path) -> None:
    """``strategy="ddp"``, 2 CPU ranks on gloo (Lightning launches the second rank): each rank's LRs per update
    equal the other's and the pure schedule's; ``check_ranks=True`` checked them after every update, and a
    rank moved off the schedule is caught (the negative control, see lightning_ddp.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_PORT", None)
    script = ROOT / "tests" / "integrations" / "lightning_ddp.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    spec = ranks[0]["spec"]
    assert ranks[0]["lrs"] == ranks[1]["lrs"] == pure(spec, ranks[0]["updates"])
    assert [r["updates"] for r in ranks] == [4, 4] and [r["steps"] for r in ranks] == [4, 4]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all("rank 1: [" in r["mismatch"] for r in ranks)
