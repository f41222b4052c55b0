"""Exports of the model as it is now: an ordinary HF folder (`hf-N/`, with LoRA the merged weights plus the peft
adapter in `hf-N/adapter/`), and GGUF through llama.cpp's own converter. Collective under torchrun: every rank
takes part in gathering the full weights, rank 0 writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..distributed import DistInfo, barrier


def write_hf_export(model: Any, model_cfg: Any, lora_cfg: Any, tokenizer: Any, path: Path, dist: DistInfo,
                    **export_source: Any) -> Path:
    """`path/`: config.json, safetensors and the tokenizer; under LoRA the adapters merged, and `path/adapter/`.
    `export_source`: `source` (load_from), `tokenizer_source` (tokenizer_path) and `chat_template` (the Jinja of the
    template training used, None to keep the tokenizer's): the export keeps the source's files but for what
    training changed (`model/export_source.py`)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from ...model.hf_save import save_hf, save_lora_hf

    # QLoRA: gather the adapters only; the merge reads the frozen base from load_from (its 16-bit weights, which
    # gathering the 4-bit copy could not give back)
    quantized = lora_cfg is not None and lora_cfg.quantize_base is not None
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                              ignore_frozen_params=quantized))
    if dist.is_main:
        if lora_cfg is None:
            save_hf(sd, model_cfg, path, tokenizer=tokenizer, **export_source)
        else:
            save_lora_hf(model, sd, model_cfg, lora_cfg, path, tokenizer=tokenizer, **export_source)
    barrier()
    return path


def write_gguf(hf_dir: Path, path: str | Path | None, outtype: str, dist: DistInfo) -> Path | None:
    """`hf_dir` converted to one GGUF file on rank 0 (see `xtuner_nb.model.export_gguf`); None on other ranks."""
    from ...model.gguf_export import export_gguf

    out = export_gguf(hf_dir, path, outtype) if dist.is_main else None
    barrier()
    return out
