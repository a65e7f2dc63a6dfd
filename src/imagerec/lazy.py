"""The lazy exports of a package's `__init__` (PEP 562): a name is imported from its room on first use, so that
importing a package (the CLI's `imagerec.data`, `imagerec.serve`) costs nothing until a name is asked for."""

import importlib


def exports(package: str, rooms: dict):
    """A module `__getattr__` for `package` that returns `rooms[name]`'s attribute `name` (a module of
    `package`), imported when first asked for."""
    def __getattr__(name):
        if name not in rooms:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{rooms[name]}"), name)

    return __getattr__
