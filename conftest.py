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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups from the markers
def pytest_collection_modifyitems(config, items):
    """Groups for `pytest -n 2 --dist loadgroup` (what `make test` runs): the cells of every notebook form one
    group, run by one worker in order, as papermill runs them (later notebooks reuse the runs of earlier ones);
    each test file is a group of its own, so its module-scoped fixtures (a reference training run, a
    two-process launch) are built once, not once per worker."""
    for item in items:
        group = "notebooks" if item.nodeid.startswith("notebooks/") else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
