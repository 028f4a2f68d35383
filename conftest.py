"""Repository-root pytest hook: `pytest --nbval` (or `--nbval-lax`) from the root checks the notebooks too.

The default test paths are `tests/` only (unit and smoke tests); with an nbval flag and no paths given, the
notebooks are added, so the command users know for "do the notebooks still run" runs them. `make test`
passes explicit paths and is unchanged.
"""

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker (and per process it starts): two workers with two threads each on 2 cores run
    # many times slower than two with one. A test that sets its own thread count still does.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    wants_notebooks = config.getoption("nbval", default=False) or config.getoption("nbval_lax", default=False)
    if wants_notebooks and config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        config.args.append("notebooks")
