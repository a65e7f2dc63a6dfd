"""ARCHITECTURE.md's floors, held to the code: every import of an imagerec module, at the top of a file or inside
a function, goes to its own floor or one below; modules stay short; no import cycle among a floor's modules."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "imagerec"
# Bottom to top, as ARCHITECTURE.md draws them. The server and the exports are one floor (neither imports the other).
FLOORS = [{"errors", "fileio", "machine", "backends", "lazy"}, {"data"}, {"models"}, {"artefacts"}, {"evaluation"},
          {"training"}, {"export", "serve", "diagnosis"}, {"workflows"}, {"cli", "__main__", "__init__"}]
MAX_LINES, MAX_FUNCTION_LINES = 400, 40


def _room(module: str) -> str:
    """The floor name of a dotted module under imagerec ("data" for imagerec.data.images)."""
    return module.split(".")[1] if "." in module else "__init__"


def _floor(module: str) -> int:
    return next(index for index, rooms in enumerate(FLOORS) if _room(module) in rooms)


def _modules() -> dict:
    """{dotted name: parsed tree} of every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "imagerec"] = ast.parse(path.read_text())
    return found


def _imports(tree) -> set:
    """The imagerec modules a module imports (`from imagerec.x import y` counts as imagerec.x.y when that exists)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imagerec"):
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("imagerec"))
    return names


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name != "imagerec"))
def test_a_module_imports_only_its_own_floor_and_those_below(module):
    upward = [name for name in _imports(MODULES[module]) if name in MODULES and name != "imagerec"
              and _floor(name) > _floor(module)]
    assert not upward, f"{module} (floor {_floor(module)}) imports {upward}"


def test_no_import_cycle():
    graph = {name: {imported for imported in _imports(tree) if imported in MODULES and imported != name}
             for name, tree in MODULES.items()}
    visiting, done = set(), set()

    def visit(name, path):
        assert name not in visiting, f"import cycle: {' -> '.join([*path, name])}"
        if name in done:
            return
        visiting.add(name)
        for imported in graph[name]:
            if not (name.startswith(imported + ".") or imported.startswith(name + ".")):  # a package and its rooms
                visit(imported, [*path, name])
        visiting.discard(name)
        done.add(name)

    for name in graph:
        visit(name, [])


def test_no_module_is_long_and_no_function_is_longer_than_a_screen():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        assert source.count("\n") <= MAX_LINES, f"{path.name}: {source.count(chr(10))} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno < MAX_FUNCTION_LINES, f"{path.name}: {node.name}"


def test_every_room_says_what_it_holds():
    for package in sorted(path.parent for path in PACKAGE.rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert docstring, f"{package.name}/__init__.py has no docstring"
        for module in package.glob("*.py"):
            assert module.stem == "__init__" or module.stem in docstring or package == PACKAGE, \
                f"{package.name}/__init__.py does not say what {module.stem} holds"
