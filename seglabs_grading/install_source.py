"""Where students install the course from: one setting, written into every released setup cell.

The instructor sets it once in ``nbgrader_config.py``::

    c.StampInstallSource.source = "git+https://github.com/me/my-course@2026"     # a git repository
    c.StampInstallSource.source = "https://me.github.io/course/seglabs-0.1.0-py3-none-any.whl"   # a wheel
    c.StampInstallSource.source = "--extra-index-url https://pypi.example.org/simple seglabs==0.1.0"  # an index

``nbgrader generate_assignment`` (and ``course release``) then runs :class:`StampInstallSource` first, which
writes the matching ``pip install`` arguments into the line ``SEGLABS_SOURCE = ""`` of each notebook's setup
cell (``tests/setup_cell.py``). The source notebooks in ``solutions/`` keep the empty line, so they stay the
standard cell, and ``labs/`` stays exactly what a fresh generation makes of them. The value travels inside the
notebook, so it also works on Colab, where a notebook is uploaded alone. Unset (empty), the released cell tells
students to ask for the install line instead of failing in pip.
"""

from __future__ import annotations

import re
import shlex

from nbgrader.preprocessors import NbGraderPreprocessor
from packaging.requirements import InvalidRequirement, Requirement
from traitlets import Unicode

PROJECT = "seglabs"
PLACEHOLDER = 'SEGLABS_SOURCE = ""'
_ARCHIVE = (".whl", ".tar.gz", ".zip")


def pip_arguments(source: str) -> str:
    """The ``pip install`` arguments (shell-quoted) for an install source; ``""`` for an unset source.

    Accepts a git URL (``git+https://...``), the URL of a wheel or sdist, a requirement naming ``seglabs``
    (``seglabs @ URL``, ``seglabs==0.1``), or pip options for an index followed by an optional requirement.
    """
    source = source.strip()
    if not source:
        return ""
    if source.startswith("-"):
        args = shlex.split(source)
        if not any(_names_project(a) for a in args if not a.startswith("-")):
            args.append(PROJECT)
        return shlex.join(args)
    if source.startswith("git+") or (source.startswith(("https://", "http://", "file://")) and
                                     source.split("?")[0].split("#")[0].endswith(_ARCHIVE)):  # fmt: skip
        source = f"{PROJECT} @ {source}"
    try:
        requirement = Requirement(source)
    except InvalidRequirement as exc:
        raise ValueError(
            f"StampInstallSource.source={source!r} is not a git URL, a wheel URL, a requirement naming "
            f"{PROJECT!r} or pip index options ({exc})"
        ) from None
    if requirement.name != PROJECT:
        raise ValueError(
            f"StampInstallSource.source={source!r} installs {requirement.name!r}, not {PROJECT!r}"
        )
    # PEP 508 allows "name@url" without spaces: one shell word, readable in the released cell.
    return shlex.quote(str(requirement).replace(" @ ", "@"))


def _names_project(arg: str) -> bool:
    try:
        return Requirement(arg).name == PROJECT
    except InvalidRequirement:
        return False


def stamp(cell_source: str, source: str) -> str:
    """The setup cell's source with the install source written into its ``SEGLABS_SOURCE = ""`` line."""
    args = pip_arguments(source)
    if not args:
        return cell_source
    if len(re.findall(rf"^{re.escape(PLACEHOLDER)}$", cell_source, re.M)) != 1:
        raise ValueError(
            f"the setup cell has no single line {PLACEHOLDER!r} to write the install source into"
        )
    return re.sub(
        rf"^{re.escape(PLACEHOLDER)}$", lambda _: f"SEGLABS_SOURCE = {args!r}", cell_source, flags=re.M
    )


class StampInstallSource(NbGraderPreprocessor):
    """Write ``source`` into the setup cell of every generated notebook (runs before nbgrader's own steps)."""

    source = Unicode(
        "", help="where students pip-install the course from; empty: they ask the instructor"
    ).tag(config=True)

    def preprocess(self, nb, resources):
        if not pip_arguments(self.source):
            return nb, resources
        cells = [c for c in nb.cells if c.cell_type == "code" and PLACEHOLDER in c.source.splitlines()]
        if len(cells) != 1:
            name = resources.get("unique_key", "notebook")
            raise ValueError(
                f"{name}: expected one setup cell with the line {PLACEHOLDER!r}, found {len(cells)}"
            )
        cells[0].source = stamp(cells[0].source, self.source)
        return nb, resources
