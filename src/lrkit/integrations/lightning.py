"""lrkit's schedule inside Lightning: the :class:`LrkitSchedule` callback (``pip install lrkit[lightning]``).

Lightning's own scheduler path (``configure_optimizers`` returning an ``lr_scheduler``) steps the scheduler
from the training loop at every gradient-accumulation boundary, whether or not the optimizer stepped: an
update that the fp16 ``GradScaler`` skipped (inf/NaN gradients; ``MixedPrecision.optimizer_step`` then never
calls ``optimizer.step``) still advances the schedule. On ``fit(ckpt_path=...)`` it loads the checkpoint's
scheduler state over the one ``configure_optimizers`` built: a changed torch scheduler is ignored silently,
and an lrkit scheduler refuses the state of another schedule, with no resume policy to apply on that path.

:class:`LrkitSchedule` owns the schedule instead, as a :class:`lrkit.runtime.TrainingSchedule`:

* **when it steps:** once after every real ``optimizer.step()`` (torch's step post-hook,
  :meth:`~lrkit.runtime.TrainingSchedule.bind`), so gradient-accumulation micro-batches and skipped fp16
  updates never move it, in automatic and in manual optimization alike;
* **its state:** the callback's ``state_dict`` in Lightning's checkpoints (plain data, loadable with
  ``torch.load(weights_only=True)``);
* **a resume:** on ``trainer.fit(ckpt_path=...)`` it restores the checkpoint's schedule after Lightning has
  restored the optimizer, and applies ``resume_policy`` if this run asks for another schedule;
* **the logged LR:** it changes the param groups' ``lr`` in place and configures no Lightning scheduler, so
  ``LearningRateMonitor`` logs every group of the optimizer, named ``lr-<Optimizer>/<group "name">``
  (``lr-<Optimizer>/pg<i>`` for unnamed groups, ``lr-<Optimizer>`` for a single unnamed group).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.core.optimizer import LightningOptimizer

from lrkit.runtime import ScheduleError, TrainingSchedule
from lrkit.runtime.resume import Policy, parse_policy
from lrkit.spec import Backend

__all__ = ["LrkitSchedule"]

#: The key of the TrainingSchedule state inside the callback's state.
STATE_KEY = "schedule"


class LrkitSchedule(pl.Callback):
    """A Lightning callback that schedules the LR of one optimizer with lrkit, once per successful update.

    Args:
        spec: the schedule (an lrkit spec, e.g. ``{"type": "WarmupCosine", "warmup_steps": 100,
            "total_steps": 1000, "min_lr": 1e-5}`` or ``lrkit.get_scheduler(...).to_spec()``). The optimizer's
            param-group LRs are its peaks.
        resume_policy: what ``trainer.fit(ckpt_path=...)`` does when the checkpoint's schedule differs from
            ``spec``: ``"strict"`` (refuse with a :class:`~lrkit.runtime.ResumeError` that lists the diff),
            ``"checkpoint"``, ``"override"``, ``"extend"`` or ``"cooldown:N[:SHAPE]"``
            (:mod:`lrkit.runtime.resume`).
        tokens_per_step: tokens of one optimizer update, for a schedule on the token or sample clock.
        sequence_length: tokens of one sample (the sample clock).
        check_ranks: under ``torch.distributed`` (DDP), check after every update that every rank holds the
            same LRs (one small all-gather per update).
        optimizer_index: which of ``trainer.optimizers`` to schedule (manual optimization may have several).
        backend: ``"lrkit"`` or ``"torch"`` (PyTorch's classes built from the same spec).

    Attributes:
        schedule: the :class:`~lrkit.runtime.TrainingSchedule` of the current (or last) fit, built at fit
            start; None before.

    Raises:
        ScheduleError: at construction, for an unknown ``resume_policy``; at fit start, when
            ``configure_optimizers`` also returned a Lightning scheduler for the same optimizer (it would step
            the LR a second time), when the spec follows a metric, or when a checkpoint of a run that had no
            ``LrkitSchedule`` is resumed.
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        resume_policy: str | Policy = "strict",
        tokens_per_step: int | None = None,
        sequence_length: int | None = None,
        check_ranks: bool = False,
        optimizer_index: int = 0,
        backend: Backend = "lrkit",
    ) -> None:
        if not isinstance(spec, Mapping) or "type" not in spec:
            raise ScheduleError(
                f"LrkitSchedule(spec=...) needs an lrkit spec, a mapping with a 'type' key, got {spec!r}"
            )
        if isinstance(resume_policy, str):
            try:
                resume_policy = parse_policy(resume_policy)
            except ValueError as err:
                raise ScheduleError(f"LrkitSchedule(resume_policy={resume_policy!r}): {err}") from err
        if not isinstance(optimizer_index, int) or optimizer_index < 0:
            raise ScheduleError(f"LrkitSchedule(optimizer_index=...) must be an int >= 0, got {optimizer_index!r}")
        self.spec = dict(spec)
        self.resume_policy: Policy = resume_policy
        self.tokens_per_step = tokens_per_step
        self.sequence_length = sequence_length
        self.check_ranks = check_ranks
        self.optimizer_index = optimizer_index
        self.backend: Backend = backend
        self.schedule: TrainingSchedule | None = None
        self._pending: Mapping[str, Any] | None = None
        self._handle: Any = None

    @property
    def state_key(self) -> str:
        """Where the checkpoint keeps this callback's state: one key per scheduled optimizer."""
        return self._generate_state_key(optimizer_index=self.optimizer_index)

    @property
    def resume_notes(self) -> list[str]:
        """The notes of the last resume (ignored changes, refits, the LR jump of ``override``); also logged at
        WARNING on the ``lrkit`` logger."""
        return list(self.schedule.resume_notes) if self.schedule is not None else []

    # ------------------------------------------------------------------ fit

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Build the schedule on the optimizer that ``configure_optimizers`` returned.

        Lightning restores the optimizer's state only after this hook, so the checkpoint's schedule is
        restored (and the resume policy applied) in :meth:`on_train_start`, torch's order: optimizer first.
        Another ``fit`` of the same Trainer (its ``global_step`` goes on) continues the schedule of the last.
        """
        self._unbind()
        if self._pending is None and self.schedule is not None and trainer.global_step > 0:
            self._pending = self.schedule.state_dict()
        optimizer = self._optimizer(trainer)
        for config in trainer.lr_scheduler_configs:
            if config.scheduler.optimizer is optimizer:
                raise ScheduleError(
                    f"configure_optimizers returned an lr_scheduler ({type(config.scheduler).__name__}) for the "
                    f"optimizer that LrkitSchedule schedules (trainer.optimizers[{self.optimizer_index}]): Lightning "
                    "would step the LR a second time, also on updates the GradScaler skipped. Return only the "
                    "optimizer"
                )
        self.schedule = TrainingSchedule(
            self.spec,
            optimizer,
            backend=self.backend,
            tokens_per_step=self.tokens_per_step,
            sequence_length=self.sequence_length,
            resume_policy=self.resume_policy,
            check_ranks=self.check_ranks,
        )
        if self.schedule.follows_a_metric:
            raise ScheduleError(
                f"LrkitSchedule(spec={{'type': {self.spec['type']!r}, ...}}) follows a metric and cannot step from "
                "the optimizer's hook; use Lightning's own ReduceLROnPlateau support, or call "
                "TrainingSchedule.step(metric=...) yourself"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Restore a checkpoint's schedule (applying the resume policy), then step it after every real
        ``optimizer.step()``: the first hook after Lightning restored the optimizer and before any update."""
        schedule = self._built()
        if self._pending is not None:
            where = f"the checkpoint {trainer.ckpt_path}" if trainer.ckpt_path else "the previous fit"
            schedule.load_state_dict(self._pending, where=where)  # a refusal says resume_policy='...' to pass
            self._pending = None
        elif trainer.global_step > 0 and schedule.steps == 0:
            raise ScheduleError(
                f"resuming at trainer.global_step {trainer.global_step} from a checkpoint that holds no "
                f"{self.state_key} state: the run that saved it did not schedule with LrkitSchedule, so the "
                "schedule would restart at step 0. Start a new fit (no ckpt_path), or resume with the callbacks "
                "of that run"
            )
        self._handle = schedule.bind(schedule.optimizer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Unbind from the optimizer (the schedule keeps its state for ``trainer.save_checkpoint``)."""
        self._unbind()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Unbind from the optimizer when the fit fails."""
        self._unbind()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """``{"schedule": TrainingSchedule.state_dict()}``: plain data; empty before the first fit."""
        if self._pending is not None:  # loaded but not applied yet: keep it as it was
            return {STATE_KEY: dict(self._pending)}
        if self.schedule is None:
            return {}
        return {STATE_KEY: self.schedule.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's state until :meth:`on_train_start` applies it (Lightning calls this before it
        restores the optimizer)."""
        state = state_dict.get(STATE_KEY) if isinstance(state_dict, Mapping) else None
        if not isinstance(state, Mapping):
            shown = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
            raise ScheduleError(
                f"the checkpoint's {self.state_key} state must hold {STATE_KEY!r} (a TrainingSchedule state), "
                f"got {shown}"
            )
        self._pending = state

    # ------------------------------------------------------------------ helpers

    def _optimizer(self, trainer: pl.Trainer) -> Any:
        optimizers = trainer.optimizers
        if self.optimizer_index >= len(optimizers):
            raise ScheduleError(
                f"LrkitSchedule(optimizer_index={self.optimizer_index}) but configure_optimizers returned "
                f"{len(optimizers)} optimizer(s)"
            )
        optimizer = optimizers[self.optimizer_index]
        return optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer

    def _built(self) -> TrainingSchedule:
        if self.schedule is None:
            raise ScheduleError("LrkitSchedule: no schedule yet; it is built in on_fit_start (trainer.fit)")
        return self.schedule

    def _unbind(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
