"""Root pytest hooks: mark solution notebooks run by nbval as slow (make test-fast skips them).

The Makefile runs them with `--dist loadfile`, which keeps each notebook's cells on one worker and kernel.
Hidden blocks of the harness form (first line `# harness`) are removed from the cells nbval runs: they run in
the grading harness, not in a kernel (the grading tests run them there).
"""

import pytest


def pytest_collection_modifyitems(config, items):
    from seglabs_grading.harness.runner import split_test_cell

    for item in items:
        if item.nodeid.split("::", 1)[0].endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)
            cell = getattr(item, "cell", None)
            split = split_test_cell(cell.source) if cell is not None and cell.cell_type == "code" else None
            if split is not None:
                cell.source = split[0]
