"""Root pytest hooks: keep each solution notebook's cells on one xdist worker (nbval runs them in one kernel)."""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("::", 1)[0].endswith(".ipynb"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
            item.add_marker(pytest.mark.slow)
