"""Sphinx configuration for the rnnlab API reference (``make docs`` -> build/api/index.html).

Builds offline: no intersphinx, the bundled alabaster theme, MathJax loaded by the browser.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

project = "rnnlab"
author = "rnnlab contributors"
copyright = "rnnlab contributors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# Google-style sections, plus ``Shape:`` as a generic section: a heading over the docstring's own
# torch-style bullet list (``- input: (N, T, D) ...``), which "params_style" would mangle.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = ["Shape"]

autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
nitpicky = False

html_theme = "alabaster"
html_title = "rnnlab API reference"
html_static_path: list[str] = []
exclude_patterns = ["_build"]
