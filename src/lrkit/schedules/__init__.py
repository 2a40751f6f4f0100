"""Layer 1, schedule math: pure functions of the step, with no torch (numpy and the standard library only).

* :mod:`lrkit.schedules.shapes`: the schedule shapes, their composition and the Hugging Face factors
  (re-exported here: ``lrkit.schedules.WarmupCosine`` and friends);
* :mod:`lrkit.schedules.torch_formulas`: PyTorch's scheduler formulas, in closed form and as recurrences;
* :mod:`lrkit.schedules.clock`: time in steps, tokens and samples, and the conversions between them.
"""

from lrkit.schedules.shapes import *  # noqa: F403
from lrkit.schedules.shapes import __all__ as __all__
