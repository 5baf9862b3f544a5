"""A student's kernel, as on Colab or a JupyterHub image: the Jupyter server and grading packages cannot be imported.

Python imports this file at start-up when this folder is on ``PYTHONPATH``. With ``SEGLAB_BLOCK_IMPORTS`` set
(comma-separated top-level names) every import of those names raises ``ModuleNotFoundError``. ``make test`` runs
the solution notebooks under nbval this way (``SEGLAB_BLOCK_IMPORTS=nbgrader,jupyterlab,jupyter_server,notebook``),
so a lab that needs the grading stack or a Jupyter server in its kernel fails there, not on a student's machine.
"""

import os
import sys

BLOCKED = frozenset(
    name.strip() for name in os.environ.get("SEGLAB_BLOCK_IMPORTS", "").split(",") if name.strip()
)


class BlockImports:
    """A ``sys.meta_path`` finder that refuses the blocked packages and lets everything else through."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(
                f"No module named {name!r} (blocked by SEGLAB_BLOCK_IMPORTS: a student's kernel may not have it)",
                name=name,
            )
        return None


if BLOCKED:
    sys.meta_path.insert(0, BlockImports())
