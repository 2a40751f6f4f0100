"""``python -m lrkit.train`` / ``torchrun --nproc_per_node N -m lrkit.train``: the same flags as ``lrkit train``."""

import sys

from lrkit.train.command import main

if __name__ == "__main__":
    sys.exit(main())
