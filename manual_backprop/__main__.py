"""``python -m manual_backprop`` is the ``manual-backprop`` command."""

import sys

from .cli import main

sys.exit(main())
