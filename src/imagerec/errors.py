"""The one exception type for mistakes a user can fix.

Library functions raise `UserError` for bad input (a missing file, a corrupt model, a nonsense option);
the CLI prints its message as one line and exits 2. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user; the message says what is wrong and what to do."""
