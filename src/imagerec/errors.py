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


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most `limit` characters), or its type's name: what a
    library's long error says first is what a one-line message can quote."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def size_text(size_bytes: int) -> str:
    """A byte count as people read it: 1.5 GB, 12.0 MB, 3.2 kB, 512 bytes."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} bytes"
