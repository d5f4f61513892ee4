"""Errors a user can cause.

Anything raised as :class:`UserError` is caught by the command line and printed as one line
(``error: <message>``) with exit status 2, never as a traceback. The message must say what is
wrong and what to do about it.
"""


class UserError(Exception):
    """Bad input from the user: a path, a file, a flag or a configuration."""


def one_line(error: BaseException) -> str:
    """``error``'s message as the one line the command line prints.

    A ``UserError`` raised inside a DataLoader worker reaches the main process re-raised by torch
    with the worker's whole traceback as its message ("Caught UserError in DataLoader worker
    process 0. Original Traceback ..."); only the original message at its end is kept.
    """
    text = str(error)
    if text.startswith(f"Caught {UserError.__name__} "):
        head, sep, original = text.rpartition(f"{UserError.__module__}.{UserError.__qualname__}: ")
        if sep:
            text = original
    return " ".join(text.split())


def shorten(value: object, limit: int = 40) -> str:
    """``value`` quoted for a message: its ``repr`` (control characters escaped), cut after ``limit``
    characters with the full length named, so a message never echoes more than a short excerpt of input."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(str(value)):,} characters)"
