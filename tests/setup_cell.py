"""The standard first code cell of every lab (see docs/authoring.md); tests check each lab uses it verbatim."""

SETUP_CELL = """\
# Setup: run this cell first. In the course's own environment it does nothing; on Colab or a
# JupyterHub image without the course package it installs `helpers` (about a minute).
import importlib.util

if importlib.util.find_spec("helpers") is None:
    %pip install --quiet "seglabs @ git+https://github.com/seglabs/seglabs"
"""
