"""The standard first code cell of every lab (see docs/authoring.md); tests check each lab uses it verbatim.

A new lab copies ``SETUP_CELL`` as its second cell (``tools/nbbuild.py`` and docs/authoring.md point here). The
cell is locked and needs no edit per course: the release (``nbgrader generate_assignment``, ``course release``)
writes the instructor's install source into the line ``SEGLABS_SOURCE = ""`` of the released copy
(``seglabs_grading.install_source``, configured in ``nbgrader_config.py``).
"""

SETUP_CELL = """\
# Setup: run this cell first. It checks that this kernel has the course package `helpers` and, on Google Colab,
# installs it (about a minute). SEGLABS_SOURCE is filled in by your instructor's release: do not edit it.
import importlib.util
import os
import sys

SEGLABS_SOURCE = ""

if importlib.util.find_spec("helpers") is None:
    if "google.colab" not in sys.modules and os.environ.get("SEGLAB_INSTALL") != "1":
        print('This kernel lacks the course package `helpers`: choose the kernel "Python (seglabs)" '
              "(Kernel > Change Kernel...) and run this cell again. Not in the list? Run `make kernel` in "
              "the course folder, or ask your instructor. To install the course into this kernel instead, "
              "run `%env SEGLAB_INSTALL=1` in a new cell, then this cell again.")
    elif not SEGLABS_SOURCE:
        print("This notebook does not say where to install the course package from (its release has no "
              "install source). Ask your instructor for the course's pip install line, run it in a new cell "
              "(`%pip install ...`), then run this cell again.")
    else:
        %pip install --quiet {SEGLABS_SOURCE}
        importlib.invalidate_caches()
"""
