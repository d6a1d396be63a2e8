"""The one exception type that means "the user gave us something we can't use". Shared by every stage.

Raised by indexing, finetune, rag and ui alike (it sits at the bottom of the import order, with
indexing/runtime.py, the other piece every stage shares). ui/cli.py prints it as a one-line error
and exits with code 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input (missing file, wrong format, mismatched artifact); message is shown as-is."""
