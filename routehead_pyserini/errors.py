"""The one base class of the errors a user can fix: bad input, missing files, an unusable model.

The CLI prints these as one line (``Error: ...``) with exit status 1, never a traceback; anything
else is a bug and keeps its traceback. Each subclass also derives from the matching built-in
(``ValueError``, ``FileNotFoundError``...), so library users can catch either.
"""


class UserError(Exception):
    """An error whose message tells the user what to fix."""


class RerankError(UserError, ValueError):
    """Inputs that do not fit together (a run query without topic text, ...)."""
