"""Layer 4, the run-time side of a schedule: the component a training loop calls, and the resume policies.

* :class:`~lrkit.runtime.schedule.TrainingSchedule`: steps only on successful updates (``bind()`` to the
  optimizer's step hook, ``step_with_scaler()``, or ``step(skipped=...)``), advances the token
  clock, keeps the hyperparameter schedules in step, carries its spec and state, applies the resume policy;
* :mod:`lrkit.runtime.resume`: the policies ``strict|checkpoint|override|extend|cooldown:N``.
"""

from lrkit.runtime.schedule import ResumeError, ScheduleError, TrainingSchedule, scaler_step

__all__ = ["ResumeError", "ScheduleError", "TrainingSchedule", "scaler_step"]
