"""`make docs` must keep working: Sphinx + myst-parser with warnings as errors (what `make docs` runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sphinx_builds_without_warnings(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                          str(ROOT / "docs"), str(tmp_path / "html")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    for lang in ("en", "zh_cn"):
        for page in ("install", "quickstart", "trainer", "dataset", "checkpoints", "multi_gpu", "lora", "benchmarks",
                     "xtuner_compat"):
            assert (tmp_path / "html" / lang / f"{page}.html").exists(), f"{lang}/{page} not built"
