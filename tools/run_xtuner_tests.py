"""Run XTuner v1's own CPU-runnable dense-SFT tests against xtuner_nb, as an XTuner user would: the test files are
copied from an InternLM/xtuner checkout into a temporary folder, `xtuner.v1` is renamed `xtuner_nb` in the copies,
and the tokenizer variables point at the official Qwen3 tokenizer (`xtuner_nb.assets.qwen3_tokenizer_dir()`).
`QWEN3_VL_DENSE_PATH` is an instruct model in XTuner's CI ("We need instruct model"): it points at a copy of the
official tokenizer whose template drops the hybrid model's empty think block (`instruct_tokenizer_dir`); with the
hybrid template XTuner itself fails `test_qwen3_tool_template`. Nothing of XTuner's is kept in this repository.

    git clone https://github.com/InternLM/xtuner /tmp/xtuner   # the commit of tools/xtuner_v1_names.json
    pip install parametrize jsonlines                          # what XTuner's tests import
    .venv/bin/python tools/run_xtuner_tests.py /tmp/xtuner     # or --git-dir for a bare repository

Prints pytest's summary and `XTuner tests: P of N passed`; the exit status is pytest's. Other arguments go to
pytest (e.g. `-x`, `--continue-on-collection-errors`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The dense-SFT tests that run on a CPU (the others need CUDA, several GPUs, a real checkpoint, vision-language or
# MoE models, or XTuner internals); the issue that set this list counted 13 cases.
TESTS = [
    "tests/chat_template/test_chat_template.py::TestChatTemplate::test_qwen3_template",
    "tests/datasets/test_openai_tokenize_fn.py::TestOpenaiTokenizeFunction::test_qwen3_tool_template",
    "tests/datasets/test_dataset.py::test_hard_pack_dataset",
    "tests/datasets/test_dataloader.py::test_consistant",
    "tests/datasets/test_dataloader.py::test_dataloader_resume_single_process",
]
RESOURCES = ["tests/resource/openai_sft.jsonl"]
# the variables XTuner's test modules read at import; all point at the official Qwen3 tokenizer, the instruct one
# at its instruct-style copy
TOKENIZER_VARS = ("QWEN3_PATH", "GPT_OSS_MINI_PATH", "DEEPSEEK_V3_PATH")
INSTRUCT_TOKENIZER_VARS = ("QWEN3_VL_DENSE_PATH",)
# The hybrid Qwen3 template opens an assistant turn after the last user query with `<think>\n...\n</think>\n\n`,
# empty when the turn has no reasoning; an instruct Qwen3 template (2507) opens every assistant turn plainly.
_PLAIN_OPENING = r"\s*\{\{- '<\|im_start\|>' \+ message\.role \+ '\\n' \+ content \}\}\s*"
HYBRID_ASSISTANT_OPENING = re.compile(  # if after the last query: (if: think block, else: plain), else: plain
    r"\{%- if loop\.index0 > ns\.last_query_index %\}\s*\{%- if [^%]*%\}\s*\{\{-[^}]*'\\n</think>\\n\\n'[^}]*\}\}\s*"
    r"\{%- else %\}" + _PLAIN_OPENING + r"\{%- endif %\}\s*\{%- else %\}" + _PLAIN_OPENING + r"\{%- endif %\}")
INSTRUCT_ASSISTANT_OPENING = "{{- '<|im_start|>' + message.role + '\\n' + content }}"


def read(src: argparse.Namespace, rel: str) -> str:
    if src.checkout is not None:
        return (src.checkout / rel).read_text(encoding="utf-8")
    return subprocess.run(["git", "-C", str(src.git_dir), "show", f"{src.commit}:{rel}"], check=True,
                          capture_output=True, text=True).stdout


def instruct_tokenizer_dir(hybrid: Path, into: Path) -> Path:
    """A copy of the hybrid Qwen3 tokenizer folder whose chat template opens assistant turns as an instruct Qwen3
    does (no think block); everything else in the template and the tokenizer is unchanged."""
    into.mkdir()
    for f in hybrid.iterdir():
        if f.is_file():
            shutil.copy(f, into / f.name)
    config = json.loads((hybrid / "tokenizer_config.json").read_text(encoding="utf-8"))
    template, n = HYBRID_ASSISTANT_OPENING.subn(lambda _m: INSTRUCT_ASSISTANT_OPENING, config["chat_template"])
    if n != 1:
        raise RuntimeError(f"{hybrid / 'tokenizer_config.json'}: chat_template has {n} hybrid assistant openings, "
                           "expected 1 (the official Qwen3 template changed?)")
    config["chat_template"] = template
    (into / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    return into


def main() -> int:
    pinned = json.loads((ROOT / "tools" / "xtuner_v1_names.json").read_text(encoding="utf-8"))["source"]["commit"]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkout", nargs="?", type=Path, help="an InternLM/xtuner work tree")
    p.add_argument("--git-dir", type=Path, help="a bare InternLM/xtuner repository")
    p.add_argument("--commit", default=pinned, help="with --git-dir: the commit to read (default: the pinned one)")
    p.add_argument("--python-path", default="", help="extra folders on PYTHONPATH (e.g. where parametrize is)")
    a, pytest_args = p.parse_known_args()  # anything else goes to pytest
    if (a.checkout is None) == (a.git_dir is None):
        p.error("give a checkout or --git-dir")
    sys.path.insert(0, str(ROOT))
    from xtuner_nb.assets import qwen3_tokenizer_dir

    tokenizer = str(qwen3_tokenizer_dir())
    with tempfile.TemporaryDirectory(prefix="xtuner-tests-") as tmp:
        files = sorted({t.split("::")[0] for t in TESTS})
        for rel in files + RESOURCES:
            text = read(a, rel)
            if rel.endswith(".py"):
                text = re.sub(r"\bxtuner\.v1\b", "xtuner_nb", text)
            (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / rel).write_text(text, encoding="utf-8")
        instruct = str(instruct_tokenizer_dir(Path(tokenizer), Path(tmp) / "qwen3-instruct-tokenizer"))
        env = {**os.environ, **dict.fromkeys(TOKENIZER_VARS, tokenizer),
               **dict.fromkeys(INSTRUCT_TOKENIZER_VARS, instruct),
               "PYTHONPATH": os.pathsep.join(x for x in (str(ROOT), a.python_path, os.environ.get("PYTHONPATH"))
                                             if x)}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE",
                               "--rootdir", tmp, *TESTS, *pytest_args], cwd=tmp, env=env, capture_output=True,
                              text=True)
    print(proc.stdout[-6000:], proc.stderr[-2000:], sep="\n")
    counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed|error|errors)", proc.stdout))
    total = sum(counts.values())
    print(f"XTuner tests ({a.commit[:12] if a.git_dir else a.checkout}): {counts.get('passed', 0)} of {total} passed")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
