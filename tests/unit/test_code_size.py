"""Product modules stay small enough to read: issue 12's bounds, kept by a test so they do not creep back.

No product module over 600 lines; no function over 80 lines unless its docstring says why
("Long because ..." / "Long for ..."). Tests and benchmarks are not product code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("src/refit", "flows", "tasks", "deployments", "refit_cli", "schemas")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
REASON = re.compile(r"\bLong (because|for)\b")


def _modules() -> list[Path]:
    found = sorted(p for folder in PRODUCT for p in (ROOT / folder).rglob("*.py"))
    assert len(found) > 50, found  # the walk found the product, not an empty folder
    return found


def test_no_product_module_is_over_600_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert long == {}, f"split these along their subjects: {long}"


def test_no_function_is_over_80_lines_without_a_reason_in_its_docstring() -> None:
    unexplained = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and not REASON.search(ast.get_docstring(node) or ""):
                    unexplained.append(f"{path.relative_to(ROOT)}::{node.name} ({lines} lines)")
    assert unexplained == [], unexplained
