"""One JupyterLab server for every browser test (tests/browser, tests/notebook/test_browser.py), and the rule for a
missing browser: skipped with the reason on a developer's machine, a FAILURE under CI=true (CI must not go green
without the browser tests). `.ci/run` installs Debian's chromium.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

TOKEN = "xtuner-nb-browser-test"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} -- CI=true: the browser tests must run, not skip", pytrace=False)
    pytest.skip(reason)


def chromium() -> str:
    """The Chromium binary ($CHROMIUM, else chromium on PATH) and Playwright, or skip/fail with the reason."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        skip_or_fail(f"no Chromium binary ({os.environ.get('CHROMIUM') or 'chromium on PATH'}; Debian: "
                     "apt-get install -y chromium, or set $CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail("playwright (python) is not installed (pip install 'xtuner_nb[test]')")
    return path


@contextmanager
def browser_page(failure_shot: Path, viewport=(1280, 1400), timeout_ms: int = 150_000):
    """A Chromium page (Playwright) for one test; a full-page screenshot to `failure_shot` when the test's body fails."""
    from playwright import sync_api

    failure_shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.set_default_timeout(timeout_ms)
        try:
            yield page
        except Exception:
            page.screenshot(path=str(failure_shot), full_page=True)
            raise
        finally:
            browser.close()


@dataclass
class Lab:
    base: str  # http://127.0.0.1:PORT
    root: Path  # the server's root dir: each test puts its notebook in its own sub-folder
    log: Path

    def url(self, notebook: str) -> str:
        """The notebook in a workspace of its own, reset: only this notebook is open, whatever another test of
        the session opened on the same server (page locators such as `.jp-Cell` see this notebook alone)."""
        workspace = Path(notebook).stem.replace("_", "-")
        return f"{self.base}/lab/workspaces/{workspace}/tree/{notebook}?token={TOKEN}&reset"


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


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory):
    """A headless JupyterLab on localhost with a fresh root, workspace, settings and config dir (nothing from the
    user's setup leaks in), started once per session. `window.jupyterapp` is exposed for the tests to drive."""
    chromium()
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "root"
    root.mkdir()
    _write_settings(tmp / "settings")
    port = _free_port()
    env = dict(os.environ)
    # this environment's kernelspec first ("python3" = this interpreter), a private config dir, and one
    # intra-op thread for the tiny model (see notebooks/conftest.py)
    env["JUPYTER_PATH"] = os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"),
                                           *filter(None, [env.get("JUPYTER_PATH")])])
    env["JUPYTER_CONFIG_DIR"] = str(tmp / "config")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    log_path = tmp / "jupyterlab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--allow-root", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         f"--LabApp.workspaces_dir={tmp / 'workspaces'}", f"--LabApp.user_settings_dir={tmp / 'settings'}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True", "--ServerApp.port_retries=0"],
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
                raise RuntimeError(f"JupyterLab did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Lab(base, root, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
