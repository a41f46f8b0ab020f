"""The layering holds: the core and the schemas never pull in Prefect; imports point down."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import refit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a fresh Python process
def test_core_never_imports_prefect() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(refit.__path__, "refit.") if not m.name.endswith("__main__"))
    assert "refit.validation" in modules and "refit.io.s3" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r} + ['schemas.churn']:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print(len(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "0", out.stdout + out.stderr


@pytest.mark.slow  # a fresh Python process
def test_import_contracts() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(declared)} kept, 0 broken" in out.stdout
