"""User-facing errors.

A `UserError` carries one sentence that says what was wrong and what is accepted. The CLI prints it
without a traceback and exits with status 2; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user (flag, config value, file); the message is shown as is."""
