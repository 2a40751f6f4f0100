"""Layer 1, schedule math: pure functions of the step, with no torch (numpy and the standard library only).

* :mod:`lrkit.schedules.shapes`: the schedule shapes, their composition and the Hugging Face factors
  (re-exported here: ``lrkit.schedules.WarmupCosine`` and friends);
* :mod:`lrkit.schedules.torch_formulas`: PyTorch's scheduler formulas, in closed form and as recurrences;
* :mod:`lrkit.schedules.clock`: time in steps, tokens and samples, and the conversions between them;
* :mod:`lrkit.schedules.batch`: a batch-size ramp on the token clock and its LR scaling rule;
* :mod:`lrkit.schedules.codec`: every schedule type as plain data and back (``schedule_from_dict``, re-exported).
"""

from lrkit.schedules.codec import schedule_from_dict, schedule_types
from lrkit.schedules.shapes import *  # noqa: F403
from lrkit.schedules.shapes import __all__ as _shapes_all

__all__ = [*_shapes_all, "schedule_from_dict", "schedule_types"]
