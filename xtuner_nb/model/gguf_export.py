"""HF folder -> GGUF file (llama.cpp, Ollama, LM Studio), by llama.cpp's own `convert_hf_to_gguf.py`.

The converter is not part of this project: it is fetched once from the pinned `llama-cpp-python` sdist
(`xtuner_nb.assets.llama_cpp_dir()`, the llama.cpp tree vendored there) and run in a subprocess, with its own
`gguf-py` first on the path. What it needs besides torch and transformers (numpy, sentencepiece, protobuf) is the
`gguf` extra: `pip install "xtuner_nb[gguf]"`.

The GGUF keeps the tokenizer (token list, merges, bos/eos/pad ids) and the Jinja chat template of the HF folder
(`tokenizer.chat_template`), which llama.cpp applies by default and Ollama reads on import.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Sequence

# what convert_hf_to_gguf.py accepts for --outtype; "auto" = the highest-fidelity 16-bit type of the source weights
GGUF_OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")


class GGUFExportError(RuntimeError):
    """The converter refused the folder or failed; the message says why and how to fix it when known."""


def export_gguf(hf_dir: str | Path, out: str | Path | None = None, outtype: str = "f16", *,
                verbose: bool = False, timeout: float | None = None,
                check: bool | Sequence[str] = False) -> Path:
    """Convert the HF folder `hf_dir` (config.json, *.safetensors, tokenizer) to one GGUF file; returns its path.

    `out`: the file to write (default `hf_dir/model-<outtype>.gguf`; an existing file is replaced only when the
    new one is complete). `outtype`: one of `GGUF_OUTTYPES`; f32 keeps fp32 weights exactly, f16/bf16 halve the
    size, q8_0 quarters it. `verbose`: stream the converter's log instead of printing only its last lines on error.
    `check`: run the file in llama.cpp and compare its greedy answers with transformers' on `hf_dir`, on these
    prompts (True: `gguf_check.DEFAULT_PROMPTS`), and print the result (`gguf_check.check_gguf` returns it).
    """
    if outtype not in GGUF_OUTTYPES:
        raise ValueError(f"outtype={outtype!r}: choose one of {GGUF_OUTTYPES}")
    hf_dir = Path(hf_dir).resolve()
    _check_hf_dir(hf_dir)
    out = Path(out) if out is not None else hf_dir / f"model-{outtype}.gguf"
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)

    from ..assets import LLAMA_CPP_SDIST, llama_cpp_dir

    converter = llama_cpp_dir()
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    cmd = [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(hf_dir), "--outfile", str(tmp),
           "--outtype", outtype]
    # its own gguf-py must win over an installed `gguf` (transformers' reader), which may be another version
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    env["PYTHONPATH"] = os.pathsep.join([str(converter / "gguf-py"), *filter(None, [env.get("PYTHONPATH")])])
    print(f"[xtuner_nb.gguf] {hf_dir.name} -> {out.name} ({outtype}) with llama.cpp's convert_hf_to_gguf.py "
          f"({LLAMA_CPP_SDIST[0]} {LLAMA_CPP_SDIST[1]}) ...", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              capture_output=not verbose)
        if proc.returncode != 0:
            raise GGUFExportError(_explain(hf_dir, proc.returncode, (proc.stderr or "") + (proc.stdout or "")))
        if not tmp.is_file():
            raise GGUFExportError(f"{hf_dir}: the converter exited 0 but wrote no file at {tmp}")
        os.replace(tmp, out)
    except subprocess.TimeoutExpired as exc:
        raise GGUFExportError(f"{hf_dir}: convert_hf_to_gguf.py did not finish in {timeout} s") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"[xtuner_nb.gguf] wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, "
          f"{time.perf_counter() - t0:.0f} s)", flush=True)
    if check:
        from .gguf_check import DEFAULT_PROMPTS, check_gguf

        print(f"[xtuner_nb.gguf] {check_gguf(out, hf_dir, DEFAULT_PROMPTS if check is True else check).summary()}",
              flush=True)
    return out


def _check_hf_dir(hf_dir: Path) -> None:
    if not (hf_dir / "config.json").is_file():
        raise GGUFExportError(f"{hf_dir}: no config.json; give the folder of an HF export (the Trainer's hf-<step>/)")
    if not any(hf_dir.glob("*.safetensors")):
        raise GGUFExportError(f"{hf_dir}: no *.safetensors weights")
    if not ((hf_dir / "tokenizer.json").is_file() or (hf_dir / "tokenizer.model").is_file()):
        raise GGUFExportError(f"{hf_dir}: no tokenizer (tokenizer.json or tokenizer.model); a GGUF file carries "
                              "its tokenizer, so export the model with its tokenizer")


def _explain(hf_dir: Path, code: int, log: str) -> str:
    tail = "\n".join(log.strip().splitlines()[-12:])
    head = f"{hf_dir}: convert_hf_to_gguf.py failed (exit code {code})"
    if "BPE pre-tokenizer was not recognized" in log:
        digest = re.search(r"chkhsh:\s*([0-9a-f]{64})", log)
        return (f"{head}: llama.cpp does not know this tokenizer's pre-tokenizer"
                f"{f' (hash {digest.group(1)})' if digest else ''}. It recognises the tokenizers of released models "
                "(Qwen2/2.5/3, Llama 3, SmolLM2, ...) by hashing how they split a test string; a tokenizer trained "
                "locally, like the tiny demo one, cannot be converted. Fine-tune from a released checkpoint and "
                f"keep its tokenizer.\n{tail}")
    missing = re.search(r"No module named '([\w.]+)'", log)
    if missing:
        return (f"{head}: the converter needs the Python module {missing.group(1)!r}; "
                f"install it with `pip install \"xtuner_nb[gguf]\"`.\n{tail}")
    if re.search(r"Architecture .* not supported", log):
        return f"{head}: this llama.cpp version has no converter for the architecture in config.json.\n{tail}"
    return f"{head}:\n{tail}"
