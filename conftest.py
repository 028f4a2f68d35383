"""Repository-root pytest hook: `pytest --nbval` (or `--nbval-lax`) from the root checks the notebooks too.

The default test paths are `tests/` only (unit and smoke tests); with an nbval flag and no paths given, the
notebooks are added, so the command users know for "do the notebooks still run" runs them. `make test`
passes explicit paths and is unchanged.
"""

import pytest


def pytest_configure(config):
    wants_notebooks = config.getoption("nbval", default=False) or config.getoption("nbval_lax", default=False)
    if wants_notebooks and config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        config.args.append("notebooks")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`), every notebook cell goes to one worker,
    in collection order: the notebooks run one after another, in their order, as papermill runs them
    (later ones reuse the runs of earlier ones); the other worker takes the tests meanwhile."""
    for item in items:
        if item.nodeid.startswith("notebooks/"):
            item.add_marker(pytest.mark.xdist_group("notebooks"))
