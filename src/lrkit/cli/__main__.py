import sys

from lrkit.cli import main

sys.exit(main())
