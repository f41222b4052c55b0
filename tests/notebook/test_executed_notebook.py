"""A real kernel (nbclient, as nbmake runs notebooks): the saved notebook keeps the dashboard's final frame."""

import base64
import json
import hashlib
import textwrap

import nbformat
import pytest

from tests.notebook.kernel_cells import tiny_trainer_cell

pytest.importorskip("nbclient")

FEED_EVENTS = textwrap.dedent("""
    import hashlib, math, time
    from xtuner_nb.notebook.dashboard import LiveDashboard
    from xtuner_nb.train.hooks.events import Control, TrainState

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

    # what `make demo` saves: the final frame and the form's static preview, without widget views and their state
    from xtuner_nb.demo import without_widget_state

    size = len(nbformat.writes(saved))
    without_widget_state(saved)
    assert "widgets" not in saved.metadata and "widget-view" not in nbformat.writes(saved)
    assert [sorted(o.data) for o in saved.cells[0].outputs] == [["text/html", "text/plain"], ["image/png", "text/plain"]]
    assert "Qwen3Dense8BConfig(num_hidden_layers=16)" in saved.cells[3].outputs[0].data["text/html"]
    assert len(nbformat.writes(saved)) < size


BUILD_TRAINER = tiny_trainer_cell(pack_len=128, total_step=6) + textwrap.dedent("""
    from xtuner_nb.notebook.dashboard import LiveDashboard
    dash = LiveDashboard(trainer)  # kept in a variable so the cell below can press its button
    trainer.hooks.append(dash)
""")

# the click arrives through the event loop while afit() yields, as a browser click's comm message does
AFIT_WITH_CLICK = textwrap.dedent("""
    import asyncio

    async def press_stop_after_step(n):
        while trainer.cur_step < n or dash.button is None or dash.button.disabled:
            await asyncio.sleep(0)  # look again after every step
        dash.button.click()

    await asyncio.gather(trainer.afit(), press_stop_after_step(2))
    print("STOPPED_AT", trainer.cur_step)
""")


# the button while a synchronous fit() runs: disabled, with the hint (read by a hook during the run)
SYNC_FIT = textwrap.dedent("""
    from xtuner_nb.train.hooks.events import Hook

    class Peek(Hook):
        def on_step_end(self, state, metrics, control):
            seen.add((dash.button.disabled, "Interrupt the kernel" in dash.hint.value))

    seen = set()
    trainer.hooks.append(Peek())
    trainer.fit()
    print("FINISHED_AT", trainer.cur_step, "SYNC_BUTTON", sorted(seen))
""")


def test_real_fit_then_afit_stop_button_in_a_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(BUILD_TRAINER),
                nbformat.v4.new_code_cell(AFIT_WITH_CLICK),
                nbformat.v4.new_code_cell(SYNC_FIT),
                nbformat.v4.new_code_cell("trainer.plot()")]
    saved = _execute(nb, tmp_path)

    def outputs(cell):
        return {k: o for o in cell.outputs for k in o.get("data", {})}, "".join(
            o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    # building the Trainer logs INFO lines: on stdout in a kernel (stderr is painted red), nothing on stderr
    streams = {}
    for o in saved.cells[0].outputs:
        if o.output_type == "stream":
            streams[o.name] = streams.get(o.name, "") + o.text
    assert "[INFO] exp_dir:" in streams.get("stdout", ""), streams
    assert "stderr" not in streams, streams["stderr"][:2000]

    data, text = outputs(saved.cells[1])
    stopped_at = int(text.split("STOPPED_AT")[1].split()[0])
    assert 2 <= stopped_at <= 3
    progress = [o.data["text/html"] for o in saved.cells[1].outputs if "text/html" in o.get("data", {})]
    assert any("stopped" in p and "(Stop button)" in p and "saved checkpoint" in p for p in progress), progress
    assert "image/png" in data  # the final frame of the stopped run

    data, text = outputs(saved.cells[2])
    assert "FINISHED_AT 6" in text
    progress = [o.data["text/html"] for o in saved.cells[2].outputs if "text/html" in o.get("data", {})]
    assert any("finished" in p and "<b>6</b>/6" in p for p in progress)
    assert "image/png" in data
    assert "[INFO] Epoch" not in text  # the dashboard replaces the per-step log lines
    assert any("image/png" in o.get("data", {}) for o in saved.cells[3].outputs)
    assert "SYNC_BUTTON [(True, True)]" in text  # disabled, hint shown, during the whole sync fit()
    assert "Done" in json.dumps(saved.metadata["widgets"])  # the button's final state is saved
