"""The packages form layers whose imports point down only, with no cycle.

Every import of every module of ``core``, ``adapters``, ``connector``, ``emulators`` and ``demo`` counts:
at the top of a module, inside a function, and under ``if TYPE_CHECKING:`` (a type-only import still
couples the two packages, and a cycle hidden there returns the day someone needs the name at run time).
Each module belongs to one node of the layer graph; an import from one node to another is an arrow,
and only these arrows may exist:

- ``core``: the bottom, importing no other node;
- ``adapters``, ``connector.channels`` and ``emulators``: ``core`` only;
- ``connector`` (all of it but ``connector.channels``): ``core``, ``adapters``, ``connector.channels``;
- ``demo``: anything (it sits on top).

The relay never imports ``emulators`` or ``demo``: it loads adapters through their entry points, and the
demo wraps the relay's web app rather than the relay knowing about the demo.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.paths import REPO

#: the project's top-level packages, each scanned for imports
PACKAGES = ("core", "adapters", "connector", "emulators", "demo")
#: every node of the layer graph
NODES = ("core", "adapters", "connector.channels", "emulators", "connector", "demo")
#: the arrows allowed between two different nodes: importer -> imported
ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("adapters", "core"),
    ("connector.channels", "core"),
    ("emulators", "core"),
    ("connector", "core"), ("connector", "adapters"), ("connector", "connector.channels"),
    *(("demo", node) for node in NODES if node != "demo"),
})


@dataclass(frozen=True)
class Import:
    """One import statement's target, and where it is written."""

    importer: str  # the importing module, dotted
    imported: str  # the imported module (or module.name for ``from module import name``), dotted
    where: str  # path:line, relative to the repository


@dataclass(frozen=True)
class Arrow:
    """An import from one node of the layer graph to another, with the import that makes it."""

    source: str
    target: str
    imported: Import


