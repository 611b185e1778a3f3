"""Import boundaries: the engine imports no web or database framework (design.md, "One engine"), and every
import inside the package points down (edges -> services -> adapters, core, store).

The layer checks read every module's source (imports inside functions and under TYPE_CHECKING included: a
deferred import is still a dependency), so they need no app and run in well under a second.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "labservice"

FORBIDDEN = ("flask", "marshmallow", "sqlalchemy", "flask_smorest", "werkzeug")

#: The composition root: it wires the edges together, so it alone may import the HTTP API.
COMPOSITION_ROOT = "labservice.app"
#: Leaves any layer may import: the version, and where the shipped rule tables are. They import nothing of
#: the package (a test checks), so they cannot carry an upward import in.
FOUNDATION = ("labservice", "labservice.rule_tables")
#: What the lower layers may import from the package (besides themselves and the version in `labservice`).
LOWER_LAYERS_MAY_IMPORT = {
    "labservice.core": ("labservice.core",),
    "labservice.adapters": ("labservice.adapters", "labservice.core", "labservice.config"),
    "labservice.store": ("labservice.store", "labservice.core", "labservice.config"),
}
#: The use cases (services; batch runs and keeps a CSV file) may import anything but the edges above them.
SERVICES = ("labservice.services", "labservice.batch")
EDGES = ("labservice.api", "labservice.dashboard", "labservice.cli", "labservice.mllp", "labservice.app")
#: The HTTP edge's request hooks: only the app factory (which registers them), the HTTP API and the dashboard
#: import them; services and everything below do not.
MIDDLEWARE = "labservice.middleware"
MIDDLEWARE_IMPORTERS = (COMPOSITION_ROOT, "labservice.api", "labservice.dashboard", MIDDLEWARE)
#: The allowed exceptions, each one module of the middleware and who may import it. The audit trail's
#: helpers record what a use case touched (the batch services name the batch and its patients) and the MLLP
#: listener writes its own audit rows; a new dashboard session gets a new CSRF token (security.users).
MIDDLEWARE_EXCEPTIONS = {
    "labservice.middleware.audit_trail": ("labservice.services", "labservice.mllp"),
    "labservice.middleware.csrf": ("labservice.security.users",),
}


def _within(module: str, packages: tuple[str, ...] | str) -> bool:
    return any(
        module == package or module.startswith(package + ".")
        for package in ((packages,) if isinstance(packages, str) else packages)
    )


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """The import statements under `if TYPE_CHECKING:` (names for annotations, not imported when run)."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(
                inner
                for statement in node.body
                for inner in ast.walk(statement)
                if isinstance(inner, ast.Import | ast.ImportFrom)
            )
    return found


