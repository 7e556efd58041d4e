"""``python -m manual_backprop`` is the ``manual-backprop`` command."""

from .cli import console_main

console_main()
