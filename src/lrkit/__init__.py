"""lrkit: exact, resumable, inspectable learning-rate schedules for PyTorch.

``import lrkit; lrkit.StepLR(optimizer, step_size=30)`` is a drop-in for
``torch.optim.lr_scheduler.StepLR``: same arguments, bit-identical LRs, and a
``state_dict()`` that is plain JSON-serialisable data. ``lrkit.WarmupCosine``,
``lrkit.WSD`` and friends are the LLM schedules; ``lrkit.get_scheduler`` takes
transformers' scheduler names (``lrkit.GreedyLR`` is transformers' metric-driven ``greedy``).

Importing is lazy: ``import lrkit`` and ``import lrkit.schedules`` (the pure math)
do not import torch; the first public name used loads the module that defines it.

The folders are the layers, each importing only those below it (``make test`` checks this
with import-linter): ``schedules`` (pure math) -> ``schedulers`` (optimizer binding) ->
``spec`` (the catalog) -> ``runtime`` (what a training loop calls) -> ``tools`` (flags,
preview) -> ``train`` (the trainer) -> ``align`` (alignment with PyTorch) -> ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_TORCH_COMPAT = (
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "SequentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "CyclicLR",
    "CosineAnnealingWarmRestarts",
    "OneCycleLR",
    "SWALR",
)
_LLM = (
    "WarmupConstant",
    "WarmupLinear",
    "WarmupCosine",
    "WarmupPolynomial",
    "WSD",
    "WSDS",
    "PowerLR",
    "LogWarmup",
    "InverseSqrt",
    "CosineWithRestarts",
)

#: transformers' get_*_schedule* functions (``get_greedy_schedule`` included)
_HF_FUNCTIONS = (
    "get_constant_schedule",
    "get_constant_schedule_with_warmup",
    "get_linear_schedule_with_warmup",
    "get_cosine_schedule_with_warmup",
    "get_cosine_with_hard_restarts_schedule_with_warmup",
    "get_polynomial_decay_schedule_with_warmup",
    "get_inverse_sqrt_schedule",
    "get_cosine_with_min_lr_schedule_with_warmup",
    "get_cosine_with_min_lr_schedule_with_warmup_lr_rate",
    "get_wsd_schedule",
    "get_reduce_on_plateau_schedule",
    "get_greedy_schedule",
)

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "LRScheduler": "lrkit.schedulers.base",
    "EPOCH_DEPRECATION_WARNING": "lrkit.schedulers.base",
    "StateError": "lrkit.schedulers.base",
    **{name: "lrkit.schedulers.torch_compat" for name in _TORCH_COMPAT},
    **{name: "lrkit.schedulers.llm" for name in _LLM},
    "Clocked": "lrkit.spec.clocked",
    "PerGroup": "lrkit.spec.groups",
    "HyperparamScheduler": "lrkit.schedulers.hparams",
    "GreedyLR": "lrkit.schedulers.greedy",
    "StreamingAverage": "lrkit.schedulers.greedy",
    **{name: "lrkit.schedulers.hf_functions" for name in _HF_FUNCTIONS},
    "get_scheduler": "lrkit.schedulers.hf",
    "HFSchedule": "lrkit.schedulers.hf",
    "TrainingSchedule": "lrkit.runtime",
    "ResumeError": "lrkit.runtime",
    "ScheduleError": "lrkit.runtime",
    "build_scheduler": "lrkit.spec",
    "register_spec_type": "lrkit.spec",
    "spec_fingerprint": "lrkit.spec",
    "spec_types": "lrkit.spec",
}
#: the layers, by folder (lowest first), and the ``lrkit`` command
_SUBMODULES = ("schedules", "schedulers", "spec", "runtime", "integrations", "tools", "train", "align", "cli")

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"lrkit.{name}")
    raise AttributeError(f"module 'lrkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})


if TYPE_CHECKING:  # eager imports for type checkers only
    from lrkit.runtime import ResumeError, ScheduleError, TrainingSchedule  # noqa: F401
    from lrkit.schedulers.base import EPOCH_DEPRECATION_WARNING, LRScheduler, StateError  # noqa: F401
    from lrkit.schedulers.greedy import GreedyLR, StreamingAverage  # noqa: F401
    from lrkit.schedulers.hf import HFSchedule, get_scheduler  # noqa: F401
    from lrkit.schedulers.hf_functions import (  # noqa: F401
        get_constant_schedule,
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_cosine_with_hard_restarts_schedule_with_warmup,
        get_cosine_with_min_lr_schedule_with_warmup,
        get_cosine_with_min_lr_schedule_with_warmup_lr_rate,
        get_greedy_schedule,
        get_inverse_sqrt_schedule,
        get_linear_schedule_with_warmup,
        get_polynomial_decay_schedule_with_warmup,
        get_reduce_on_plateau_schedule,
        get_wsd_schedule,
    )
    from lrkit.schedulers.hparams import HyperparamScheduler  # noqa: F401
    from lrkit.schedulers.llm import (  # noqa: F401
        WSD,
        WSDS,
        CosineWithRestarts,
        InverseSqrt,
        LogWarmup,
        PowerLR,
        WarmupConstant,
        WarmupCosine,
        WarmupLinear,
        WarmupPolynomial,
    )
    from lrkit.schedulers.torch_compat import (  # noqa: F401
        SWALR,
        ChainedScheduler,
        ConstantLR,
        CosineAnnealingLR,
        CosineAnnealingWarmRestarts,
        CyclicLR,
        ExponentialLR,
        LambdaLR,
        LinearLR,
        MultiplicativeLR,
        MultiStepLR,
        OneCycleLR,
        PolynomialLR,
        ReduceLROnPlateau,
        SequentialLR,
        StepLR,
    )
    from lrkit.spec import build_scheduler, register_spec_type, spec_fingerprint, spec_types  # noqa: F401
    from lrkit.spec.clocked import Clocked  # noqa: F401
    from lrkit.spec.groups import PerGroup  # noqa: F401
