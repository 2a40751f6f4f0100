"""lrkit's schedule inside the Hugging Face ``Trainer``: :class:`LrkitTrainer` and :class:`LrkitTrainerMixin`.

The Trainer owns the scheduler: it builds it in :meth:`~transformers.Trainer.create_scheduler`, steps it
after each optimizer update, saves its ``state_dict()`` to ``scheduler.pt`` in every checkpoint and loads it
back on ``train(resume_from_checkpoint=...)``. The mixin overrides only ``create_scheduler`` (public and
meant to be overridden) and ``log`` (the same), so the scheduler the Trainer holds is a
:class:`~lrkit.runtime.TrainingSchedule`, and the Trainer's own calls keep lrkit's guarantees:

* **One step per successful update.** The Trainer calls ``lr_scheduler.step()`` once per optimizer update
  (after the last gradient-accumulation micro-batch), and not when ``accelerator.optimizer_step_was_skipped``.
  That flag misses a GradScaler skip when the optimizer handles the scaler itself (transformers' default
  ``adamw_torch_fused``), so the schedule also checks the scaler: an update whose scale went down (inf/NaN
  gradients) moves nothing (:class:`TrainerSchedule`).
* **The spec travels in the checkpoint.** ``scheduler.pt`` holds the schedule's plain state: the spec in
  force, the update count and the scheduler's state (the Trainer loads it with ``weights_only=True``).
* **A changed schedule on resume follows the resume policy** (``lr_resume_policy``): ``strict`` (default)
  refuses with the diff (``num_training_steps: 10 -> 20``), ``checkpoint``, ``override``, ``extend`` or
  ``cooldown:N`` (see :mod:`lrkit.runtime.resume`). transformers' own scheduler instead takes the new
  ``max_steps`` at the old step in silence.
* **Every param group's LR is logged**: ``learning_rate/group_<i>`` (``learning_rate/<name>`` for a group
  with a ``"name"``) beside the Trainer's ``learning_rate`` (group 0's), with the LR of the same update.

Without an explicit spec the schedule is transformers' own, by its names: ``args.lr_scheduler_type``,
``args.lr_scheduler_kwargs`` and ``args.get_warmup_steps(max_steps)`` give an ``HFSchedule`` spec whose LRs
equal ``transformers.get_scheduler``'s (:func:`hf_schedule_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import Trainer, TrainerCallback

from lrkit.runtime import ScheduleError, TrainingSchedule
from lrkit.runtime.resume import Policy, parse_policy

__all__ = ["LrkitTrainer", "LrkitTrainerMixin", "TrainerSchedule", "hf_schedule_spec", "group_lr_keys"]

#: The names whose transformers function ignores ``num_training_steps`` (and, for the first two, the kwargs):
#: what ``transformers.get_scheduler`` passes on, so the spec records only what the schedule reads.
_NO_TOTAL = ("constant", "constant_with_warmup", "inverse_sqrt")
_NO_KWARGS = ("constant", "constant_with_warmup")
_METRIC_DRIVEN = ("reduce_lr_on_plateau", "greedy")


def hf_schedule_spec(
    name: Any,
    num_warmup_steps: int | None,
    num_training_steps: int | None,
    scheduler_specific_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``HFSchedule`` spec of what ``transformers.get_scheduler(name, ...)`` builds, with the same LRs.

    It records only the arguments transformers passes to ``name``'s function (``constant`` takes none,
    ``constant_with_warmup`` and ``inverse_sqrt`` no ``num_training_steps``), so a resume that changes an
    argument the schedule ignores is not a change of schedule. Empty kwargs are recorded as None.

    Args:
        name: a ``transformers.SchedulerType`` or its value (``"cosine"``, ...).
        num_warmup_steps: the warmup steps (the Trainer's ``args.get_warmup_steps(max_steps)``).
        num_training_steps: the run's optimizer updates (the Trainer's ``max_steps``).
        scheduler_specific_kwargs: the Trainer's ``args.lr_scheduler_kwargs``.

    Raises:
        ScheduleError: ``name`` is ``reduce_lr_on_plateau`` or ``greedy``, which step on an evaluation metric
            (the Trainer steps them after ``evaluate``); :class:`LrkitTrainer` does not take them.
    """
    value = str(getattr(name, "value", name))
    if value in _METRIC_DRIVEN:
        raise ScheduleError(
            f"lr_scheduler_type={value!r} steps on an evaluation metric, which LrkitTrainer does not drive: "
            "use the plain Trainer for it, or give LrkitTrainer a schedule of the steps (lr_schedule=...)"
        )
    kwargs = dict(scheduler_specific_kwargs or {})
    return {
        "type": "HFSchedule",
        "name": value,
        "num_warmup_steps": None if value == "constant" else num_warmup_steps,
        "num_training_steps": None if value in _NO_TOTAL else num_training_steps,
        "scheduler_specific_kwargs": (kwargs or None) if value not in _NO_KWARGS else None,
    }


