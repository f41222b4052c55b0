"""Checkpoints and exports: one checkpoint folder's format (`folder.py`), the run folder and when to save
(`run_dir.py`), HF and GGUF exports (`export.py`)."""