def package_imports(package: Path = PACKAGE, *, type_checking: bool = True) -> dict[str, set[str]]:
    """module -> the labservice modules it imports (`from x import y` counts as x, and as x.y when that is a
    module), anywhere in its source; with `type_checking=False` without the imports made for annotations only.
    Alembic's migration scripts are run by Alembic, not imported."""
    modules = {module_name(path, package): path for path in package.rglob("*.py") if "migrations" not in path.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skipped = set() if type_checking else _type_checking_only(tree)
        for node in ast.walk(tree):
            if node in skipped:
                continue
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:  # relative: from its package
                    anchor = (
                        name.split(".")[: -node.level]
                        if path.name != "__init__.py"
                        else name.split(".")[: len(name.split(".")) - node.level + 1]
                    )
                    base = ".".join([*anchor, node.module])
                submodules = {f"{base}.{alias.name}" for alias in node.names} & modules.keys()
                imported.update(submodules)
                if len(submodules) < len(node.names):  # names defined in `base` itself
                    imported.add(base)
        graph[name] = {target for target in imported if _within(target, "labservice") and target != name}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points up, as 'importer -> imported: the rule it breaks'."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target in FOUNDATION:
                continue
            if (
                _within(target, "labservice.api")
                and not _within(module, "labservice.api")
                and module != COMPOSITION_ROOT
            ):
                found.append(f"{module} -> {target}: only the HTTP API (and {COMPOSITION_ROOT}) imports labservice.api")
            for layer, allowed in LOWER_LAYERS_MAY_IMPORT.items():
                if _within(module, layer) and not _within(target, allowed):
                    found.append(f"{module} -> {target}: {layer} imports only {', '.join(allowed)}")
            if (
                _within(target, MIDDLEWARE)
                and not _within(module, MIDDLEWARE_IMPORTERS)
                and not _within(module, MIDDLEWARE_EXCEPTIONS.get(target, ()))
            ):
                found.append(f"{module} -> {target}: only {', '.join(MIDDLEWARE_IMPORTERS)} import {MIDDLEWARE}")
            if _within(module, SERVICES) and _within(target, EDGES):
                found.append(f"{module} -> {target}: a service imports no edge (HTTP API, dashboard, CLI, MLLP)")
    return found


def import_cycles(graph: dict[str, set[str]], within: str) -> list[list[str]]:
    """The import cycles among the modules of one package (each as the list of its modules)."""
    nodes = {module for module in graph if _within(module, within)}
    edges = {module: sorted(target for target in graph[module] if target in nodes) for module in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return cycles


def test_core_interpret_imports_no_framework():
    code = (
        "import sys\n"
        "import labservice.core.interpret\n"
        f"print(','.join(name for name in {FORBIDDEN!r} if name in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert completed.stdout.strip() == ""


def test_every_import_points_down():
    assert upward_imports(package_imports()) == []


def test_the_foundation_imports_nothing_of_the_package():
    graph = package_imports()
    assert {module: graph[module] for module in FOUNDATION if graph[module]} == {}


def test_the_core_has_no_import_cycle():
    """No cycle when the code runs (an annotation may name a type of the module that calls it)."""
    assert import_cycles(package_imports(type_checking=False), "labservice.core") == []


# --- the checks themselves catch what they are for ----------------------------------------------------------


def _write_package(tmp_path: Path, sources: dict[str, str]) -> Path:
    package = tmp_path / "labservice"
    for name, source in sources.items():
        path = package.joinpath(*name.split(".")[1:]).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in [path.parent, *path.parent.parents]:
            if parent == tmp_path:
                break
            (parent / "__init__.py").touch()
        path.write_text(source, encoding="utf-8")
    return package


@pytest.mark.parametrize(
    ("importer", "source", "rule"),
    [
        (
            "labservice.middleware.audit_trail",
            "def f():\n    from labservice.api import current_database\n",
            "HTTP API",
        ),
        ("labservice.dashboard.views", "from labservice.api.batches import receive_upload\n", "HTTP API"),
        ("labservice.mllp", "from labservice.api.hl7v2 import SETTINGS_EXTENSION\n", "HTTP API"),
        ("labservice.adapters.hl7v2.receive", "from labservice.api.schemas import CBC_LIST_SCHEMA\n", "HTTP API"),
        (
            "labservice.adapters.hl7v2.receive",
            "from labservice.service import keep_in\n",
            "labservice.adapters imports",
        ),
        (
            "labservice.adapters.fhir.reader",
            "import labservice.middleware.audit_trail\n",
            "labservice.adapters imports",
        ),
        ("labservice.store.repository", "from labservice.dashboard import views\n", "labservice.store imports"),
        (
            "labservice.store.repository",
            "from labservice.security.principal import touched_patients\n",
            "labservice.store imports",
        ),
        ("labservice.core.render", "from labservice.adapters.errors import InputError\n", "labservice.core imports"),
        ("labservice.core.delta", "from labservice.store import models\n", "labservice.core imports"),
        ("labservice.services.batch_upload", "from labservice.dashboard.views import not_found\n", "no edge"),
        (
            "labservice.services.batch_upload",
            "from labservice.middleware.idempotency import x\n",
            "import labservice.middleware",
        ),
        (
            "labservice.security.keys",
            "from labservice.middleware.audit_trail import x\n",
            "import labservice.middleware",
        ),
    ],
)
def test_an_upward_import_is_found(tmp_path, importer, source, rule):
    imported = (
        "labservice.api.schemas",
        "labservice.api.batches",
        "labservice.api.hl7v2",
        "labservice.service",
        "labservice.middleware.audit_trail",
        "labservice.security.principal",
        "labservice.dashboard.views",
        "labservice.adapters.errors",
        "labservice.store.models",
        "labservice.middleware.idempotency",
    )
    package = _write_package(tmp_path, {**dict.fromkeys(imported, ""), importer: source})
    found = upward_imports(package_imports(package))
    assert found and all(line.startswith(f"{importer} -> ") for line in found)
    assert any(rule in line for line in found)


def test_downward_imports_and_the_composition_root_pass(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "labservice.app": "from labservice.api import register_api\n",
            "labservice.api.interpretations": "from labservice.service import keep_in\nfrom labservice.api import x\n",
            "labservice.dashboard.views": "from labservice.extensions import current_database\n",
            "labservice.services.batch_upload": "from labservice.batch.keep import save_batch\n"
            "from labservice.middleware.audit_trail import touched_batch\n",
            "labservice.api.batches": "from labservice.middleware.idempotency import idempotent\n",
            "labservice.adapters.json_cbc": "from labservice.core.units import UnitError\n"
            "from labservice import config\n",
            "labservice.store.repository": "from labservice.core.delta import delta_findings\n",
            "labservice.core.render": "from labservice.core.ruleset import Ruleset\n",
            "labservice.api.__init__": "",
            "labservice.service": "",
            "labservice.extensions": "",
            "labservice.batch.keep": "",
            "labservice.core.units": "",
            "labservice.config": "",
            "labservice.core.delta": "",
            "labservice.core.ruleset": "",
            "labservice.middleware.audit_trail": "",
            "labservice.middleware.idempotency": "",
        },
    )
    assert upward_imports(package_imports(package)) == []


def test_a_units_ruleset_cycle_is_found(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "labservice.core.units": "class UnitTable:\n    def add(self):\n"
            "        from labservice.core.ruleset import RulesetError\n",
            "labservice.core.ruleset": "from labservice.core.units import UnitTable\n",
            "labservice.core.table": "from labservice.core.units import UnitTable\n",
        },
    )
    assert import_cycles(package_imports(package, type_checking=False), "labservice.core") == [
        ["labservice.core.ruleset", "labservice.core.units"]
    ]


def test_a_name_imported_for_annotations_only_makes_no_cycle(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "labservice.core.interpret": "from labservice.core.urgency import overall_urgency\n",
            "labservice.core.urgency": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from labservice.core.interpret import InterpretationTable\n",
        },
    )
    assert import_cycles(package_imports(package, type_checking=False), "labservice.core") == []
    assert import_cycles(package_imports(package), "labservice.core") == [
        ["labservice.core.interpret", "labservice.core.urgency"]
    ]
