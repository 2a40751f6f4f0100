"""lrkit inside Hugging Face ``accelerate``: one schedule step per real optimizer update, saved by ``save_state``.

``accelerator.prepare(scheduler)`` wraps a scheduler in accelerate's ``AcceleratedScheduler``, which steps it
``num_processes`` times per update unless ``split_batches=True`` (it assumes the schedule was written in
per-process batches). An lrkit schedule is written in optimizer updates, so on two processes its warmup would
end twice as early. :func:`prepare_schedule` does not give the schedule to ``prepare``; it binds lrkit's
:class:`~lrkit.runtime.TrainingSchedule` to the *inner* torch optimizer's step post-hook instead:

* accelerate calls the inner ``optimizer.step()`` once per update, on the micro-step where
  ``accelerator.sync_gradients`` is true; the other gradient-accumulation micro-steps never call it;
* when the fp16 ``GradScaler`` finds inf/NaN gradients, ``scaler.step`` does not call it either
  (``accelerator.optimizer_step_was_skipped`` is then true);

so the schedule advances exactly once per update that happened, whatever ``num_processes``, ``split_batches``
and ``gradient_accumulation_steps`` are, and on every rank alike. The schedule is registered with
``accelerator.register_for_checkpointing``: ``save_state`` writes its state (plain data, which
``torch.load(weights_only=True)`` reads) and ``load_state`` restores it after the optimizer, then applies the
resume policy when the run now asks for another schedule.

A loop written for accelerate's own scheduler keeps working: :meth:`AcceleratedSchedule.step` is a no-op for a
schedule stepped by the hook, so ``lr_scheduler.step()`` after ``optimizer.step()`` does not step it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.scheduler import AcceleratedScheduler

from lrkit.runtime import ScheduleError, TrainingSchedule
from lrkit.runtime.resume import Policy
from lrkit.schedulers.base import set_group_value
from lrkit.spec import Backend

__all__ = ["AcceleratedSchedule", "prepare_schedule"]


class AcceleratedSchedule:
    """An lrkit :class:`~lrkit.runtime.TrainingSchedule` that steps after every real update of an accelerate run.

    Built by :func:`prepare_schedule`. It has the surface accelerate and a torch loop expect of a scheduler
    (``step``, ``get_last_lr``, ``last_epoch``, ``state_dict``, ``load_state_dict``) and, through
    ``accelerator.register_for_checkpointing``, is saved and restored by ``save_state`` / ``load_state``.

    A schedule on the optimizer-step clock steps from the inner optimizer's step post-hook, so :meth:`step`
    is a no-op. A schedule that follows a metric (``ReduceLROnPlateau``, ``GreedyLR``) cannot: the hook only
    records that an update happened, and ``step(metric=loss)`` applies it (and does nothing after a
    gradient-accumulation micro-step or a skipped update).

    Attributes:
        schedule: the :class:`~lrkit.runtime.TrainingSchedule` (spec in force, clocks, resume policy).
        optimizer: the inner torch optimizer whose ``step()`` steps the schedule.
    """

    def __init__(self, schedule: TrainingSchedule, optimizer: torch.optim.Optimizer) -> None:
        self.schedule = schedule
        self.optimizer = optimizer
        self._pending = 0
        if schedule.follows_a_metric:
            self._handle = optimizer.register_step_post_hook(self._update_done)
        else:
            self._handle = schedule.bind(optimizer)

    def _update_done(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """Step post-hook of a schedule that follows a metric: remember the update until ``step(metric=...)``."""
        if self._pending:
            raise ScheduleError(
                f"{self.schedule.spec.get('type')} follows a metric: call step(metric=<loss>) after each "
                f"optimizer update; update {self.schedule.steps + 1} is still waiting for its metric"
            )
        self._pending = 1

    def step(self, metric: float | None = None) -> bool:
        """Apply the update the optimizer made since the last call; returns whether the schedule advanced.

        Args:
            metric: the value a schedule that follows a metric steps on (e.g. the loss); needed by such a
                schedule after each update, ignored by the others.

        On the optimizer-step clock this does nothing and returns False: the optimizer's step already stepped
        the schedule (so a loop written for accelerate's scheduler, ``optimizer.step(); lr_scheduler.step()``,
        steps it once). A schedule that follows a metric steps here, once, if an update happened since the
        last call (not after a gradient-accumulation micro-step, nor after an update the GradScaler skipped).
        """
        if not self._pending:
            return False
        self._pending = 0
        return self.schedule.step(metric=metric)

    def get_last_lr(self) -> list[float]:
        """Each param group's LR now: the LR of the next update."""
        return self.schedule.get_last_lr()

    @property
    def last_epoch(self) -> int:
        """Updates that happened so far (torch's name)."""
        return self.schedule.last_epoch

    @property
    def steps(self) -> int:
        """Updates that happened so far."""
        return self.schedule.steps

    @property
    def resume_notes(self) -> list[str]:
        """The notes of the last resume (ignored changes, the LR jump of ``override``, refits)."""
        return self.schedule.resume_notes

    def to_spec(self) -> dict[str, Any]:
        """The spec of the schedule in force."""
        return self.schedule.to_spec()

    def check_same_lr(self) -> None:
        """Raise :class:`~lrkit.runtime.ScheduleError` unless every rank holds the same LRs (a collective)."""
        self.schedule.check_same_lr()

    def state_dict(self) -> dict[str, Any]:
        """The schedule's state, plain data (``accelerator.save_state`` writes it with ``torch.save``)."""
        if self._pending:
            raise ScheduleError(
                f"{self.schedule.spec.get('type')} follows a metric and the last optimizer update has not been "
                "applied yet: call step(metric=<loss>) before accelerator.save_state()"
            )
        return self.schedule.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> list[str]:
        """Restore :meth:`state_dict` (``accelerator.load_state`` calls it after the optimizer's) and apply the
        resume policy of :func:`prepare_schedule`. Returns the notes (also in :attr:`resume_notes` and logged at
        WARNING on the ``lrkit`` logger); a refused change raises :class:`~lrkit.runtime.ResumeError`, listing
        the differences, and leaves the schedule as it was."""
        notes = self.schedule.load_state_dict(state)
        self._pending = 0
        if self.schedule.check_ranks:
            self.schedule.check_same_lr()
        return notes

    def remove(self) -> None:
        """Unbind from the optimizer: its steps no longer step the schedule."""
        self._handle.remove()


