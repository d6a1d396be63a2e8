"""The one exception type that means "the user gave us something we can't use".

The CLI prints it as a one-line error and exits non-zero; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Bad input (missing file, wrong format, mismatched artifact); message is shown as-is."""
