"""The one exception a user can cause.

Every mistake in a user's input (a file, an option, an array handed to the
Python API) raises :class:`InputError` with one line that says what is wrong
and where. The command line prints that line and exits with code 2.
"""


class InputError(ValueError):
    """The input is wrong: unreadable, inconsistent, or outside what the maths allows."""
