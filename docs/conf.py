"""Sphinx configuration: `make docs` = `sphinx-build -W -b html docs docs/_build/html` (warnings are errors)."""

project = "xtuner_nb"
author = "xtuner_nb contributors"
copyright = "2026, xtuner_nb contributors"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# `(label)=` targets and `[text](page.md#anchor)` links resolve across pages; headings up to h3 get anchors.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

html_theme = "alabaster"
html_title = "xtuner_nb"
html_theme_options = {"description": "Jupyter-first LLM SFT with the XTuner v1 Trainer API", "page_width": "1100px"}
