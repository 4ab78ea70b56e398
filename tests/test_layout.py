"""The report package's imports point one way (harden/report/__init__.py draws the layers)."""
import ast
from pathlib import Path

import harden

LAYERS = {
    "stats": 0, "examples": 0, "gate": 0, "compare_render": 0, "craft_size": 0, "provenance": 0, "trained_budget": 0,
    "compare": 1, "checks": 1, "by_class": 1, "ci_output": 1,
    "model": 2, "budget": 2, "curves": 2, "metrics": 2, "normalisation": 2, "input_size": 2, "preflight": 3,
    "runner": 3, "html_page": 3,
    "render": 4, "release": 4,
}
PACKAGE = Path(harden.__file__).parent / "report"


def _imports(path: Path) -> set[str]:
    """Modules of the package that `path` imports (`from .x import`, `from . import x`), at any depth."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
    return out


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


def test_imports_point_down():
    upward = [(p.stem, m) for p in PACKAGE.glob("*.py") if p.stem != "__init__" for m in _imports(p)
              if LAYERS[m] >= LAYERS[p.stem]]
    assert upward == []


def test_the_flat_modules_are_gone():
    root = PACKAGE.parent
    gone = {"evaluate", "masking", "curves", "examples", "gate", "report_io", "html_report", "compare", "stats",
            "budget", "ci_output", "compare_render"}
    assert not [p.name for p in root.glob("*.py") if p.stem in gone]