def node_of(module: str) -> str | None:
    """The layer node a dotted module name belongs to, or None for anything outside the project."""
    if module == "connector.channels" or module.startswith("connector.channels."):
        return "connector.channels"
    top = module.split(".", 1)[0]
    return top if top in PACKAGES else None


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module in ``path`` (a package's ``__init__.py`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(source: str, module: str, where: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import written anywhere in ``source`` (module level, functions, ``if TYPE_CHECKING:``).

    ``from package import name`` yields ``package.name``: ``name`` may be a submodule (``from connector
    import channels`` imports the ``connector.channels`` node). Relative imports are resolved against
    ``module``.
    """
    package = module if is_package else module.rpartition(".")[0]
    statements = [node for node in ast.walk(ast.parse(source, filename=where))
                  if isinstance(node, ast.Import | ast.ImportFrom)]
    for node in sorted(statements, key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, f"{where}:{node.lineno}")
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            yield Import(module, base if alias.name == "*" else f"{base}.{alias.name}", f"{where}:{node.lineno}")


def project_imports(root: Path = REPO) -> list[Import]:
    """Every import in every ``.py`` file of the project's packages."""
    found: list[Import] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            where = str(path.relative_to(root))
            found += imports_in(path.read_text(encoding="utf-8"), module_name(path, root), where,
                                is_package=path.name == "__init__.py")
    return found


def arrows(found: Iterable[Import]) -> list[Arrow]:
    """The imports that cross from one node of the layer graph to another."""
    crossing = []
    for imported in found:
        source, target = node_of(imported.importer), node_of(imported.imported)
        if source is not None and target is not None and source != target:
            crossing.append(Arrow(source, target, imported))
    return crossing


def forbidden(found: Iterable[Arrow]) -> list[str]:
    """One line per arrow that is not in :data:`ALLOWED`, naming the file and line of the import."""
    return [f"{a.imported.where}: {a.imported.importer} imports {a.imported.imported} ({a.source} -> {a.target})"
            for a in found if (a.source, a.target) not in ALLOWED]


def cycles(found: Iterable[Arrow]) -> list[list[str]]:
    """The cycles of the node graph, each as the list of its nodes (the first repeated at the end)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for arrow in found:
        graph[arrow.source].add(arrow.target)
    seen: set[tuple[str, ...]] = set()
    result: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                # one report per cycle, whichever node the walk entered it by
                turn = cycle.index(min(cycle))
                key = tuple(cycle[turn:] + cycle[:turn])
                if key not in seen:
                    seen.add(key)
                    result.append([*key, key[0]])
            else:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return result


def _example(*edges: tuple[str, str]) -> list[Arrow]:
    """Arrows made from fabricated ``(importer, imported)`` modules, as if written in ``example.py``."""
    return arrows(Import(importer, imported, f"example.py:{line}")
                  for line, (importer, imported) in enumerate(edges, start=1))


# -- the project ------------------------------------------------------------------------------------


def test_every_arrow_between_the_layers_points_down() -> None:
    wrong = forbidden(arrows(project_imports()))
    assert not wrong, "imports that break the layers (see this test's docstring for the rules):\n" + "\n".join(wrong)


def test_the_layers_have_no_cycle() -> None:
    found = arrows(project_imports())
    where = {(a.source, a.target): a.imported.where for a in found}
    described = [" -> ".join(cycle) + "  (" + ", ".join(where[(a, b)] for a, b in itertools.pairwise(cycle))
                 + ")" for cycle in cycles(found)]
    assert not described, "import cycles between the layers:\n" + "\n".join(described)


def test_the_connector_package_itself_imports_nothing_of_the_project() -> None:
    """Python runs ``connector/__init__.py`` before any module of ``connector.channels``: an import there
    would be one the channels make too, whatever their own imports say."""
    found = [i for i in project_imports() if i.importer == "connector" and node_of(i.imported) is not None]
    assert not found, [f"{i.where}: {i.imported}" for i in found]


def test_the_scan_sees_the_arrows_the_project_is_built_on() -> None:
    """Were the scan to miss imports, the tests above would pass on nothing: these arrows exist."""
    pairs = {(a.source, a.target) for a in arrows(project_imports())}
    for expected in (("connector", "core"), ("connector", "connector.channels"), ("connector", "adapters"),
                     ("adapters", "core"), ("connector.channels", "core"),
                     ("demo", "connector"), ("demo", "emulators")):
        assert expected in pairs, expected


# -- the checker itself, on fabricated imports -------------------------------------------------------


def test_the_checker_names_a_forbidden_arrow_with_its_file_and_line() -> None:
    found = _example(("connector.app", "core.settings"), ("connector.app", "emulators.server"),
                     ("core.models", "connector.logs"))
    assert forbidden(found) == [
        "example.py:2: connector.app imports emulators.server (connector -> emulators)",
        "example.py:3: core.models imports connector.logs (core -> connector)",
    ]


def test_the_checker_tells_the_channels_from_the_rest_of_the_connector() -> None:
    found = _example(("connector.channels", "connector.runtime.Runtime"), ("connector.outbox", "connector.channels"),
                     ("connector.channels.whatsapp", "connector.channels.base"))
    assert [(a.source, a.target) for a in found] == [("connector.channels", "connector"),
                                                     ("connector", "connector.channels")]
    assert forbidden(found) == ["example.py:1: connector.channels imports connector.runtime.Runtime "
                                "(connector.channels -> connector)"]
    assert cycles(found) == [["connector", "connector.channels", "connector"]]


def test_the_checker_finds_a_longer_cycle_once() -> None:
    found = _example(("core.a", "adapters.b"), ("adapters.b", "emulators.c"), ("emulators.c", "core.d"),
                     ("emulators.c", "core.e"))
    assert cycles(found) == [["adapters", "emulators", "core", "adapters"]]
    assert cycles(_example(("demo.a", "connector.b"), ("connector.b", "core.c"))) == []


def test_imports_are_found_in_functions_under_type_checking_and_relative() -> None:
    source = "\n".join([
        "from typing import TYPE_CHECKING",
        "import core.keys",
        "if TYPE_CHECKING:",
        "    from connector.runtime import Runtime",
        "def f() -> None:",
        "    from emulators import server",
        "from . import parts",
        "from ..bot import engine",
    ])
    found = [(i.imported, i.where) for i in imports_in(source, "connector.channels.whatsapp", "x.py")]
    assert found == [("typing.TYPE_CHECKING", "x.py:1"), ("core.keys", "x.py:2"), ("connector.runtime.Runtime", "x.py:4"),
                     ("emulators.server", "x.py:6"), ("connector.channels.parts", "x.py:7"),
                     ("connector.bot.engine", "x.py:8")]
    package = [i.imported for i in imports_in("from . import base", "adapters", "x.py", is_package=True)]
    assert package == ["adapters.base"]


def test_the_scan_of_a_tree_reports_each_wrong_import_at_its_line(tmp_path: Path) -> None:
    files = {
        "core/__init__.py": "",
        "core/models.py": "from __future__ import annotations\n\ndef f() -> None:\n    from adapters import base\n",
        "adapters/__init__.py": "from core import models\n",
        "connector/__init__.py": "",
        "connector/channels/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import connector.runtime\n",
        "connector/runtime.py": "from connector.channels import client_for\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    found = arrows(project_imports(tmp_path))
    assert forbidden(found) == [
        "core/models.py:4: core.models imports adapters.base (core -> adapters)",
        "connector/channels/__init__.py:3: connector.channels imports connector.runtime (connector.channels -> connector)",
    ]
    assert sorted(cycles(found)) == [["adapters", "core", "adapters"],
                                     ["connector", "connector.channels", "connector"]]
