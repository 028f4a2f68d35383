"""`pytest --nbval-lax` from the repository root collects the notebooks (root conftest.py).

The bare command runs in a subprocess (the hook acts at pytest's configure time) over this file only, so it does
not import every test module: its paths come from the ini `testpaths`, here narrowed with `-o testpaths=...`,
which pytest treats like the pyproject value (the hook keys on where the paths came from). The explicit-path case
calls the hook itself with that origin.
"""

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = "tests/test_nbval_hook.py"


def collected(*args):
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    return [line for line in out.splitlines() if "::" in line]


def test_bare_nbval_checks_the_notebooks():
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert ini["testpaths"] == ["tests"]  # a bare `pytest --nbval-lax` collects the tests ...
    items = collected("--nbval-lax", "-o", f"testpaths={HERE}")
    assert any(i.startswith("notebooks/02_table1.ipynb::") for i in items)  # ... and the notebooks
    assert any(i.startswith(f"{HERE}::") for i in items)  # the testpaths still run


def configured(args_source, args, **options):
    """`config.args` after the root conftest's `pytest_configure` on a config with these paths and options."""
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    config = SimpleNamespace(args=list(args), args_source=args_source,
                             getoption=lambda name, default=None: options.get(name, default))
    hook.pytest_configure(config)
    return config.args


def test_explicit_paths_are_respected():
    source = pytest.Config.ArgsSource
    assert configured(source.ARGS, [HERE], nbval_lax=True) == [HERE]  # paths given: no notebooks added
    assert configured(source.ARGS, [HERE], nbval=True) == [HERE]
    assert configured(source.TESTPATHS, ["tests"], nbval=True) == ["tests", "notebooks"]
    assert configured(source.TESTPATHS, ["tests"]) == ["tests"]  # no nbval flag: the tests only
