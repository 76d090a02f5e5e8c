"""The layers of the package, read from the source with ``ast`` (no third-party tool).

Every ``import`` of an ``appliance`` module counts, wherever it sits (module level, inside a
function, under ``TYPE_CHECKING``): an arrow that climbs back up is a layer violation even
when it is only needed for a type. Rules (issue #11, ``docs/architecture.md``):

* no import cycle between packages (``appliance.X`` <-> ``appliance.Y``, also through others),
  nor between the modules of one package;
* nothing under ``appliance/edge`` imports ``appliance.matcher`` (shared rules live in
  ``appliance.matching``);
* only ``appliance.evaluation`` itself, ``appliance.bench`` and the command line import
  ``appliance.evaluation``: the runtime never depends on the evaluation harness;
* only ``appliance.web`` itself and the command line import ``appliance.web``: the console
  sits on top of the library, never under it;
* only ``appliance.compliance`` itself and the command line import ``appliance.compliance``:
  the self-check report reads the site, nothing reads it;
* ``appliance.i18n`` (the message catalogs, floor 0) imports no other ``appliance`` module;
* no module over 400 lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "appliance"
MAX_LINES = 400
EVALUATION_USERS = ("appliance.evaluation", "appliance.bench", "appliance.cli")
WEB_USERS = ("appliance.web", "appliance.cli")
COMPLIANCE_USERS = ("appliance.compliance", "appliance.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, known: set[str] | None = None) -> set[str]:
    """Every ``appliance`` module or package named by an import in ``path``. ``from P import
    name`` counts as an import of the module ``P.name`` when that is a module in ``known``
    (``from appliance import paths``), else of ``P``; without ``known`` both are listed."""
    module = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, path.name == "__init__.py")
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if known is None:
                    found.update((target, submodule) if alias.name != "*" else (target,))
                else:
                    found.add(submodule if submodule in known else target)
    return {name for name in found if name == "appliance" or name.startswith("appliance.")}


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """module -> the modules (and packages) of ``appliance`` it imports."""
    known = modules()
    graph = {}
    for name, path in known.items():
        graph[name] = {target for target in imports_of(path, set(known)) if target in known and target != name}
    return graph


def package_of(module: str) -> str:
    """``appliance.X`` for anything under ``appliance/X`` (a top-level module is its own)."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for source, targets in graph.items():
        if source == "appliance":
            continue
        edges = out.setdefault(package_of(source), set())
        edges.update(package_of(t) for t in targets if t != "appliance" and package_of(t) != package_of(source))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _arrows(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """The module imports that make up a package cycle, for the failure message."""
    members = set(component)
    return sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                  if package_of(source) in members and package_of(target) in members
                  and package_of(source) != package_of(target))


# -- the tool itself ---------------------------------------------------------------------

def test_cycle_finder_finds_cycles_and_only_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"b"}}) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}) == [["a", "b"], ["c", "d"]]


def test_imports_are_read_wherever_they_are(tmp_path):
    source = tmp_path / "appliance" / "x" / "m.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import appliance.a.b\n"
        "from appliance import c\n"
        "if TYPE_CHECKING:\n    from appliance.d import e\n"
        "def f():\n    from appliance.g.h import i\n    from . import sibling\n",
        encoding="utf-8")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = imports_of(source)
    finally:
        ROOT = saved
    assert {"appliance.a.b", "appliance.c", "appliance.d", "appliance.d.e", "appliance.g.h",
            "appliance.x", "appliance.x.sibling"} <= found


# -- the rules -----------------------------------------------------------------------------

def test_no_cycle_between_packages():
    graph = import_graph()
    found = cycles(package_graph(graph))
    assert not found, "import cycles between packages:\n" + "\n".join(
        " <-> ".join(c) + "\n    " + "\n    ".join(_arrows(graph, c)) for c in found)


def test_no_cycle_between_modules():
    """Inside a package too (``security.audit`` <-> ``security.masking`` was one)."""
    found = cycles(import_graph())
    assert not found, "import cycles between modules:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_edge_does_not_import_the_matcher():
    bad = sorted(f"{source} -> {target}" for source, targets in import_graph().items()
                 if package_of(source) == "appliance.edge"
                 for target in targets if package_of(target) == "appliance.matcher")
    assert not bad, "the edge imports the matcher (shared rules belong in appliance.matching):\n" + "\n".join(bad)


def test_only_evaluation_bench_and_cli_import_evaluation():
    bad = sorted(f"{source} -> {target}" for source, targets in import_graph().items()
                 if package_of(source) not in EVALUATION_USERS
                 for target in targets if package_of(target) == "appliance.evaluation")
    assert not bad, "runtime modules import the evaluation harness:\n" + "\n".join(bad)


def test_only_the_command_line_imports_the_web_console():
    bad = sorted(f"{source} -> {target}" for source, targets in import_graph().items()
                 if package_of(source) not in WEB_USERS
                 for target in targets if package_of(target) == "appliance.web")
    assert not bad, "modules below the console import it:\n" + "\n".join(bad)


def test_only_the_command_line_imports_the_compliance_report():
    bad = sorted(f"{source} -> {target}" for source, targets in import_graph().items()
                 if package_of(source) not in COMPLIANCE_USERS
                 for target in targets if package_of(target) == "appliance.compliance")
    assert not bad, "modules below the compliance report import it:\n" + "\n".join(bad)


def test_access_rules_sit_on_floor_3():
    """``appliance.access`` (pure rules, like ``matching``) is used by the matcher and the door
    alike, so it imports nothing above floor 2."""
    above = ("appliance.matching", "appliance.liveness", "appliance.matcher", "appliance.edge", "appliance.ops",
             "appliance.web", "appliance.evaluation", "appliance.bench", "appliance.compliance", "appliance.cli",
             "appliance.site")
    bad = sorted(f"{source} -> {target}" for source, targets in import_graph().items()
                 if package_of(source) == "appliance.access"
                 for target in targets if package_of(target) in above)
    assert not bad, "the access rules import a room above floor 2:\n" + "\n".join(bad)


def test_no_module_over_400_lines():
    long = sorted(f"{name}: {n} lines" for name, path in modules().items()
                  if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES)
    assert not long, f"modules over {MAX_LINES} lines:\n" + "\n".join(long)


def test_message_catalogs_sit_on_the_ground_floor():
    bad = sorted(f"{source} -> {target}" for source, targets in import_graph().items()
                 if package_of(source) == "appliance.i18n"
                 for target in targets if package_of(target) != "appliance.i18n")
    assert not bad, "appliance.i18n (floor 0) imports the floors above it:\n" + "\n".join(bad)
