"""`pytest --nbval-lax` from the repository root collects the notebooks (root conftest.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collected(*args):
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    return [line for line in out.splitlines() if "::" in line]


def test_bare_nbval_checks_the_notebooks():
    items = collected("--nbval-lax")
    assert any(i.startswith("notebooks/02_table1.ipynb::") for i in items)
    assert any(i.startswith("tests/") for i in items)  # the unit tests still run


def test_explicit_paths_are_respected():
    assert not any(i.startswith("notebooks/") for i in collected("--nbval-lax", "tests/test_stats.py"))