def group_lr_keys(optimizer: Any) -> list[str]:
    """The log key of each param group's LR: ``learning_rate/<name>`` for a group with a ``"name"``, else
    ``learning_rate/group_<i>``."""
    keys = []
    for i, group in enumerate(optimizer.param_groups):
        name = group.get("name")
        keys.append(f"learning_rate/{name}" if isinstance(name, str) and name else f"learning_rate/group_{i}")
    return keys


class TrainerSchedule(TrainingSchedule):
    """The :class:`~lrkit.runtime.TrainingSchedule` a :class:`LrkitTrainerMixin` Trainer holds.

    The Trainer calls ``step()`` after each update unless ``accelerator.optimizer_step_was_skipped``. That flag
    misses the skips of an optimizer that handles the GradScaler itself (``_step_supports_amp_scaling``:
    torch's fused Adam/AdamW, transformers' default ``adamw_torch_fused``): ``GradScaler.step`` still calls
    its ``step()``, whose fused kernel skips the update, so accelerate sees a step and reports none skipped.
    So a callback of the mixin tells this schedule whether the update it is stepped for was skipped
    (:attr:`update_skipped`: the scaler's scale went down across ``optimizer.step()``, as ``scaler.update()``
    backs off only after inf/NaN gradients), and :meth:`step` then moves nothing.

    Attributes:
        update_skipped: the last update was skipped; :meth:`step` reads and clears it.
    """

    update_skipped: bool = False

    def step(self, *, skipped: bool = False, metric: float | None = None, tokens: int | None = None) -> bool:
        """One optimizer update done (the Trainer calls it with no arguments); nothing moves if it was skipped.

        Args:
            skipped: the update did not happen (besides what :attr:`update_skipped` says).
            metric: for a schedule that follows a metric (not taken by the Trainer mixin).
            tokens: tokens of this update, for a schedule in tokens.

        Returns:
            Whether the schedule advanced.
        """
        skipped = skipped or self.update_skipped
        self.update_skipped = False
        return super().step(skipped=skipped, metric=metric, tokens=tokens)


