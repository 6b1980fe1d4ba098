"""`python -m utilegen`: the command line (`utilegen.cli`)."""

import sys

from .cli import main

sys.exit(main())
