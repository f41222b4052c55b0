"""The quickstart in a real JupyterLab, driven in Debian's Chromium through Playwright, as a learner runs it.

JupyterLab starts headless on localhost with a fresh root dir, workspace dir and settings dir (so nothing from
the user's setup leaks in), the test opens `notebooks/en/01_quickstart.ipynb`, runs all cells from the Run menu and
waits for the last cell. Then it checks what the learner must see: the config form, the training dashboard's
image, its progress line and its Stop button, and no error output. Screenshots go to build/screenshots/.

Needs /usr/bin/chromium (Debian package `chromium`; `.ci/run` installs it) or $CHROMIUM; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "en" / "01_quickstart.ipynb"
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
TOKEN = "xtuner-nb-browser-test"
RUN_TIMEOUT_S = 1200  # the whole notebook; about 2-4 minutes on 2 CPU cores

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium; or set $CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python) is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings: Path) -> None:
    """Render every cell (no virtual scrolling, so off-screen outputs exist in the page) and fetch no news."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                            "checkForUpdates": False},
    }
    for rel, value in files.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture
def jupyterlab(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)  # runs write work_dir/ next to the notebook: keep them in tmp
    _write_settings(tmp_path / "settings")
    port = _free_port()
    env = dict(os.environ)
    # this environment's kernelspec first ("python3" = this interpreter), a private config dir, and one
    # intra-op thread for the tiny model (see notebooks/conftest.py)
    env["JUPYTER_PATH"] = os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"),
                                           *filter(None, [env.get("JUPYTER_PATH")])])
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--allow-root", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
         "--ServerApp.port_retries=0"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"JupyterLab did not start:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, root, tmp_path / "jupyterlab.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _cell_with(page, text: str):
    """The notebook cell whose source contains `text` (JupyterLab renders the source in CodeMirror lines)."""
    return page.locator(".jp-Notebook .jp-Cell").filter(has=page.locator(".jp-InputArea", has_text=text)).first


def test_quickstart_runs_in_jupyterlab_and_shows_form_dashboard_and_stop(jupyterlab):
    from playwright.sync_api import sync_playwright

    base, root, server_log = jupyterlab
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={TOKEN}", wait_until="domcontentloaded")
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
            # the kernel from the notebook's kernelspec (no "Select Kernel" dialog), idle before we start
            page.locator(".jp-Toolbar-kernelName", has_text="Python 3").first.wait_for(timeout=120_000)
            _wait_kernel_idle(page, 120)

            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            # while `await trainer.afit()` runs: a live (enabled) Stop button above the updating dashboard
            fit_cell = _cell_with(page, "await trainer.afit()")
            stop = fit_cell.locator(".jp-OutputArea button", has_text="Stop")
            stop.first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
            deadline = time.time() + 120
            while not stop.first.is_enabled() and time.time() < deadline:  # enabled once afit() is running
                time.sleep(0.5)
            assert stop.first.is_enabled(), "the Stop button is drawn but not live during afit()"
            fit_cell.locator(".jp-OutputArea img").first.wait_for(timeout=300_000)
            fit_cell.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "quickstart_running.png"))

            _wait_all_cells_done(page, RUN_TIMEOUT_S)

            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
            assert errors.count() == 0, f"a cell failed:\n{errors.first.inner_text()[:3000]}"

            # the config form: a widget with the TrainerConfig's fields and the code preview
            form_cell = _cell_with(page, "form = config_form(")
            form_out = form_cell.locator(".jp-OutputArea .jupyter-widgets").first
            form_out.wait_for(timeout=30_000)
            assert form_cell.locator(".jp-OutputArea", has_text="total_step").count() > 0
            assert form_cell.locator(".jp-OutputArea input").count() > 5, "the form shows no input fields"
            form_cell.evaluate("cell => cell.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(SHOTS / "quickstart_form.png"))

            # the final dashboard of `await trainer.afit()`: the button (now "Done"), progress line, curves image
            out = fit_cell.locator(".jp-OutputArea")
            button = out.locator("button")
            assert button.count() == 1 and "Done" in button.first.inner_text(), "no Stop/Done button after the run"
            progress = out.locator("progress")
            assert progress.count() >= 1, "no progress line in the training cell"
            line = progress.first.locator("xpath=..").inner_text()
            assert "120" in line and "step" in line, f"unexpected progress line: {line!r}"
            image = out.locator("img").first
            assert image.count() == 1, "no dashboard image in the training cell"
            width = image.evaluate("img => img.naturalWidth")
            assert width > 200, f"dashboard image not rendered (naturalWidth {width})"

            fit_cell.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "quickstart.png"))
            fit_cell.screenshot(path=str(SHOTS / "quickstart_dashboard.png"))
        finally:
            browser.close()


def _wait_kernel_idle(page, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    status = page.locator(".jp-Notebook-ExecutionIndicator")
    while time.time() < deadline:
        if status.count() and status.first.get_attribute("data-status") == "idle":
            return
        time.sleep(0.5)
    raise AssertionError("the kernel never became idle")


def _wait_all_cells_done(page, timeout_s: float) -> None:
    """Every code cell has an execution count ("[n]:"), none is queued or running ("[*]:"), kernel idle."""
    prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt")
    deadline = time.time() + timeout_s
    time.sleep(2)
    while time.time() < deadline:
        texts = prompts.all_inner_texts()
        if texts and all(t.strip().startswith("[") and t.strip()[1:-2].isdigit() for t in texts):
            status = page.locator(".jp-Notebook-ExecutionIndicator")
            if not status.count() or status.first.get_attribute("data-status") == "idle":
                return
        time.sleep(2)
    raise AssertionError(f"cells did not finish in {timeout_s} s; prompts: {prompts.all_inner_texts()}")
