"""The one exception type for errors a user can cause (bad files, shapes, values, configurations).

The CLI prints its message as a single line and exits non-zero. Messages say what was wrong, where,
and, when it is not obvious, what to do.
"""


class GxnorError(ValueError):
    """A user-visible error: one clear line, no traceback."""
