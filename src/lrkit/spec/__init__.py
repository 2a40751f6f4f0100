"""Layer 3, schedules as data: the catalog of schedule types, ``build_scheduler`` and ``to_spec``.

A spec is ``{"type": <name>, <argument>: <value>, ...}``; :func:`build_scheduler` turns it into a
scheduler (lrkit's, or PyTorch's own with ``backend="torch"``), and every lrkit scheduler gives its spec
back with ``to_spec()``. The built-in types are the records of :data:`lrkit.spec.catalog.CATALOG`;
:func:`register_spec_type` adds your own.
"""

from lrkit.spec.catalog import CATALOG
from lrkit.spec.from_flags import CliName, FlagReader
from lrkit.spec.registry import (
    Backend,
    SpecType,
    build_scheduler,
    register,
    register_spec_type,
    spec_class,
    spec_fingerprint,
    spec_record,
    spec_records,
    spec_types,
)

__all__ = [
    "Backend",
    "CATALOG",
    "CliName",
    "FlagReader",
    "SpecType",
    "build_scheduler",
    "register",
    "register_spec_type",
    "spec_class",
    "spec_fingerprint",
    "spec_record",
    "spec_records",
    "spec_types",
]

for _record in CATALOG:
    register(_record)
