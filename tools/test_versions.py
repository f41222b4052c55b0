"""The version matrix (`make test-versions`): fresh venvs for the floor set and the newest sets, the checks a
notebook user meets, one table.

Each set is a Python and the pins of the libraries whose ranges pyproject.toml declares; pip resolves the rest
(pyproject's other dependencies and the `kernel` extra, read from pyproject.toml). Each venv gets this checkout
(`pip install -e . --no-deps`, for its entry points) and runs: `xtuner-nb env`, the quickstart under nbmake, and
focused tests (resume, forms, FSDP2 with 2 CPU ranks, HF export, chat, evaluation). The ranges that passed go into
xtuner_nb/versions.py (TESTED) by hand, and pyproject's floors with them.

    python tools/test_versions.py                           # all four columns, one after the other (~1.5 h here)
    python tools/test_versions.py --sets newest-py3.13      # one column; the table shows every column saved so far
    python tools/test_versions.py --python 3.12 --sets newest   # a set on another Python
    python tools/test_versions.py --table-only              # print the table of the saved columns

Sets run as separate processes (e.g. two at once) still give one table: each column is saved in --workdir.
pip's constraint file is ignored here (PIP_CONSTRAINT=/dev/null): a set takes its own pins, the newest sets the
newest releases. Not part of `make test`: venvs take minutes each, and torch builds other than the CPU wheel are
multi-GB CUDA builds from PyPI (about 4 GB per venv with their nvidia-* wheels).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The libraries whose floors the sets pin; the rest of pyproject's dependencies and the kernel extra (what the
# tutorials import) take what pip resolves, plus a notebook kernel.
PINNED = {"torch", "transformers", "tokenizers", "safetensors", "peft", "nbmake", "pytest"}


def common_requirements() -> list[str]:
    """pyproject's dependencies and `kernel` extra minus the pinned names, and ipykernel."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["kernel"]
    name = lambda r: re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower()
    return [r for r in reqs if name(r) not in PINNED] + ["ipykernel"]


# name -> (python, pins). An unpinned name takes the newest release that resolves.
NEWEST = ["torch", "transformers", "tokenizers", "safetensors", "peft", "nbmake", "pytest"]
SETS: dict[str, tuple[str, list[str]]] = {
    # pyproject's floors (nbmake 1.5.0 does not load under pytest 9, which pip pairs with it: 1.5.1 does); torch's
    # floor is the colab-like column's
    "floor": ("3.11", ["torch==2.13.0", "transformers==4.57.6", "tokenizers==0.22.0", "safetensors==0.4.3",
                       "peft==0.13.0", "nbmake==1.5.1", "pytest==8.0.2"]),
    # a hosted kernel today (Colab: Python 3.12, torch around 2.9-2.10) with the newest libraries
    "colab-like": ("3.12", ["torch==2.9.1", *NEWEST[1:]]),
    # the newest release of everything, on the oldest and the newest Python that requires-python declares
    "newest": ("3.11", NEWEST),
    "newest-py3.13": ("3.13", NEWEST),
}
CHECKS: dict[str, list[str]] = {
    "quickstart": ["notebooks/en/01_quickstart.ipynb"],
    "resume": ["tests/train/test_trainer.py::test_auto_resume_in_a_new_trainer_is_exact",
               "tests/train/test_safety.py"],
    "forms": ["tests/notebook/test_forms.py"],
    "fsdp2 2 ranks": ["tests/train/test_subprocess.py::test_torchrun_two_cpu_ranks_matches_one_rank"],
    "hf export": ["tests/train/test_trainer.py::test_fit_layout_logs_history_and_hf_export",
                  "tests/model/test_hf_io.py::test_our_save_loads_in_transformers_bf16_on_disk"],
    "chat": ["tests/notebook/test_chat.py"],
    "eval": ["tests/train/test_eval.py::test_eval_loss_and_answers_equal_transformers_and_rows_are_logged"],
    # peft's range: wrapping, training only the adapters, the adapter loaded back by peft itself, its merge, resume
    "lora": ["tests/train/test_lora.py::test_only_adapters_are_trainable_get_gradients_and_reach_the_optimizer",
             "tests/train/test_lora.py::test_merged_export_and_peft_adapter_reproduce_the_adapted_model",
             "tests/train/test_lora.py::test_lora_resume_in_a_new_trainer_is_exact_and_checkpoints_hold_adapters_only"],
}
SHOWN = ["python", "torch", "transformers", "tokenizers", "safetensors", "peft", "nbmake", "pytest"]


def find_python(version: str) -> str:
    """A python{version} that runs: on PATH (a pyenv shim of an inactive version does not), else under pyenv."""
    candidates = [shutil.which(f"python{version}"),
                  *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))]
    for found in filter(None, candidates):
        if subprocess.run([found, "--version"], capture_output=True).returncode == 0:
            return found
    sys.exit(f"no python{version} on PATH or under ~/.pyenv/versions")


def run(cmd: list[str], log: Path, timeout: int, env: dict | None = None) -> tuple[bool, float]:
    t0 = time.monotonic()
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        try:
            ok = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                                env=env).returncode == 0
        except subprocess.TimeoutExpired:
            f.write(f"timed out after {timeout} s\n")
            ok = False
    return ok, time.monotonic() - t0