def prepare_schedule(
    accelerator: Accelerator,
    schedule: Mapping[str, Any] | TrainingSchedule | Any,
    optimizer: Any,
    *,
    resume_policy: str | Policy | None = None,
    check_ranks: bool | None = None,
    backend: Backend = "lrkit",
    tokens_per_step: int | None = None,
    sequence_length: int | None = None,
) -> AcceleratedSchedule:
    """Put an lrkit schedule in an accelerate run: one step per real update, saved and resumed with the run.

    Call it after ``accelerator.prepare(model, optimizer, ...)`` (before works too: the hook is on the inner
    torch optimizer, which ``prepare`` keeps), instead of giving a scheduler to ``prepare`` (given the returned
    object, ``prepare`` hands it back unchanged). From then on every real update steps the schedule once (the
    inner optimizer's step post-hook), and ``accelerator.save_state()`` / ``load_state()`` carry its state.
    Create the objects of a resumed run in the same order as the saved run's: accelerate matches registered
    objects by position.

    Args:
        accelerator: the run's ``Accelerator``.
        schedule: an lrkit spec (``{"type": "WarmupCosine", ...}``), a :class:`~lrkit.runtime.TrainingSchedule`
            built on ``optimizer``, or an lrkit scheduler not yet stepped (its ``to_spec()`` is used, e.g.
            ``lrkit.get_scheduler(...)`` or ``lrkit.build_scheduler(...)``).
        optimizer: the optimizer ``accelerator.prepare`` returned (or the torch optimizer inside it).
        resume_policy: what ``load_state`` does when the checkpoint's schedule differs from this one:
            ``"strict"`` (default: refuse with the diff), ``"checkpoint"``, ``"override"``, ``"extend"``,
            ``"cooldown:N[:SHAPE]"``.
        check_ranks: after every update (and resume), check that every rank holds the same LRs (one small
            all-gather).
        backend: ``"lrkit"`` or ``"torch"`` (PyTorch's own scheduler classes from the same spec).
        tokens_per_step: tokens of one update over all ranks (a schedule in tokens needs it).
        sequence_length: tokens of one sample (a schedule in samples needs it).

    Returns:
        The :class:`AcceleratedSchedule`, registered for checkpointing.

    Raises:
        ScheduleError: the optimizer is no torch optimizer; a scheduler of this optimizer was already given to
            ``accelerator.prepare`` (it would step as well, ``num_processes`` times per update); a stepped
            scheduler, or a ``TrainingSchedule`` of another optimizer or with options given twice.
    """
    inner = optimizer.optimizer if isinstance(optimizer, AcceleratedOptimizer) else optimizer
    if not isinstance(inner, torch.optim.Optimizer):
        raise ScheduleError(
            f"prepare_schedule: optimizer must be a torch.optim.Optimizer or the AcceleratedOptimizer that "
            f"accelerator.prepare returned, got {type(optimizer).__name__}"
        )
    for prepared in accelerator._schedulers:
        wrapped = prepared.scheduler if isinstance(prepared, AcceleratedScheduler) else prepared
        if getattr(wrapped, "optimizer", None) in (inner, optimizer):
            raise ScheduleError(
                f"prepare_schedule: accelerator.prepare() already wraps a scheduler of this optimizer "
                f"({type(wrapped).__name__}); accelerate steps it num_processes times per update unless "
                "split_batches=True, so the LR would move twice: give prepare_schedule its spec instead of "
                "preparing it"
            )
    if isinstance(schedule, TrainingSchedule):
        if schedule.optimizer not in (inner, optimizer):
            raise ScheduleError("prepare_schedule: schedule is a TrainingSchedule of another optimizer than optimizer")
        given = {
            "resume_policy": resume_policy,
            "check_ranks": check_ranks,
            "tokens_per_step": tokens_per_step,
            "sequence_length": sequence_length,
        }
        twice = [name for name, value in given.items() if value is not None]
        if twice or backend != "lrkit":
            raise ScheduleError(
                f"prepare_schedule: schedule is a TrainingSchedule, which carries its own options; got "
                f"{', '.join([*twice, *(['backend'] if backend != 'lrkit' else [])])} as well: give them to "
                "the TrainingSchedule, or give prepare_schedule a spec"
            )
        training = schedule
    else:
        spec = _spec_of(schedule, inner)
        training = TrainingSchedule(
            spec,
            inner,
            backend=backend,
            tokens_per_step=tokens_per_step,
            sequence_length=sequence_length,
            resume_policy="strict" if resume_policy is None else resume_policy,
            check_ranks=bool(check_ranks),
        )
    prepared_schedule = AcceleratedSchedule(training, inner)
    accelerator.register_for_checkpointing(prepared_schedule)
    return prepared_schedule


def _spec_of(schedule: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The spec of ``schedule`` (a spec, or an lrkit scheduler not yet stepped, whose LRs go back to the peaks)."""
    if isinstance(schedule, Mapping):
        return dict(schedule)
    to_spec = getattr(schedule, "to_spec", None)
    if to_spec is None:
        raise ScheduleError(
            f"prepare_schedule: schedule must be an lrkit spec (a dict with 'type'), a TrainingSchedule or an "
            f"lrkit scheduler (with to_spec()), got {type(schedule).__name__}"
        )
    stepped = int(getattr(schedule, "last_epoch", 0))
    if stepped > 0:
        raise ScheduleError(
            f"prepare_schedule: the {type(schedule).__name__} given as schedule was already stepped "
            f"(last_epoch={stepped}); give a new one or its spec (schedule.to_spec())"
        )
    for group in optimizer.param_groups:  # the scheduler set its first LR: start again from the peak
        if "initial_lr" in group:
            set_group_value(group, "lr", float(group["initial_lr"]))
    return dict(to_spec())
