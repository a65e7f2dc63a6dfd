"""The one exception type for mistakes a user can fix.

Library functions raise `UserError` for bad input (a missing file, a corrupt model, a nonsense option);
the CLI prints its message as one line and exits 2. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user; the message says what is wrong and what to do."""


def printable(text) -> str:
    """`text` with control and other invisible characters escaped (`\\x1b`, `\\n`, `\\u202e`).

    File names and class names come from users' data and models; printed raw, an escape sequence in one
    could drive the terminal, and a newline could forge a line of output.
    """
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(text))
