"""Sphinx configuration for the xenpy documentation (built with -W: warnings are errors)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "xenpy"
author = "the xenpy authors"
copyright = "2026, the xenpy authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
    "xenpy_abi_tables",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
autodoc_member_order = "bysource"
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]
