"""Errors a user can cause.

Anything raised as :class:`UserError` is caught by the command line and printed as one line
(``error: <message>``) with exit status 2, never as a traceback. The message must say what is
wrong and what to do about it.
"""


class UserError(Exception):
    """Bad input from the user: a path, a file, a flag or a configuration."""
