"""The trainer's error types: what ``lrkit train`` and ``lrkit find-lr`` report as a user's mistake.

``lrkit train`` prints these as ``lrkit train: error: ...`` and exits 2; any other exception is a bug and
keeps its traceback. Every trainer error derives from :class:`TrainError` (itself a ``ValueError``, so
callers that caught ``ValueError`` still do); the lower layers' own types are listed in
:data:`USER_ERRORS` beside it.
"""

from __future__ import annotations

from lrkit.runtime.resume import ResumeError
from lrkit.schedulers.base import StateError
from lrkit.schedules.clock import QuantityError
from lrkit.tools.flags import ScheduleFlagError

__all__ = ["TrainError", "ConfigError", "USER_ERRORS"]


class TrainError(ValueError):
    """Bad training input, reported before any training step; the message names the flag and the value."""


class ConfigError(TrainError):
    """A config file or config value that does not fit :class:`lrkit.train.config.TrainConfig`: an unknown
    section or key, or a value of the wrong type; the message names the key, the value and what was expected."""


#: Every error that means "the input is wrong", not "lrkit is wrong": the trainer's (TrainError and its
#: subclasses: CheckpointError, GroupError, DataError, FindLRError, ConfigError), the schedule flags'
#: (ScheduleFlagError, QuantityError), a scheduler state that does not fit (StateError), a resume the
#: policy refuses (ResumeError) and a missing file.
USER_ERRORS: tuple[type[Exception], ...] = (
    TrainError,
    ScheduleFlagError,
    QuantityError,
    StateError,
    ResumeError,
    FileNotFoundError,
)
