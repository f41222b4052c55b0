"""`python -m xtuner_nb.demo`: executes a notebook headless, keeps its outputs, prints the run's summary.

The real quickstart is executed by nbmake (notebooks/) and in the browser test; here a two-cell stand-in notebook
checks the demo's own machinery quickly: the executed copy is written (without the summary probe) and the summary
is read back from the kernel.
"""

from __future__ import annotations

import subprocess
import sys

import nbformat

STAND_IN = '''
import pandas as pd

class Run:
    history = pd.DataFrame({"step": [1, 2, 3], "loss/reduced_llm_loss": [7.5, 3.0, 0.5]})
    exp_dir = "work_dir/run"

trainer = Run()
DEMO_PROMPT = "What is your name?"
answer = "My name is Lumi."
print("stand-in ready")
'''


def test_demo_executes_notebook_and_prints_summary(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# stand-in"), nbformat.v4.new_code_cell(STAND_IN)]
    src = tmp_path / "01_quickstart.ipynb"
    nbformat.write(nb, src)
    out = subprocess.run([sys.executable, "-m", "xtuner_nb.demo", "--notebook", str(src), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "training: 3 steps, loss 7.500 -> 0.500" in out.stdout
    assert "answer: My name is Lumi." in out.stdout
    executed = nbformat.read(tmp_path / "out" / "01_quickstart.ipynb", as_version=4)
    assert len(executed.cells) == 2  # the summary probe is not saved into the tutorial
    assert "stand-in ready" in executed.cells[1].outputs[0]["text"]


def test_demo_reports_a_failing_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("raise ValueError('broken tutorial cell')")]
    src = tmp_path / "broken.ipynb"
    nbformat.write(nb, src)
    out = subprocess.run([sys.executable, "-m", "xtuner_nb.demo", "--notebook", str(src), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "broken tutorial cell" in out.stderr and "the demo stopped at a failing cell" in out.stderr
    assert (tmp_path / "out" / "broken.ipynb").exists()
