"""``python -m tinyir ...``: the same command line as the ``tinyir`` script, wherever the package imports."""

import sys

from tinyir.cli import main

sys.exit(main())
