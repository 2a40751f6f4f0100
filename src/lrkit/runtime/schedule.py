"""The schedule side of a training loop, as one component: :class:`TrainingSchedule`.

A training loop (lrkit's trainer, a plain loop, a framework's) calls it once per optimizer update
and saves it with its checkpoints; it keeps the guarantees that make a schedule trustworthy:

* **It steps only on an update that happened.** ``step(skipped=True)`` (the fp16 GradScaler skipped
  an overflowed update) changes nothing: not the LR, not the clocks, not the hyperparameter schedules.
  Gradient-accumulation micro-steps are not updates: call it once per ``optimizer.step()``.
* **Time in tokens.** It counts the tokens and samples of the successful updates; a schedule on the
  token (sample) clock (a ``Clocked`` spec) advances by the update's tokens (samples), so a resume with
  another batch size stays continuous in tokens.
* **The other hyperparameters keep in step.** The :class:`~lrkit.schedulers.hparams.HyperparamScheduler`
  objects given to it step with the LR, once per successful update.
* **It carries its spec and its state.** :meth:`state_dict` is plain data: the spec in force, the spec
  the run asked for, the resume policy that changed it, the update count, the clocks, the tokens per
  update, the scheduler's own state (lrkit backend) and the hyperparameter schedules' states.
* **A batch-size ramp keeps in step.** Given a :class:`~lrkit.schedules.batch.BatchRamp`, it says the
  global batch of the next update (:meth:`batch_sequences`, a function of the token clock) and multiplies every
  group's LR by the ramp's scaling factor ``(B / start) ** p`` (:meth:`lr_factor`); the scheduler itself keeps
  computing the unscaled LR, so a chainable torch scheduler never compounds the factor.
* **It applies the resume policy.** :meth:`load_state_dict` restores the checkpoint's schedule, then
  applies ``strict|checkpoint|override|extend|cooldown:N`` (:mod:`lrkit.runtime.resume`) when the run
  now asks for another one. Every policy but ``override`` keeps the first LR after the resume equal to
  the one in force at the checkpoint; ``override`` reports the jump.

Protocol (torch's): build the optimizer and this component, ``optimizer.load_state_dict(...)``, then
``schedule.load_state_dict(...)``. Three ways to step it once per successful update::

    schedule = TrainingSchedule(spec, optimizer, tokens_per_step=1024, sequence_length=128)
    schedule.bind()                               # 1. every real optimizer.step() steps it (a post-hook)
    schedule.step_with_scaler(scaler, optimizer)  # 2. or: scaler.step + scaler.update, then step unless skipped
    schedule.step(skipped=...)                    # 3. or: say yourself whether the update happened

A framework that owns the scheduler (the HF Trainer, accelerate, Lightning) sees the torch scheduler surface:
``step()``, ``get_last_lr()``, ``last_epoch``, ``state_dict()`` and ``load_state_dict(state)``, which applies the
``resume_policy`` given to the constructor (:mod:`lrkit.integrations` holds the adapters).

With ``backend="torch"`` the scheduler is PyTorch's own class built from the same spec (the oracle); its
state is not plain data, so a resume replays its updates, which is exact because it is deterministic.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from lrkit.runtime import resume as resume_policy
from lrkit.schedulers.base import (
    LRScheduler,
    StateError,
    check_count,
    copy_value,
    group_lrs,
    python_scalars,
    set_group_value,
)
from lrkit.schedulers.hparams import GRAD_CLIP, HyperparamScheduler
from lrkit.schedulers.llm import ScheduleLR
from lrkit.schedulers.torch_compat import ReduceLROnPlateau
from lrkit.schedules.batch import BatchRamp, BatchRampError
from lrkit.spec import Backend, build_scheduler, spec_fingerprint
from lrkit.spec.clocked import advance, move_to, spec_clock_unit

__all__ = ["TrainingSchedule", "ScheduleError", "ResumeError", "saved_clock", "scaler_step"]

ResumeError = resume_policy.ResumeError
_log = logging.getLogger("lrkit")


class ScheduleError(resume_policy.ResumeError):
    """A schedule that cannot be stepped or resumed as asked; the message says what to do."""


class TrainingSchedule:
    """The schedule of a run: its scheduler, its clocks, its hyperparameter schedules and its resume policy.

    Args:
        spec: the schedule the run asks for (``{"type": ..., ...}``; :mod:`lrkit.spec`).
        optimizer: its param groups' LRs are the schedule's peaks.
        backend: ``"lrkit"`` or ``"torch"`` (PyTorch's classes from the same spec).
        tokens_per_step: tokens of one optimizer update (the global batch in tokens): the clocks' default
            step. Needed for a schedule in tokens or samples, unless :meth:`step` is given ``tokens``. With a
            ``batch_ramp`` leave it out: each update's tokens come from the ramp.
        sequence_length: tokens of one sample (for the samples clock; needed with a ``batch_ramp``).
        batch_ramp: the global batch as a function of the token clock, and its LR scaling rule
            (:mod:`lrkit.schedules.batch`); its LR factor multiplies every group's LR. None: a fixed batch.
        hparams: hyperparameter schedulers stepped with the LR.
        hparam_labels: how messages name each hyperparameter schedule (key -> e.g. its flag).
        resume_policy: what :meth:`load_state_dict` does when the checkpoint's schedule differs from ``spec``:
            ``"strict"`` (default: refuse, listing the diff), ``"checkpoint"``, ``"override"``, ``"extend"``
            or ``"cooldown:N[:SHAPE]"`` (:mod:`lrkit.runtime.resume`), a string or a parsed ``Policy``.
        check_ranks: after every step, check that every rank of ``torch.distributed`` holds the same LRs
            (:meth:`check_same_lr`; one small all-gather per update).
        policy_argument: how messages name the resume policy, so they tell the user what to pass: an argument
            name (``"resume_policy"``, an integration's ``"lr_resume_policy"``: ``resume_policy='extend'``) or a
            command-line flag (``"--lr-resume-policy"``: ``--lr-resume-policy extend``).

    Attributes:
        spec: the schedule in force (the one :meth:`state_dict` records).
        request: the schedule the run asked for (they differ after a resume policy changed it).
        policy: the resume policy that last changed the schedule, or None.
        steps: successful updates so far (the scheduler's step count).
        clock: ``{"tokens": ..., "samples": ...}`` of the successful updates.
        tokens_per_step: tokens of the next update (with a ``batch_ramp``, its batch at the clock).
        batch_ramp: the batch-size ramp, or None.
        scheduler: the scheduler object (lrkit's or torch's).
        resume_policy: the policy :meth:`load_state_dict` applies by default.
        resume_notes: the notes of the last :meth:`load_state_dict` (also logged on the ``lrkit`` logger).
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        optimizer: Any,
        *,
        backend: Backend = "lrkit",
        tokens_per_step: int | None = None,
        sequence_length: int | None = None,
        hparams: Sequence[HyperparamScheduler] = (),
        hparam_labels: Mapping[str, str] | None = None,
        resume_policy: str | resume_policy.Policy = "strict",
        check_ranks: bool = False,
        policy_argument: str = "resume_policy",
        batch_ramp: BatchRamp | None = None,
    ) -> None:
        self.policy_argument = policy_argument
        self.resume_policy = _as_policy(resume_policy)
        self.check_ranks = bool(check_ranks)
        self.resume_notes: list[str] = []
        self.optimizer = optimizer
        self.backend: Backend = backend
        self.spec: dict[str, Any] = python_scalars(dict(spec))  # numpy numbers as Python's: the state is plain data
        self.request: dict[str, Any] = dict(self.spec)
        self.policy: str | None = None
        self.batch_ramp = batch_ramp
        if batch_ramp is not None and (tokens_per_step is not None or not sequence_length):
            raise ScheduleError(
                f"TrainingSchedule: a batch_ramp gives the tokens of each update: pass sequence_length= and no "
                f"tokens_per_step, got tokens_per_step={tokens_per_step}, sequence_length={sequence_length}"
            )
        self._tokens_per_step = tokens_per_step
        self.sequence_length = sequence_length
        self.hparams = list(hparams)
        self.hparam_labels = dict(hparam_labels or {})
        self.steps = 0
        self.clock = {"tokens": 0, "samples": 0}
        self._unscaled: list[float] | None = None  # the scheduler's LRs, before the ramp's factor
        self.scheduler = build_scheduler(self.spec, optimizer, backend=backend)
        if self._scales_lr and self.follows_a_metric:
            raise ScheduleError(
                f"{self.spec.get('type')} follows a metric and lowers the LR it finds, so the batch ramp's "
                f"{batch_ramp.lr_scaling if batch_ramp else ''} LR scaling would compound: use lr_scaling 'none' "
                "with it, or a schedule of the clock"
            )
        self._scale_lrs()

    # ------------------------------------------------------------------ stepping

    @property
    def unit(self) -> str | None:
        """The clock the schedule in force counts: ``"tokens"``, ``"samples"``, or None (optimizer steps)."""
        return spec_clock_unit(self.spec)

    @property
    def follows_a_metric(self) -> bool:
        """The schedule steps on a metric (``ReduceLROnPlateau``, ``GreedyLR``): :meth:`step` needs ``metric``."""
        return _follows_a_metric(self.scheduler)

    def lrs(self) -> list[float]:
        """Each param group's LR now: the LR the next update uses (the ramp's factor included)."""
        return group_lrs(self.optimizer)

    @property
    def tokens_per_step(self) -> int | None:
        """Tokens of the next update: the ramp's batch at the clock times the sequence length, or the fixed
        ``tokens_per_step`` given."""
        if self.batch_ramp is not None and self.sequence_length:
            return self.batch_ramp.sequences(self.clock["tokens"]) * self.sequence_length
        return self._tokens_per_step

    @tokens_per_step.setter
    def tokens_per_step(self, value: int | None) -> None:
        self._tokens_per_step = value

    def batch_sequences(self) -> int | None:
        """The global batch of the next update in sequences (the ramp's ``B(clock)``), or None without a ramp."""
        return None if self.batch_ramp is None else self.batch_ramp.sequences(self.clock["tokens"])

    def lr_factor(self) -> float:
        """The ramp's LR multiplier for the next update, ``(B(clock) / start) ** p``; 1 without a ramp."""
        return 1.0 if self.batch_ramp is None else self.batch_ramp.lr_factor(self.clock["tokens"])

    @property
    def _scales_lr(self) -> bool:
        return self.batch_ramp is not None and self.batch_ramp.lr_scaling != "none"

    def _unscale_lrs(self) -> None:
        """Give the groups back the scheduler's own LRs (a chainable scheduler reads them to make the next)."""
        if self._unscaled is not None:
            for group, lr in zip(self.optimizer.param_groups, self._unscaled):
                set_group_value(group, "lr", lr)
            self._unscaled = None

    def _scale_lrs(self) -> None:
        """Keep the scheduler's LRs and set each group's to it times :meth:`lr_factor`."""
        if not self._scales_lr:
            return
        self._unscaled = group_lrs(self.optimizer)
        factor = self.lr_factor()
        for group, lr in zip(self.optimizer.param_groups, self._unscaled):
            set_group_value(group, "lr", lr * factor)

    def ticks(self, tokens: int | None = None) -> dict[str, int]:
        """The clock ticks of one update: ``{"tokens": t, "samples": t // sequence_length}``."""
        tokens = self.tokens_per_step if tokens is None else tokens
        if tokens is None:
            raise ScheduleError(
                "TrainingSchedule: the clocks need the tokens of each update: pass tokens_per_step= or step(tokens=...)"
            )
        return {"tokens": int(tokens), "samples": int(tokens) // self.sequence_length if self.sequence_length else 0}

    def step(self, *, skipped: bool = False, metric: float | None = None, tokens: int | None = None) -> bool:
        """One optimizer update done. Returns whether the schedule advanced.

        Args:
            skipped: the update did not happen (the GradScaler found inf/NaN gradients): nothing moves.
            metric: the value a ``ReduceLROnPlateau`` or ``GreedyLR`` schedule follows (e.g. the loss).
            tokens: tokens of this update (default ``tokens_per_step``).
        """
        if skipped:
            return False
        self._unscale_lrs()
        unit = self.unit
        if unit is not None or self.tokens_per_step is not None or tokens is not None:
            ticks = self.ticks(tokens)
            self.clock = {name: count + ticks[name] for name, count in self.clock.items()}
            if unit is not None:
                advance(self.scheduler, ticks[unit])
        if unit is None:
            if self.follows_a_metric:
                if metric is None:
                    raise ScheduleError(f"{self.spec.get('type')} follows a metric: call step(metric=<loss>)")
                self.scheduler.step(metric)
            else:
                self.scheduler.step()
        self.steps += 1
        self._scale_lrs()
        for h in self.hparams:
            h.step()
        if self.check_ranks:
            self.check_same_lr()
        return True

    def step_with_scaler(self, scaler: Any, optimizer: Any = None, **step_args: Any) -> bool:
        """``scaler.step(optimizer)`` and ``scaler.update()``, then :meth:`step` unless the scaler skipped the
        update (inf/NaN gradients). Returns whether the schedule advanced. ``step_args`` go to :meth:`step`
        (``metric``, ``tokens``). Do not combine with :meth:`bind`: the post-hook would step it as well."""
        skipped = scaler_step(scaler, self.optimizer if optimizer is None else optimizer)
        return self.step(skipped=skipped, **step_args)

    def bind(self, optimizer: Any = None) -> Any:
        """Step the schedule after every real ``optimizer.step()``, through torch's step post-hook.

        Gradient-accumulation micro-steps never call ``optimizer.step()``, and neither does a GradScaler that
        skips an overflowed update (for a fused optimizer, which the scaler does call with its ``found_inf``,
        the hook reads that verdict), so the schedule advances exactly once per successful update, whoever
        calls the optimizer (a framework's loop, a wrapper). ``optimizer`` defaults to the one the schedule sets;
        give the inner torch optimizer when a framework wraps it. Returns the hook's handle
        (``handle.remove()`` unbinds). A schedule that follows a metric cannot be bound: it needs the metric.
        """
        if self.follows_a_metric:
            raise ScheduleError(
                f"{self.spec.get('type')} follows a metric, so it cannot step from the optimizer's hook: call "
                "step(metric=<loss>) after each update instead of bind()"
            )
        target = self.optimizer if optimizer is None else optimizer
        register = getattr(target, "register_step_post_hook", None)
        if register is None:
            raise ScheduleError(
                f"bind(optimizer=...) needs a torch.optim.Optimizer (register_step_post_hook), got "
                f"{type(target).__name__}: pass the inner optimizer of a wrapper"
            )
        return register(self._after_optimizer_step)

    def _after_optimizer_step(self, optimizer: Any, *_: Any) -> None:
        # A fused optimizer (fused AdamW, the HF Trainer's default) takes the GradScaler's verdict itself:
        # the scaler calls its step() with ``found_inf`` set as an attribute, and the kernel skips the update.
        found_inf = getattr(optimizer, "found_inf", None)
        if found_inf is not None and float(found_inf) != 0.0:
            return
        self.step()

    def check_same_lr(self) -> None:
        """Raise :class:`ScheduleError` unless every rank holds the same LR in every param group.

        One ``all_gather_object`` over the default ``torch.distributed`` group; nothing when it is not
        initialised (one process)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        mine = [float(lr) for lr in self.lrs()]
        ranks: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(ranks, mine)
        if any(lrs != ranks[0] for lrs in ranks):
            shown = "; ".join(f"rank {r}: {lrs}" for r, lrs in enumerate(ranks))
            raise ScheduleError(f"the ranks hold different LRs after update {self.steps}: {shown}")

    # ---------------------------------------------------- torch's scheduler surface

    def get_last_lr(self) -> list[float]:
        """Each param group's LR now (torch's name for :meth:`lrs`)."""
        return self.lrs()

    @property
    def last_epoch(self) -> int:
        """Successful updates so far (torch's name for :attr:`steps`)."""
        return self.steps

    def to_spec(self) -> dict[str, Any]:
        """The spec of the schedule in force."""
        return dict(self.spec)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the update count, the scheduler's own state, the hyperparameter schedules' states, the
        backend, the spec in force (and its fingerprint), the spec asked for, the policy that changed it, the
        clocks and the tokens per update. The scheduler's own state is saved when it is plain data (lrkit's,
        and the metric-driven references: torch's ``ReduceLROnPlateau``, transformers' ``GreedyLR``); torch's
        other classes are replayed on resume instead."""
        return {
            "scheduler_steps": self.steps,
            "scheduler": self.scheduler.state_dict() if self._state_is_saved() else {},
            "hparams": {h.key: h.state_dict() for h in self.hparams},
            "scheduler_backend": self.backend,
            "scheduler_spec": self.spec,
            "scheduler_fingerprint": spec_fingerprint(self.spec),
            "scheduler_request": self.request,
            "scheduler_resume_policy": self.policy,
            "clock": dict(self.clock),
            "tokens_per_step": self.tokens_per_step,
            "batch_ramp": None if self.batch_ramp is None else self.batch_ramp.to_dict(),
        }

    def load_state_dict(
        self,
        state: Mapping[str, Any],
        policy: str | resume_policy.Policy | None = None,
        where: str = "the checkpoint",
    ) -> list[str]:
        """Restore a :meth:`state_dict` (after ``optimizer.load_state_dict``) and apply ``policy``.

        The checkpoint's schedule is restored where it stopped. If this run asks for another one (the spec
        this component was built with), ``policy`` decides (default: the constructor's ``resume_policy``,
        itself ``strict`` by default: an error listing what changed). Returns the notes to show the user
        (ignored changes, refits, the LR jump of ``override``, a change of batch size), keeps them in
        :attr:`resume_notes` and logs each on the ``lrkit`` logger; a refused change raises
        :class:`~lrkit.runtime.resume.ResumeError` and changes nothing.
        """
        try:
            notes = self._load(state, self.resume_policy if policy is None else _as_policy(policy), where)
        except resume_policy.ResumeError as err:
            worded = self._worded(str(err))
            if worded == str(err):
                raise
            raise type(err)(worded) from err
        notes = [self._worded(note) for note in notes]
        self.resume_notes = notes
        for note in notes:
            _log.warning("lrkit resume: %s", note)
        return notes

    def _load(self, state: Mapping[str, Any], policy: resume_policy.Policy, where: str) -> list[str]:
        state = _as_schedule_state(state, self.backend)
        if not isinstance(state, Mapping) or "scheduler_spec" not in state or "scheduler_steps" not in state:
            shown = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ScheduleError(
                f"{where} holds no TrainingSchedule state (expected the keys of TrainingSchedule.state_dict(), "
                f"got {shown})"
            )
        self._check_batch_ramp(state.get("batch_ramp"), where)
        decision = resume_policy.decide(policy, resume_policy.Saved.from_payload(state), self.request, where=where)
        steps = _saved_steps(state["scheduler_steps"], where)
        clock = saved_clock(state, self.sequence_length)
        saved = state.get("scheduler")
        if saved and state.get("scheduler_backend") == self.backend == "lrkit":
            check_state_against_spec(saved, decision.saved.spec, steps, clock, self.optimizer, where)
        hparams, notes = self._resume_hparams(state.get("hparams"), policy.kind, steps)
        notes += decision.notes
        # The schedule in force at the checkpoint, where it stopped.
        self.spec, self.request, self.policy = decision.saved.spec, decision.request, decision.record
        self.steps, self.clock, self.hparams = steps, clock, hparams
        self._unscaled = None  # the optimizer's loaded LRs are replaced by the scheduler's below
        same_backend = state.get("scheduler_backend") == self.backend
        saved_state = state.get("scheduler") if same_backend else None
        self.scheduler = self._rebuild(self.spec, 0 if saved_state else steps, clock)
        if saved_state and self._state_is_saved():
            self.scheduler.load_state_dict(saved_state)
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                set_group_value(group, "lr", float(lr))
        elif self.follows_a_metric:
            kind = type(self.scheduler).__name__
            notes.append(f"the checkpoint holds no {self.backend} {kind} state: its patience count restarts")
        if decision.change:
            notes += self._change(decision)
        saved_per_step = state.get("tokens_per_step")
        if saved_per_step and self.tokens_per_step and int(saved_per_step) != self.tokens_per_step:
            notes.append(self._batch_change_note(int(saved_per_step)))
        self._scale_lrs()
        return notes

    def _check_batch_ramp(self, saved: Any, where: str) -> None:
        """Refuse a checkpoint whose batch ramp (or its absence) differs from this run's: the batches and LRs
        after the resume would not be the ones the run was following."""
        mine = None if self.batch_ramp is None else self.batch_ramp.to_dict()
        if saved is None and mine is None:
            return
        if saved is not None:
            try:
                saved = BatchRamp.from_dict(saved, f"{where}: state['batch_ramp']").to_dict()
            except BatchRampError as err:
                raise StateError(str(err)) from None
        if saved != mine:
            theirs = "has no batch ramp" if saved is None else f"ramps the batch as {BatchRamp.from_dict(saved)}"
            ours = "none" if self.batch_ramp is None else str(self.batch_ramp)
            raise ScheduleError(
                f"{where} {theirs}, and this run asks for {ours}: the batch sizes and LRs would not continue "
                "the run's; resume with the checkpoint's batch ramp (--batch-size-schedule, --batch-lr-scaling)"
            )

    def _worded(self, message: str) -> str:
        """``message`` naming the policy as this schedule's user passes it (:mod:`lrkit.runtime.resume` words
        it as the trainer's flag, ``--lr-resume-policy extend``)."""
        flag = resume_policy.POLICY_FLAG
        if self.policy_argument == flag:
            return message
        if self.policy_argument.startswith("-"):
            return message.replace(flag, self.policy_argument)
        return re.sub(rf"{flag} ([a-z]+(?::[0-9N]+(?::[a-z0-9-]+)?)?)", rf"{self.policy_argument}='\1'", message)

    def _state_is_saved(self) -> bool:
        return self.backend == "lrkit" or self.follows_a_metric

    def _rebuild(self, spec: Mapping[str, Any], steps: int, clock: Mapping[str, int] | None) -> Any:
        """The scheduler of ``spec`` built as if from step 0 (chainable classes start from ``initial_lr``),
        then moved on ``steps`` updates (and, on the token or sample clock, to ``clock``). A schedule that
        follows a metric has no closed form to move along: it starts from its peak, as if no metric came yet."""
        return _built_at(spec, self.optimizer, self.backend, steps, clock)

    def _change(self, decision: resume_policy.Decision) -> list[str]:
        """Put the schedule that ``decision`` asks for in force at the current update."""
        before = self.lrs()
        peaks = [float(g.get("initial_lr", g["lr"])) for g in self.optimizer.param_groups]
        names = [g.get("name") for g in self.optimizer.param_groups]
        per_step = self.ticks() if self.tokens_per_step is not None else {}
        spec, notes = resume_policy.in_force(
            decision, self.steps, before, peaks, group_names=names, clock=self.clock, per_step=per_step
        )
        self.scheduler = self._rebuild(spec, self.steps, self.clock)
        self.spec = spec
        if self.follows_a_metric:
            notes.append(
                f"the {type(self.scheduler).__name__} starts at step {self.steps} from its peak LR and watches the "
                "loss from there"
            )
        if decision.policy.kind == "override":
            notes.append(resume_policy.jump_report(self.steps, before, self.lrs()))
        return notes

    def _batch_change_note(self, before: int) -> str:
        """What a resume with another batch size does to the schedule (no LR jump either way)."""
        after, unit = self.tokens_per_step, self.unit
        head = f"the batch changed from {before} to {after} tokens per step at step {self.steps}"
        if unit is not None:
            return f"{head}; the schedule counts {unit} and continues at {self.clock[unit]} {unit}, with no LR jump"
        assert after is not None
        return (
            f"{head}; the schedule counts optimizer steps, so its LR is continuous in steps but the rest of it now "
            f"spans {after / before:.3g}x the tokens. Give its lengths in tokens (--warmup 50Mtok --total 10Btok) "
            "to keep it in token time"
        )

    def _resume_hparams(
        self, saved: Mapping[str, Any] | None, policy: str, steps: int
    ) -> tuple[list[HyperparamScheduler], list[str]]:
        """The hyperparameter schedulers to continue with after a resume at update ``steps``, and notes.

        A schedule equal to the checkpoint's continues from its state. Otherwise ``policy`` (the kind of
        resume policy) decides: ``checkpoint`` keeps the checkpoint's (also one this run no longer gives),
        ``override`` applies this run's from update ``steps`` on, anything else is an error.
        """
        saved = dict(saved or {})
        mine = {h.key: h for h in self.hparams}
        out: list[HyperparamScheduler] = []
        notes: list[str] = []
        for key in [*mine, *(k for k in saved if k not in mine)]:
            label = self.hparam_labels.get(key, f"the {key} schedule")
            h, state = mine.get(key), saved.get(key)
            if h is not None and state is not None and (state.get("schedules") == h.state_dict()["schedules"]):
                h.load_state_dict(state)
                out.append(h)
            elif state is not None and policy == "checkpoint":
                optimizer = None if key == GRAD_CLIP else self.optimizer
                kept = h or HyperparamScheduler(optimizer, key, state["schedules"])
                kept.load_state_dict(state)
                out.append(kept)
                notes.append(f"--lr-resume-policy checkpoint: keeping the checkpoint's {label}")
            elif h is not None and policy == "override":
                h.step(epoch=steps)
                out.append(h)
                notes.append(f"--lr-resume-policy override: {label} applies from step {steps}, value {h.current()}")
            elif h is not None:
                theirs = f"follows {_describe(state.get('schedules'))}" if state is not None else "has none"
                raise ScheduleError(
                    f"{label} gives {_describe(h.state_dict()['schedules'])}, but the checkpoint's {key} schedule "
                    f"{theirs}; pass --lr-resume-policy checkpoint (keep the checkpoint's) or override (apply "
                    f"{label} from step {steps})"
                )
            else:
                raise ScheduleError(
                    f"the checkpoint's {key} follows {_describe(saved[key].get('schedules'))}, which this run "
                    f"does not give: pass {label} again, or --lr-resume-policy checkpoint to keep it"
                )
        return out, notes


def _built_at(
    spec: Mapping[str, Any], optimizer: Any, backend: Backend, steps: int, clock: Mapping[str, int] | None
) -> Any:
    """:meth:`TrainingSchedule._rebuild` on ``optimizer``: ``spec`` built from step 0, moved on ``steps``
    updates (a closed-form lrkit schedule jumps there; the others replay them)."""
    for group in optimizer.param_groups:
        if "initial_lr" in group:  # a ReduceLROnPlateau's groups have none: it starts from the LR as it is
            set_group_value(group, "lr", float(group["initial_lr"]))
    scheduler = build_scheduler(spec, optimizer, backend=backend)
    unit = spec_clock_unit(spec)
    with warnings.catch_warnings():  # torch deprecates step(epoch); here the epoch is the clock
        warnings.simplefilter("ignore")
        if unit is not None:
            move_to(scheduler, (clock or {}).get(unit, 0), steps)
        elif _follows_a_metric(scheduler):  # no metrics to replay: it watches from here
            scheduler.last_epoch = steps
        elif isinstance(scheduler, ScheduleLR):
            scheduler.move_to_step(steps)
        else:
            for _ in range(steps):
                scheduler.step()
    return scheduler


def _saved_steps(value: Any, where: str) -> int:
    """A checkpoint's ``scheduler_steps``: an update count in ``[0, 2**53]``."""
    try:
        return check_count("scheduler_steps", value)
    except (TypeError, ValueError) as err:
        raise StateError(f"{where}: state['scheduler_steps'] is refused: {err}") from err


def _scratch_optimizer(optimizer: Any) -> Any:
    """A stand-in for ``optimizer`` holding copies of its param groups (no parameters): a scheduler built and
    stepped on it changes nothing of the real optimizer."""
    groups = [{k: copy_value(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    for group in groups:
        group["params"] = []
    return SimpleNamespace(param_groups=groups, defaults=dict(getattr(optimizer, "defaults", {})))


def check_state_against_spec(
    state: Mapping[str, Any],
    spec: Mapping[str, Any],
    steps: int,
    clock: Mapping[str, int] | None,
    optimizer: Any,
    where: str = "the checkpoint",
) -> None:
    """Refuse an lrkit scheduler ``state`` that ``spec``, moved to update ``steps`` (and ``clock``), could not
    have produced: :class:`~lrkit.schedulers.base.StateError` naming each differing field, what the state holds
    and what the spec gives. A hand-edited ``peak_lr`` or ``last_epoch`` in a checkpoint would otherwise set
    another LR than the run's, without a word.

    The scheduler is built on a copy of ``optimizer``'s param groups (the optimizer's state already loaded, so
    its ``initial_lr`` are the run's peaks); nothing of ``optimizer`` changes. A schedule that follows a metric
    (ReduceLROnPlateau, GreedyLR) is checked on all but its history (``_history_fields``: ``best``, its
    counters, its LRs), which only the metrics made.
    """
    loaded = _built_at(spec, _scratch_optimizer(optimizer), "lrkit", 0, clock)
    if not isinstance(loaded, LRScheduler):
        return
    loaded.load_state_dict(state)  # the scheduler's own checks: a malformed state raises StateError here
    reference = _built_at(spec, _scratch_optimizer(optimizer), "lrkit", steps, clock)
    history = set(type(loaded)._history_fields)
    diffs: list[str] = []
    _diff(_comparable(reference.state_dict(), history), _comparable(loaded.state_dict(), history), "", diffs)
    if diffs:
        shown = "\n".join(f"  {line}" for line in diffs[:8]) + ("\n  ..." if len(diffs) > 8 else "")
        raise StateError(
            f"{where}: the scheduler state is not one that its schedule {json.dumps(dict(spec), default=str)} "
            f"produces at update {steps} (scheduler_steps); it differs in:\n{shown}\n"
            "The checkpoint was edited or corrupted: resume from another checkpoint, or start the run over"
        )


def _comparable(state: Any, history: set[str]) -> Any:
    """A state without its ``"spec"`` (the spec is checked by the resume policy) and its history fields."""
    if isinstance(state, Mapping):
        return {k: _comparable(v, set()) for k, v in state.items() if k != "spec" and k not in history}
    if isinstance(state, (list, tuple)):
        return [_comparable(v, set()) for v in state]
    return state


def _diff(expected: Any, got: Any, path: str, out: list[str]) -> None:
    """Append ``scheduler<path>: the checkpoint holds X, the schedule gives Y`` for every leaf that differs."""
    if isinstance(expected, Mapping) and isinstance(got, Mapping):
        for key in [*expected, *(k for k in got if k not in expected)]:
            if key not in got or key not in expected:
                out.append(f"scheduler{path}[{key!r}]: {'missing' if key not in got else 'not in the schedule'}")
            else:
                _diff(expected[key], got[key], f"{path}[{key!r}]", out)
    elif isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        for i, (e, g) in enumerate(zip(expected, got)):
            _diff(e, g, f"{path}[{i}]", out)
    elif not (expected == got and type(expected) is type(got)) and not _same_number(expected, got):
        out.append(f"scheduler{path}: the checkpoint holds {got!r}, the schedule gives {expected!r}")


def _same_number(a: Any, b: Any) -> bool:
    """``0`` and ``0.0`` are one number (a spec argument may be given either way); ``True`` is not ``1``."""
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def _as_policy(policy: str | resume_policy.Policy) -> resume_policy.Policy:
    """A policy given as text (``"extend"``, ``"cooldown:5"``) or already parsed."""
    if isinstance(policy, resume_policy.Policy):
        return policy
    try:
        return resume_policy.parse_policy(policy)
    except ValueError as err:
        raise ScheduleError(f"resume_policy: {err}") from err


def _as_schedule_state(state: Any, backend: str) -> Any:
    """A plain lrkit scheduler's ``state_dict()`` (it carries its ``"spec"``) as the state of a
    :class:`TrainingSchedule` on the optimizer-step clock, so a checkpoint of a plain scheduler resumes under
    any policy; any other state as it is."""
    if not isinstance(state, Mapping) or "scheduler_spec" in state:
        return state
    spec, steps = state.get("spec"), state.get("last_epoch")
    if not isinstance(spec, Mapping) or isinstance(steps, bool) or not isinstance(steps, int):
        return state
    if spec_clock_unit(spec) is not None:  # a Clocked scheduler's state says its clock, not the tokens per step
        return state
    return {"scheduler_steps": steps, "scheduler": dict(state), "scheduler_backend": "lrkit", "scheduler_spec": spec}


def scaler_step(scaler: Any, optimizer: Any) -> bool:
    """``scaler.step(optimizer)`` then ``scaler.update()``; returns whether the scaler skipped the update.

    A ``torch.amp.GradScaler`` skips ``optimizer.step()`` when the gradients hold inf or NaN and then lowers
    its scale by ``backoff_factor``; any other update keeps the scale or raises it. So the update was skipped
    exactly when the scale went down. A disabled scaler never skips."""
    if not scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
        return False
    before = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return bool(scaler.get_scale() < before)


def _follows_a_metric(scheduler: Any) -> bool:
    """``step(metrics)``: lrkit's ReduceLROnPlateau and GreedyLR (both torch ReduceLROnPlateau instances, as the
    HF Trainer expects), torch's, and transformers' GreedyLR (a GreedyLR spec's reference on the torch backend,
    which is no torch class; recognised without importing transformers)."""
    import torch

    if isinstance(scheduler, (ReduceLROnPlateau, torch.optim.lr_scheduler.ReduceLROnPlateau)):
        return True
    transformers_optimization = sys.modules.get("transformers.optimization")
    reference = getattr(transformers_optimization, "GreedyLR", None)
    return reference is not None and isinstance(scheduler, reference)


def saved_clock(state: Mapping[str, Any], sequence_length: int | None) -> dict[str, int]:
    """The clocks of a checkpoint; one saved before they existed counts every token it read."""
    saved = state.get("clock")
    if isinstance(saved, Mapping) and {"tokens", "samples"} <= set(saved):
        return {"tokens": int(saved["tokens"]), "samples": int(saved["samples"])}
    tokens = int(state.get("tokens", 0))
    return {"tokens": tokens, "samples": tokens // sequence_length if sequence_length else 0}


def _describe(schedules: Any) -> str:
    """Each distinct schedule of a state's per-group list, with the groups that follow it."""
    if not isinstance(schedules, list):
        return repr(schedules)
    distinct: dict[str, list[int]] = {}
    for i, schedule in enumerate(schedules):
        if schedule is not None:
            distinct.setdefault(json.dumps(schedule, sort_keys=True), []).append(i)
    return "; ".join(f"{text} (param_groups {groups})" for text, groups in distinct.items())
