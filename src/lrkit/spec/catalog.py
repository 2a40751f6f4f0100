"""The catalog: every built-in schedule type, declared once.

Each record says what ``{"type": name, ...}`` builds with lrkit and with PyTorch (the oracle).
:func:`lrkit.spec.build_scheduler`, :func:`lrkit.spec.spec_types`, the schedule flags, ``lrkit preview``
and the alignment suite all read this one list; nothing else names the built-in types. Registration is
explicit: :data:`CATALOG` is registered by :mod:`lrkit.spec` itself, and
:func:`~lrkit.spec.registry.register_spec_type` adds a user's type beside it.
"""

from __future__ import annotations

from lrkit.schedulers import hf, llm, torch_compat
from lrkit.spec import clocked, groups
from lrkit.spec.registry import SpecType

__all__ = ["CATALOG"]

#: Every built-in spec type, in the order the help text lists them.
CATALOG: tuple[SpecType, ...] = (
    *(SpecType(name, getattr(torch_compat, name)) for name in torch_compat.__all__),
    *(
        SpecType(cls.__name__, cls, cls.torch_builder)
        for cls in (
            llm.WarmupConstant,
            llm.WarmupLinear,
            llm.WarmupCosine,
            llm.WarmupPolynomial,
            llm.WSD,
            llm.InverseSqrt,
            llm.CosineWithRestarts,
            llm.PureSchedule,
            hf.HFSchedule,
            groups.PerGroup,
            clocked.Clocked,
        )
    ),
)
