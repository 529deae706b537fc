"""`python -m vlm_demo`: the command line in `vlm_demo.cli`."""

import sys

from vlm_demo.cli import main

sys.exit(main())
