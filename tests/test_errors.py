from imagerec.errors import UserError, printable


def test_printable_escapes_what_could_drive_a_terminal_or_forge_a_line():
    assert printable("a\x1b[2Jb\nc\u202ed") == "a\\x1b[2Jb\\nc\\u202ed"
    assert printable("plain text, ünïcode") == "plain text, ünïcode"
    assert issubclass(UserError, Exception)
