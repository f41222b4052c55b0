"""`await alaunch(config, 2)` in a real JupyterLab (headless Chromium): the dashboard of a 2-rank run draws live in
the cell with each rank's figures, and its Stop button, clicked mid-run, makes both ranks save one checkpoint and
the cell return, with no process left (issue 26). Screenshots go to build/screenshots/ (XTUNER_NB_SCREENSHOT_DIR).
"""

from __future__ import annotations

import json
import time

import nbformat
import pytest

from tests.jupyterlab import browser_page
from tests.notebook.test_browser import SHOTS, _out, _run_cell, _shot, _step
from tests.notebook.test_launch_kernel import SETUP, _gone

pytestmark = [pytest.mark.browser, pytest.mark.slow]
psutil = pytest.importorskip("psutil")

TOTAL_STEPS = 400
LAUNCH = (f'from xtuner_nb.train import alaunch\nrun = await alaunch(cfg("lab", total_step={TOTAL_STEPS}), 2)\n'
          'print("LAUNCH_RETURNED", json.dumps({"step": run.state.step, "reason": run.end_reason, '
          '"pids": sorted(run.pids), "ckpts": sorted(p.name for p in run.exp_dir.glob("checkpoints/ckpt-step-*"))}))')


@pytest.fixture
def lab(jupyterlab):
    folder = jupyterlab.root / "launch"
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SETUP + 'print("READY")'), nbformat.v4.new_code_cell(LAUNCH)]
    nbformat.write(nb, folder / "launch.ipynb")
    return jupyterlab.url("launch/launch.ipynb")


def test_stop_button_of_a_two_rank_launch_clicked_in_jupyterlab(lab):
    with browser_page(SHOTS / "launch_failure.png") as page:
        result, seconds = _drive(page, lab)
    print(f"stopped at step {result['step']} {seconds:.1f} s after the click: {result}")
    assert result["reason"] == "stopped" and 0 < result["step"] < TOTAL_STEPS
    assert result["ckpts"] == [f"ckpt-step-{result['step']}"]
    assert len(result["pids"]) >= 3 and not _gone(result["pids"])


def _drive(page, lab: str):
    page.goto(lab)
    page.wait_for_function("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
                           "?.status === 'idle'")
    no_news = page.get_by_role("button", name="No")
    if no_news.count():
        no_news.first.click()
    _run_cell(page, 0)
    _out(page.locator(".jp-Cell").nth(0), "READY").wait_for()
    _step("launch 2 ranks")
    _run_cell(page, 1)
    cell = page.locator(".jp-Cell").nth(1)
    stop = cell.locator("button", has_text="Stop")
    stop.wait_for()
    cell.locator(".jp-OutputArea-output img").wait_for(timeout=300_000)
    _out(cell, "rank 1:").wait_for()
    assert stop.is_enabled()
    _shot(cell, "dashboard_launch_2ranks_running.png")
    _step("2-rank dashboard shown; click Stop")
    clicked = time.time()
    stop.click()
    _out(cell, "LAUNCH_RETURNED").wait_for()
    seconds = time.time() - clicked
    _out(cell, "(Stop button)").wait_for()
    _shot(cell, "dashboard_launch_2ranks_stopped.png")
    text = _out(cell, "LAUNCH_RETURNED").inner_text()
    return json.loads(text.split("LAUNCH_RETURNED", 1)[1].strip().splitlines()[0]), seconds
