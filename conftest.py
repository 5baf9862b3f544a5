"""Root pytest hooks: mark solution notebooks run by nbval as slow (make test-fast skips them).

The Makefile runs them with `--dist loadfile`, which keeps each notebook's cells on one worker and kernel.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("::", 1)[0].endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)