def build(name: str, python: str, pins: list[str], workdir: Path, log: Path) -> Path | None:
    """A venv with the pins, the common libraries and this checkout; an existing one is brought to the pins."""
    venv = workdir / name
    py = venv / "bin" / "python"
    steps = [] if py.exists() else [[find_python(python), "-m", "venv", str(venv)]]
    steps += [[str(py), "-m", "pip", "install", "-q", *pins, *common_requirements()],
              [str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", "."],
              [str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"]]
    env = {**os.environ, "PIP_CONSTRAINT": os.devnull}  # a machine's cap on torch is not this matrix's
    for cmd in steps:
        if not run(cmd, log, timeout=3600, env=env)[0]:
            return None
    return py


def versions(py: Path) -> dict[str, str]:
    code = ("import platform, importlib.metadata as m\nprint('python', platform.python_version())\n"
            f"for d in {SHOWN[1:]!r}:\n    print(d, m.version(d))")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True).stdout.split("\n")
    return dict(line.split(" ", 1) for line in out if " " in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--python", help="run every chosen set on this Python (e.g. 3.12)")
    parser.add_argument("--torch", help="pin for torch in every chosen set (e.g. torch==2.10.0)")
    parser.add_argument("--checks", default=",".join(CHECKS), help="comma-separated, of " + ", ".join(CHECKS))
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "test-versions")
    parser.add_argument("--table-only", action="store_true", help="only print the table of the columns saved so far")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    checks = args.checks.split(",")
    columns: dict[str, dict[str, str]] = {}
    for name in [] if args.table_only else args.sets.split(","):
        python, pins = SETS[name]
        python = args.python or python
        if args.torch:
            pins = [args.torch] + [p for p in pins if not p.startswith("torch")]
        label = name if not (args.python or args.torch) else f"{name} ({python}, {args.torch or 'torch'})"
        log = args.workdir / f"{label.replace(' ', '_')}.log"
        log.write_text("")
        print(f"[{label}] building venv (log: {log})", flush=True)
        py = build(label.replace(" ", "_"), python, pins, args.workdir, log)
        col = {"label": label, "install": "fail" if py is None else "pass"}
        if py is not None:
            col.update(versions(py))
            bin_dir = str(py.parent)
            env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
            env.pop("PYTHONPATH", None)
            ok, sec = run([str(py.parent / "xtuner-nb"), "env"], log, 600, env)
            col["xtuner-nb env"] = f"{'pass' if ok else 'FAIL'} {sec:.0f}s"
            run_dir = args.workdir / f"{label.replace(' ', '_')}-run"  # this column's own files
            for check in checks:
                cmd = [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                       f"--basetemp={run_dir / 'pytest-tmp'}", "--nbmake", "--nbmake-timeout=900",
                       *(own_copy(item, run_dir) for item in CHECKS[check])]
                ok, sec = run(cmd, log, 1800, env)
                col[check] = f"{'pass' if ok else 'FAIL'} {sec:.0f}s"
                print(f"[{label}] {check}: {col[check]}", flush=True)
                save(args.workdir, col)  # after each check: a run stopped early still has its column
        save(args.workdir, col)
        columns[label] = col
    # every column this workdir holds, so sets run as separate processes still give one table: SETS' order first
    order = list(SETS)
    every = {json.loads(f.read_text()).get("label", f.stem): json.loads(f.read_text())
             for f in sorted(args.workdir.glob("*.json"),
                             key=lambda f: (order.index(f.stem) if f.stem in order else len(order), f.stat().st_mtime))}
    print(table(every, SHOWN + ["install", "xtuner-nb env"] + list(CHECKS)))
    sys.exit(0 if all(not v.startswith(("FAIL", "fail")) for col in columns.values() for v in col.values()) else 1)


def own_copy(item: str, run_dir: Path) -> str:
    """A notebook runs from a copy in this column's folder (with notebooks/conftest.py): the notebook writes its
    work_dir beside itself, and two columns run at once must not share the tiny model it writes there (a tokenizer
    saved by transformers 5 does not load in 4.57). Tests run in place: their files go to --basetemp."""
    if not item.endswith(".ipynb"):
        return item
    for path in (item, "notebooks/conftest.py"):
        (run_dir / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, run_dir / path)
    return str(run_dir / item)


def save(workdir: Path, col: dict[str, str]) -> None:
    (workdir / f"{col['label'].replace(' ', '_')}.json").write_text(json.dumps(col))


def table(columns: dict[str, dict[str, str]], rows: list[str]) -> str:
    width = max(len(r) for r in rows)
    widths = {c: max(len(c), *(len(v.get(r, "")) for r in rows)) for c, v in columns.items()}
    lines = ["| " + " " * width + " | " + " | ".join(c.ljust(widths[c]) for c in columns) + " |",
             "|" + "-" * (width + 2) + "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|"]
    lines += ["| " + r.ljust(width) + " | " + " | ".join(v.get(r, "-").ljust(widths[c]) for c, v in columns.items())
              + " |" for r in rows]
    return "\n".join(lines)

if __name__ == "__main__":
    main()