class _UpdateWatch(TrainerCallback):  # type: ignore[misc]
    """Watches each ``optimizer.step()`` of the Trainer, before the Trainer steps the schedule.

    * Before it, the GradScaler's scale; after it, whether the scale went down (the scaler skipped the
      update), passed to the :class:`TrainerSchedule` as ``update_skipped``.
    * After it, every group's LR: the LRs that update used, read at the moment the Trainer reads its own
      ``learning_rate`` for the log.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.lrs: list[float] | None = None
        self.scale: float | None = None

    def _scaler(self) -> Any:
        accelerator = getattr(self.trainer, "accelerator", None)
        scaler = getattr(accelerator, "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.lrs = None

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        scaler = self._scaler()
        self.scale = None if scaler is None else float(scaler.get_scale())

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            self.lrs = [float(group["lr"]) for group in optimizer.param_groups]
        scaler, schedule = self._scaler(), self.trainer.lr_scheduler
        if isinstance(schedule, TrainerSchedule):
            schedule.update_skipped = bool(
                scaler is not None and self.scale is not None and float(scaler.get_scale()) < self.scale
            )


class LrkitTrainerMixin:
    """Puts a :class:`~lrkit.runtime.TrainingSchedule` in a ``transformers.Trainer`` (or a subclass of one).

    Mix it in before the Trainer class: ``class MyTrainer(LrkitTrainerMixin, SFTTrainer): ...``, or use
    :class:`LrkitTrainer`. Every other argument goes to the Trainer.

    Args:
        lr_schedule: an lrkit spec (``{"type": "WSD", ...}``); None: transformers' schedule named by
            ``args.lr_scheduler_type`` (:func:`hf_schedule_spec`), its length the Trainer's ``max_steps``.
        lr_resume_policy: what ``train(resume_from_checkpoint=...)`` does when the checkpoint's schedule
            differs from this run's: ``"strict"`` (refuse, listing the diff), ``"checkpoint"``, ``"override"``,
            ``"extend"`` or ``"cooldown:N[:SHAPE]"``.
        lr_check_ranks: check after every update that every rank holds the same LRs (one all-gather).

    Attributes:
        lr_schedule: the spec given, or None.
        lr_resume_policy: the parsed policy.
    """

    lr_scheduler: Any
    optimizer: Any
    args: Any

    def __init__(
        self,
        *args: Any,
        lr_schedule: Mapping[str, Any] | None = None,
        lr_resume_policy: str | Policy = "strict",
        lr_check_ranks: bool = False,
        **kwargs: Any,
    ) -> None:
        if lr_schedule is not None and not (isinstance(lr_schedule, Mapping) and "type" in lr_schedule):
            raise ScheduleError(f"lr_schedule must be an lrkit spec, a mapping with a 'type', got {lr_schedule!r}")
        try:
            self.lr_resume_policy = (
                lr_resume_policy if isinstance(lr_resume_policy, Policy) else parse_policy(lr_resume_policy)
            )
        except ValueError as err:
            raise ScheduleError(f"lr_resume_policy: {err}") from err
        self.lr_schedule = None if lr_schedule is None else dict(lr_schedule)
        self.lr_check_ranks = bool(lr_check_ranks)
        super().__init__(*args, **kwargs)
        if self.lr_scheduler is not None:
            raise ScheduleError(
                f"optimizers=(optimizer, scheduler) gave a {type(self.lr_scheduler).__name__}, but this Trainer "
                "builds its schedule itself: pass optimizers=(optimizer, None) and the schedule as lr_schedule=<spec>"
            )
        self._update_watch = _UpdateWatch(self)
        self.add_callback(self._update_watch)  # type: ignore[attr-defined]

    def hf_spec(self, num_training_steps: int) -> dict[str, Any]:
        """The ``HFSchedule`` spec of the Trainer's arguments for a run of ``num_training_steps`` updates."""
        return hf_schedule_spec(
            self.args.lr_scheduler_type,
            self.args.get_warmup_steps(num_training_steps),
            num_training_steps,
            self.args.lr_scheduler_kwargs,
        )

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> TrainerSchedule:
        """Build the run's :class:`~lrkit.runtime.TrainingSchedule` (the Trainer calls this once per ``train()``,
        after the optimizer, before it loads a checkpoint). It is built anew on each call, as transformers
        rebuilds the scheduler it created, since ``max_steps`` may differ.

        Args:
            num_training_steps: the Trainer's ``max_steps``: the length of a transformers-named schedule.
            optimizer: the optimizer to schedule (default: the Trainer's).

        Returns:
            The schedule, also set as ``self.lr_scheduler``.
        """
        if self.lr_scheduler is None or isinstance(self.lr_scheduler, TrainingSchedule):
            spec = self.lr_schedule if self.lr_schedule is not None else self.hf_spec(num_training_steps)
            schedule = TrainerSchedule(
                spec,
                self.optimizer if optimizer is None else optimizer,
                resume_policy=self.lr_resume_policy,
                check_ranks=self.lr_check_ranks,
                policy_argument="lr_resume_policy",  # messages say lr_resume_policy='extend', what to pass here
            )
            if schedule.follows_a_metric:
                raise ScheduleError(
                    f"lr_schedule={spec!r} steps on a metric, which the Trainer gives only after evaluate(): "
                    "LrkitTrainer takes schedules of the optimizer steps"
                )
            self.lr_scheduler = schedule
        return self.lr_scheduler  # type: ignore[no-any-return]

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's ``log``, with every param group's LR beside ``learning_rate`` (group 0's).

        The values are the LRs of the update that ``learning_rate`` reports: the ones in force at its
        ``optimizer.step()``, read before the Trainer stepped the schedule."""
        if "learning_rate" in logs and self.optimizer is not None:
            lrs = self._update_watch.lrs
            if lrs is None or len(lrs) != len(self.optimizer.param_groups):
                lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
            logs.update(zip(group_lr_keys(self.optimizer), lrs))
        super().log(logs, *args, **kwargs)  # type: ignore[misc]


class LrkitTrainer(LrkitTrainerMixin, Trainer):  # type: ignore[misc]
    """``transformers.Trainer`` whose LR schedule is an lrkit :class:`~lrkit.runtime.TrainingSchedule`.

    Takes the Trainer's arguments plus ``lr_schedule``, ``lr_resume_policy`` and ``lr_check_ranks``
    (:class:`LrkitTrainerMixin`). ``trainer.lr_scheduler`` is the schedule: ``to_spec()``,
    ``state_dict()``, ``resume_notes`` after a resume.
    """
