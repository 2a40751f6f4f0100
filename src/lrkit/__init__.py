"""lrkit: exact, resumable, inspectable learning-rate schedules for PyTorch.

``import lrkit; lrkit.StepLR(optimizer, step_size=30)`` is a drop-in for
``torch.optim.lr_scheduler.StepLR``: same arguments, bit-identical LRs, and a
``state_dict()`` that is plain JSON-serialisable data. ``lrkit.WarmupCosine``,
``lrkit.WSD`` and friends are the LLM schedules; ``lrkit.get_scheduler`` takes
transformers' scheduler names.

Importing is lazy: ``import lrkit`` and ``import lrkit.schedules`` (the pure math)
do not import torch; the first public name used loads the torch binding and
registers every spec type (torch classes, LLM schedules, HF names).
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
)
_LLM = (
    "WarmupConstant",
    "WarmupLinear",
    "WarmupCosine",
    "WarmupPolynomial",
    "WSD",
    "InverseSqrt",
    "CosineWithRestarts",
)

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "LRScheduler": "lrkit.scheduler",
    "StateError": "lrkit.scheduler",
    **{name: "lrkit.torch_compat" for name in _TORCH_COMPAT},
    **{name: "lrkit.llm" for name in _LLM},
    "Clocked": "lrkit.clocked",
    "PerGroup": "lrkit.groups",
    "HyperparamScheduler": "lrkit.hparams",
    "get_scheduler": "lrkit.hf",
    "HFSchedule": "lrkit.hf",
    "build_scheduler": "lrkit.spec",
    "register_spec_type": "lrkit.spec",
    "spec_fingerprint": "lrkit.spec",
    "spec_types": "lrkit.spec",
}
_SUBMODULES = (
    "schedules",
    "scheduler",
    "torch_compat",
    "torch_formulas",
    "spec",
    "llm",
    "clock",
    "clocked",
    "groups",
    "hparams",
    "hf",
    "flags",
    "cli",
)

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        # Loading any public name registers every built-in spec type, so that
        # build_scheduler knows the LLM and HF schedules however it was reached.
        importlib.import_module("lrkit.llm")
        importlib.import_module("lrkit.hf")
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"lrkit.{name}")
    raise AttributeError(f"module 'lrkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})


if TYPE_CHECKING:  # eager imports for type checkers only
    from lrkit.clocked import Clocked  # noqa: F401
    from lrkit.groups import PerGroup  # noqa: F401
    from lrkit.hf import HFSchedule, get_scheduler  # noqa: F401
    from lrkit.hparams import HyperparamScheduler  # noqa: F401
    from lrkit.llm import (  # noqa: F401
        WSD,
        CosineWithRestarts,
        InverseSqrt,
        WarmupConstant,
        WarmupCosine,
        WarmupLinear,
        WarmupPolynomial,
    )
    from lrkit.scheduler import LRScheduler, StateError  # noqa: F401
    from lrkit.spec import build_scheduler, register_spec_type, spec_fingerprint, spec_types  # noqa: F401
    from lrkit.torch_compat import (  # noqa: F401
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
