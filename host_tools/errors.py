"""The one error type for mistakes a user can fix (bad path, bad key, bad value).

The CLI prints such an error as one line on stderr and exits with status 2; every other
exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; the message names the thing and the fix in one line."""
