"""`python -m edge` = `mnv1-edge`."""

import sys

from edge.cli import main

sys.exit(main())
