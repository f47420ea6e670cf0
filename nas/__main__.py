"""`python -m nas` is the `nas` command."""

import sys

from .cli import main

sys.exit(main())
