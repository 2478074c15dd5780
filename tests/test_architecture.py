"""The shape of the `ingest` package, read from its source with `ast` (nothing is imported).

- No import cycle among `ingest` modules. An import inside a function counts: it only defers
  the cycle to run time, the two modules still depend on each other. Imports under
  `if TYPE_CHECKING:` do not count: they never run.
- No module imports a private name (`_x`) from another: what a module shares is public.
- Every import inside a function says why it is not at the top of its module, with a
  `# lazy: <reason>` comment on its line or alone on the line above (a heavy module kept out
  of `ingest --help`, an optional extra, a decoder only the worker process needs...).
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "ingest"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


@dataclass(frozen=True)
class Imported:
    module: str  # the importing module
    target: str  # the ingest module imported
    line: int
    names: tuple[str, ...] = ()  # for `from target import a, b`


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under `root` (the package `package`)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every import statement at any depth (functions, classes, try, if), except the body
    of an `if TYPE_CHECKING:` block."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts.pop()  # a module's relative imports start from its package
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports(known: dict[str, Path]) -> list[Imported]:
    """Each import of a known module by a known module. `from pkg import name` imports `pkg`,
    and also `pkg.name` when that is a module."""
    out = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _import_nodes(tree):
            if isinstance(node, ast.Import):
                out += [Imported(module, a.name, node.lineno) for a in node.names
                        if a.name in known]
                continue
            base = _base(module, path.name == "__init__.py", node)
            names = tuple(a.name for a in node.names)
            if base in known and base != module:  # a package's `from . import sub`
                out.append(Imported(module, base, node.lineno, names))
            out += [Imported(module, f"{base}.{n}", node.lineno) for n in names
                    if f"{base}.{n}" in known]
    return out


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """For every edge that lies on a cycle, the shortest cycle through it, each cycle once
    (rotated to start at its smallest module). Together they show every dependency that
    would have to go to break all the cycles."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    found = set()
    for a, b in sorted(edges):
        path = _shortest_path(graph, b, a)
        if path is None:
            continue
        ring = [a, *path[:-1]]  # a -> b -> ... (back to a)
        i = ring.index(min(ring))
        found.add(tuple(ring[i:] + ring[:i]))
    return [[*ring, ring[0]] for ring in sorted(found, key=lambda r: (len(r), r))]


def _shortest_path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    came: dict[str, str | None] = {start: None}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        if node == goal:
            path = [node]
            while came[path[-1]] is not None:
                path.append(came[path[-1]])
            return path[::-1]
        for nxt in sorted(graph.get(node, ())):
            if nxt not in came:
                came[nxt] = node
                todo.append(nxt)
    return None


def private_imports(found: list[Imported]) -> list[str]:
    return sorted(f"{i.module} (line {i.line}): from {i.target} import {name}"
                  for i in found for name in i.names
                  if name.startswith("_") and not (name.startswith("__") and name.endswith("__")))


LAZY = "# lazy:"


def function_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement inside a function body (at any depth), in source order."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.update((id(n), n) for n in _import_nodes(node))
    return sorted(found.values(), key=lambda n: n.lineno)


def unexplained_lazy_imports(known: dict[str, Path], base: Path) -> list[str]:
    """`path:line module` for each import inside a function that has no `# lazy:` comment on
    its first line or alone on the line above. `path` is relative to `base`."""
    out = []
    for module, path in known.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in function_imports(ast.parse("\n".join(lines), filename=str(path))):
            line, above = lines[node.lineno - 1], lines[node.lineno - 2] if node.lineno > 1 else ""
            if LAZY in line or above.strip().startswith(LAZY):
                continue
            if isinstance(node, ast.Import):
                names = ", ".join(a.name for a in node.names)
            else:
                names = _base(module, path.name == "__init__.py", node)
            out.append(f"{path.relative_to(base).as_posix()}:{node.lineno} {names}")
    return out


def test_no_import_cycles():
    found = imports(modules(ROOT, PACKAGE))
    rings = cycles({(i.module, i.target) for i in found})
    assert not rings, "import cycles among ingest modules (in-function imports count):\n" + \
        "\n".join(" -> ".join(ring) for ring in rings)


def test_no_private_names_imported_across_modules():
    bad = private_imports(imports(modules(ROOT, PACKAGE)))
    assert not bad, "private names imported from another module (make them public or move " \
        "them):\n" + "\n".join(bad)


def test_every_import_in_a_function_says_why():
    bad = unexplained_lazy_imports(modules(ROOT, PACKAGE), ROOT.parent)
    assert not bad, "imports inside functions without a `# lazy: <reason>` comment on their " \
        "line or the line above (move each to the top of its module unless it must wait):\n" + \
        "\n".join(bad)


# the checker itself, on a small made-up package -------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return modules(tmp_path / "pkg", "pkg")


def test_checker_counts_imports_in_functions_and_skips_type_checking(tmp_path):
    known = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "def f():\n    from pkg.b import g\n",
        "b.py": "from pkg import c\ndef g(): pass\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.b\n"
                "else:\n    import os\nimport pkg.a\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n",
        "sub/__init__.py": "from . import e\n",
        "sub/e.py": "from .. import sub\n",
    })
    found = imports(known)
    edges = {(i.module, i.target) for i in found}
    assert ("pkg.b", "pkg") in edges and ("pkg.b", "pkg.c") in edges
    assert ("pkg.c", "pkg.b") not in edges and ("pkg.d", "pkg.a") not in edges
    assert cycles(edges - {("pkg.b", "pkg")}) == [
        ["pkg.sub", "pkg.sub.e", "pkg.sub"],
        ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_checker_finds_private_names_wherever_imported(tmp_path):
    known = _package(tmp_path, {
        "__init__.py": "__version__ = '1'\n",
        "a.py": "_x = 1\nY = 2\n",
        "b.py": "from pkg import __version__\nfrom pkg.a import Y\n"
                "def f():\n    from pkg.a import Y, _x\n    from .a import _x as z\n",
    })
    assert private_imports(imports(known)) == ["pkg.b (line 4): from pkg.a import _x",
                                               "pkg.b (line 5): from pkg.a import _x"]


def test_checker_wants_a_lazy_comment_on_each_import_in_a_function(tmp_path):
    known = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "import os\n"
                "def f():\n"
                "    import json  # lazy: a reason\n"
                "    # lazy: another reason\n"
                "    from . import b\n"
                "    import csv  # no reason\n"
                "    from pkg.b import g\n"
                "    class C:\n"
                "        def m(self):\n"
                "            import zlib\n",
        "b.py": "def g():\n    pass\n",
    })
    assert unexplained_lazy_imports(known, tmp_path) == [
        "pkg/a.py:6 csv", "pkg/a.py:7 pkg.b", "pkg/a.py:10 zlib"]
