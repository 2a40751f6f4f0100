"""lrkit: exact, resumable, inspectable learning-rate schedules for PyTorch.

``import lrkit; lrkit.StepLR(optimizer, step_size=30)`` is a drop-in for
``torch.optim.lr_scheduler.StepLR``: same arguments, bit-identical LRs, and a
``state_dict()`` that is plain JSON-serialisable data.
"""

from lrkit.scheduler import LRScheduler, StateError
from lrkit.torch_compat import (
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

__version__ = "0.1.0"

__all__ = [
    "LRScheduler",
    "StateError",
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
]

from lrkit.spec import build_scheduler, register_spec_type, spec_fingerprint, spec_types  # noqa: E402

__all__ += ["build_scheduler", "register_spec_type", "spec_fingerprint", "spec_types"]
