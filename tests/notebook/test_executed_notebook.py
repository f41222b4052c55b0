"""A real kernel (nbclient, as nbmake runs notebooks): the saved notebook keeps the dashboard's final frame."""

import base64
import hashlib
import textwrap

import nbformat
import pytest

pytest.importorskip("nbclient")

FEED_EVENTS = textwrap.dedent("""
    import hashlib, math, time
    from xtuner_nb.notebook.dashboard import LiveDashboard
    from xtuner_nb.train.events import Control, TrainState

    dash = LiveDashboard(min_interval=0.2, max_overhead=0.5)  # a generous budget: several frames in 1.5 s
    state, control = TrainState(total_step=30), Control()
    dash.on_fit_begin(state, control)
    for s in range(1, 31):
        state.step, state.elapsed = s, s * 0.05
        r = {"step": s, "lr": 1e-4, "grad_norm": 1.0, "loss/reduced_llm_loss": 3 * math.exp(-s / 10),
             "runtime_info/tgs": 1000.0}
        state.history.append(r)
        dash.on_step_end(state, r, control)
        time.sleep(0.05)
    dash.on_fit_end(state, "finished", control)
""")


def _execute(nb, tmp_path):
    from nbclient import NotebookClient

    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(tmp_path)}}).execute()
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)  # what is saved on disk


def test_saved_notebook_holds_final_frame_as_png_and_html(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(FEED_EVENTS),
        nbformat.v4.new_code_cell("print(hashlib.sha256(dash.last_png).hexdigest(), dash.stats['draws'])"),
        nbformat.v4.new_code_cell("from xtuner_nb.notebook.plots import plot_history\nplot_history(state.history)"),
        nbformat.v4.new_code_cell("from xtuner_nb.notebook.forms import config_form\n"
                                  "from xtuner_nb.model import Qwen3Dense8BConfig\n"
                                  "form = config_form(Qwen3Dense8BConfig(num_hidden_layers=16))\nform"),
    ]
    saved = _execute(nb, tmp_path)
    outputs = saved.cells[0].outputs
    # exactly: the button row (widget), the progress line, the curves; no output per step
    assert len(outputs) == 3, [o.get("data", {}).keys() for o in outputs]
    assert "application/vnd.jupyter.widget-view+json" in outputs[0].data
    progress = outputs[1].data["text/html"]
    assert "finished" in progress and "<b>30</b>/30" in progress
    png = base64.b64decode(outputs[2].data["image/png"])
    sha, draws = saved.cells[1].outputs[0].text.split()
    assert hashlib.sha256(png).hexdigest() == sha  # the final frame, not an earlier one
    assert int(draws) >= 2
    # trainer.plot()'s figure shows once, as a PNG
    figs = [o for o in saved.cells[2].outputs if "image/png" in o.get("data", {})]
    assert len(figs) == 1
    # the form: a live widget plus a static code preview for viewers without widgets (GitHub)
    form_out = saved.cells[3].outputs[0].data
    assert "application/vnd.jupyter.widget-view+json" in form_out
    assert "Qwen3Dense8BConfig(num_hidden_layers=16)" in form_out["text/html"]
    assert saved.metadata.get("widgets"), "widget state is stored in the notebook"
