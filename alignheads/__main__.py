"""`python -m alignheads` runs the command line (as the `alignheads` script does)."""

import sys

from .cli.commands import main

sys.exit(main())
