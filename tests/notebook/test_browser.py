"""The dashboard in a real JupyterLab, in headless Chromium: the Stop button is clicked mid-run under `afit()`,
and is shown disabled with its hint under `fit()`. Screenshots go to build/screenshots/ (override with
XTUNER_NB_SCREENSHOT_DIR).

Needs Playwright for Python and Chromium (Debian: `apt-get install chromium`, or $CHROMIUM): skipped with the reason
when missing, a failure under CI=true. The JupyterLab server is shared with tests/browser (`tests/jupyterlab.py`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from tests.jupyterlab import browser_page
from tests.notebook.kernel_cells import tiny_trainer_cell

REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("XTUNER_NB_SCREENSHOT_DIR", REPO / "build" / "screenshots"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# afit() runs until the first dashboard frame shows (it may be step 350 on a fast, quiet machine); the sync fit()
# after it must still be running when the test interrupts the kernel, so the run is long enough for both
TOTAL_STEPS = 2000
SETUP = tiny_trainer_cell(pack_len=256, total_step=TOTAL_STEPS) + 'print("READY")\n'
AFIT = "await trainer.afit()\nprint('AFIT_RETURNED at step', trainer.cur_step)"
SYNC = ("import time\nfrom xtuner_nb.train.hooks.events import Hook\n\n"
        "class Slow(Hook):\n    def on_step_end(self, state, metrics, control):\n        time.sleep(0.3)\n\n"
        "trainer.hooks.append(Slow())\ntrainer.fit()")


@pytest.fixture
def lab(jupyterlab):
    """The dashboard notebook in its own folder of the shared JupyterLab (`tests/jupyterlab.py`)."""
    folder = jupyterlab.root / "dashboard"
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(AFIT), nbformat.v4.new_code_cell(SYNC)]
    nbformat.write(nb, folder / "dashboard.ipynb")
    return jupyterlab.url("dashboard/dashboard.ipynb")


def _run_cell(page, index: int) -> None:
    page.evaluate(f"""() => {{
        const app = window.jupyterapp;
        const panel = app.shell.currentWidget;
        panel.content.activeCellIndex = {index};
        app.commands.execute('notebook:run-cell');  // not awaited: resolves only when the cell ends
        return null;
    }}""")


def _out(cell, text: str):
    """The first output (not the source) of `cell` containing `text`."""
    return cell.locator(".jp-OutputArea-output").filter(has_text=text).first


def test_stop_button_clicked_mid_run_in_jupyterlab(lab):
    with browser_page(SHOTS / "failure.png") as page:
        stopped_at, seconds_to_stop = _drive(page, lab)
    (SHOTS / "README.json").write_text(json.dumps({"afit_stopped_at": stopped_at,
                                                   "seconds_from_click_to_stop": round(seconds_to_stop, 2)}))


def _shot(cell, name: str) -> None:
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=str(SHOTS / name))


def _step(msg: str) -> None:
    print(f"[browser {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _drive(page, lab: str):
    _step("open JupyterLab")
    page.goto(lab)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'")
    no_news = page.get_by_role("button", name="No")  # JupyterLab's "get notified about news?" toast
    if no_news.count():
        no_news.first.click()
    _step("kernel idle; build the Trainer")
    _run_cell(page, 0)
    _out(page.locator(".jp-Cell").nth(0), "READY").wait_for()
    _step("run afit()")

    # afit(): the button is live; click it once the curves are on screen
    _run_cell(page, 1)
    cell = page.locator(".jp-Cell").nth(1)
    stop = cell.locator("button", has_text="Stop")
    stop.wait_for()
    # the first frame of the curves: after two steps and two seconds of training (issue 31), later on a busy CPU
    cell.locator(".jp-OutputArea-output img").wait_for(timeout=420_000)
    assert stop.is_enabled()
    _step("first frame shown; screenshot, click Stop")
    _shot(cell, "dashboard_afit_running.png")
    clicked_at = time.time()
    stop.click()
    _out(cell, "(Stop button)").wait_for()
    _out(cell, "AFIT_RETURNED").wait_for()
    seconds_to_stop = time.time() - clicked_at
    progress = _out(cell, "(Stop button)").inner_text()
    _shot(cell, "dashboard_afit_stopped.png")
    returned = _out(cell, "AFIT_RETURNED").inner_text()
    stopped_at = int(returned.split("AFIT_RETURNED at step")[1].split()[0])
    assert 0 < stopped_at < TOTAL_STEPS and "saved checkpoint" in progress
    assert seconds_to_stop < 30

    _step(f"afit() stopped at step {stopped_at}, {seconds_to_stop:.1f} s after the click")
    # fit(): the button is drawn disabled, with the hint next to it; stop it with a kernel interrupt (■)
    _run_cell(page, 2)
    cell = page.locator(".jp-Cell").nth(2)
    stop = cell.locator("button", has_text="Stop")
    stop.wait_for()
    _out(cell, "Interrupt the kernel").wait_for()
    assert stop.is_disabled()
    cell.locator(".jp-OutputArea-output img").wait_for(timeout=120_000)
    _shot(cell, "dashboard_fit_running.png")
    _step("fit() running with a disabled button; interrupt the kernel")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:interrupt-kernel')")
    _out(cell, "interrupted (kernel interrupt)").wait_for()
    _shot(cell, "dashboard_fit_interrupted.png")
    return stopped_at, seconds_to_stop
