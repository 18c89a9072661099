"""The mistakes a user can make, which the commands report in one line (``error: ...``, exit status 2).

Anything else is a bug and keeps its traceback: a ``ValueError`` or ``FileNotFoundError`` raised by
the code itself is not mistaken for a user's. Each class also derives from the built-in exception
a Python caller would expect (``except ValueError`` still catches a :class:`ConfigError`).
"""


class UserError(Exception):
    """A mistake the user can fix: the message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
    """A setting that cannot work: a wrong value or combination, or a device this machine lacks."""


class NotFoundError(UserError, FileNotFoundError):
    """A file or dataset the user named, or that a command needs, is not on disk."""
