"""The wheel, tested as a notebook user gets it: not the tree, not an editable install.

A copy of the sources is built (`python -m build`: sdist, then the wheel from the sdist). A fresh virtual
environment gets torch 2.13.0 first (the CPU file, as a kernel that already has its torch), then only the wheel
with the `kernel` extra and what nbmake needs. From a folder outside the repository, `xtuner-nb notebooks` copies
the tutorials and nbmake runs the quickstart in that environment's kernel. The installed torch must be untouched.
Skipped (with pip's answer) only when pip cannot reach a package index.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

import xtuner_nb

ROOT = Path(__file__).resolve().parents[2]
# What a source checkout needs to build the distributions (MANIFEST.in says what the sdist takes from it).
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "xtuner_nb", "docs", "notebooks", "tools")
TORCH = "2.13.0+cpu"

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH or VIRTUAL_ENV of ours: the fresh environment must import only what was installed into it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


# pip's words when it cannot reach a package index: then the test is skipped with pip's answer, not failed
_UNREACHABLE = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                "Network is unreachable", "ConnectTimeoutError")


def _run(cmd: list, cwd: Path, timeout: int, **env: str) -> str:
    """Run, print wall and CPU seconds (CPU time says what it costs when the machine is shared), check rc 0."""
    t0, cpu0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                         timeout=timeout)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    print(f"{time.monotonic() - t0:6.1f} s wall {cpu:6.1f} s cpu  {' '.join(Path(str(c)).name for c in cmd[:5])}")
    if out.returncode != 0 and "pip" in map(str, cmd) and any(w in out.stderr for w in _UNREACHABLE):
        pytest.skip(f"package index unreachable: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_wheel_in_a_fresh_environment_copies_and_runs_the_quickstart(tmp_path):
    src, dist, work = tmp_path / "src", tmp_path / "dist", tmp_path / "work"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "work_dir", ".ipynb_checkpoints", "_build")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, src / name)
    # --no-isolation: the test venv's setuptools (test extra), no download of a build environment
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src], tmp_path, 300)
    version = xtuner_nb.__version__
    wheel, sdist = dist / f"xtuner_nb-{version}-py3-none-any.whl", dist / f"xtuner_nb-{version}.tar.gz"
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    in_sdist = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for lang in ("en", "zh_cn"):
        for nb in (ROOT / "notebooks" / lang).glob("*.ipynb"):
            assert f"xtuner_nb/_tutorials/notebooks/{lang}/{nb.name}" in in_wheel
            assert f"notebooks/{lang}/{nb.name}" in in_sdist
        for page in (ROOT / "docs" / lang).glob("*.md"):
            assert f"xtuner_nb/_tutorials/docs/{lang}/{page.name}" in in_wheel
            assert f"docs/{lang}/{page.name}" in in_sdist
    assert {"xtuner_nb/datasets/demo/train.jsonl", "xtuner_nb/datasets/demo/eval.jsonl"} <= in_wheel

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, 120)
    python = venv / "bin" / "python"
    # this pip, installing into the fresh venv (`--python`): no pip bootstrap there; no .pyc compilation (saves time)
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile"]
    _run([*pip, "torch==2.13.0"], tmp_path, 600)
    torch_version_py = next(venv.glob("lib/python*/site-packages/torch/version.py"))
    assert f"__version__ = '{TORCH}'" in torch_version_py.read_text()  # pip took the CPU file
    installed = torch_version_py.stat()
    _run([*pip, f"{wheel}[kernel]", "nbmake", "ipykernel"], tmp_path, 600)
    kept = torch_version_py.stat()  # the same file, not a reinstall of the same version
    assert (kept.st_ino, kept.st_mtime_ns) == (installed.st_ino, installed.st_mtime_ns)

    work.mkdir()
    out = _run([venv / "bin" / "xtuner-nb", "notebooks", "tutorials"], work, 120)
    quickstart = work / "tutorials" / "notebooks" / "en" / "01_quickstart.ipynb"
    n = len(list((ROOT / "notebooks" / "en").glob("*.ipynb")))
    assert f"{n} notebooks (en)" in out and f"Select Kernel -> {python}" in out, out
    assert (work / "tutorials" / "docs" / "en" / "install.md").exists()  # the notebooks' links to pages resolve

    # nbmake runs the copy in this environment's python3 kernel (its kernelspec first on JUPYTER_PATH)
    _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake", "--nbmake-timeout=900", "--overwrite",
          quickstart], work, 900, JUPYTER_PATH=str(venv / "share" / "jupyter"))
    check, _, report = (_printed(cell) for cell in nbformat.read(quickstart, as_version=4).cells[:3])
    assert check.startswith(f"xtuner_nb {version} from {venv}"), check  # the wheel's copy, not the tree
    assert f"torch        {TORCH} (CPU build)" in report, report  # env_report(), in the quickstart's first cells


def _printed(cell) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", []))
