"""`python -m handler ARGS` is `fh ARGS`."""

import sys

from .cli.main import main

sys.exit(main())
