"""The one base class of the errors a user can fix: bad input, missing files, an unusable model.

The CLI prints these as one line (``Error: ...``) with exit status 1, never a traceback; so it does
with ``OSError``, Java, out-of-memory and CUDA errors, and anything else is reported as an internal
error (a bug) in one line too, its traceback logged at DEBUG (``cli/app.py``). Each subclass also
derives from the matching built-in (``ValueError``, ``FileNotFoundError``...), so library users can
catch either.
"""


class UserError(Exception):
    """An error whose message tells the user what to fix."""


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError`` of a path the user gave: ``<path>: <reason>``."""
    return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)


class RerankError(UserError, ValueError):
    """Inputs that do not fit together (a run query without topic text, ...)."""
