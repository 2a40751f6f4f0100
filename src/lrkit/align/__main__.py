import sys

from lrkit.align.command import main

sys.exit(main())
