"""The package's layers are a contract the suite checks, not a hope.

``pyproject.toml``'s ``[tool.importlinter]`` states them: data and the sweep
folder at the bottom, then what runs in a trial, the sweep file, reading
results, the driver, the command line; nothing imports upward and no
modules import each other in a cycle (import-linter checks both, lazy
imports inside functions included). No module reaches into another's
private names either (checked here from the source).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lrtune"


def test_import_contracts_hold():
    """lint-imports exits 0: every layer and the no-cycle contract are kept."""
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 kept, 0 broken" in run.stdout, run.stdout


def private_imports(source: str, module: str) -> list[str]:
    """``from lrtune.x import _name`` and ``x._name`` (x an lrtune module) in ``source``, as text.

    >>> private_imports("from lrtune.engine.sweep import _acquire", "lrtune.cli")
    ['lrtune.cli imports lrtune.engine.sweep._acquire']
    >>> private_imports("from lrtune.engine import sink\\nsink._rebuild", "lrtune.cli")
    ['lrtune.cli uses lrtune.engine.sink._rebuild']
    >>> private_imports("from lrtune.engine.sweep import run_sweep", "lrtune.cli")
    []
    """
    found = []
    modules: dict[str, str] = {}  # local name -> lrtune module it is bound to
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lrtune"):
            if node.module == module:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{module} imports {node.module}.{alias.name}")
                else:
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lrtune") and alias.asname:
                    modules[alias.asname] = alias.name
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{module} uses {modules[node.value.id]}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found += private_imports(path.read_text(), module)
    assert found == []
