"""The non-weight files of an HF export: the source checkpoint's, with only what training changed written over them.

Rebuilding `config.json` from our own config loses what the source said (a `null` bos id became Llama 3's 128000,
outside SmolLM2's vocabulary, and llama.cpp's converter carried it into the GGUF). So an export copies the source's
`config.json` and `generation_config.json` (the `load_from` folder) and its tokenizer files (`tokenizer_path`), and
changes only:
- the weights' dtype (`dtype` / `torch_dtype` in config.json);
- a config field whose value in the trained model's config differs from the source's as read by the same code
  (a resized vocabulary, a field set by hand), so that reading the source lossily changes nothing;
- the chat template, when training used another one than the tokenizer's (`datasets/chat_template_export.py`).
`write_metadata` returns those changes as sentences, and logs them.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger("xtuner_nb")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json")
DTYPE_KEYS = ("dtype", "torch_dtype")  # transformers 5 writes `dtype`, older versions `torch_dtype`


def write_metadata(folder: Path, model_cfg: Any, tokenizer: Any, dtype: Any, generation_config: Any, *,
                   source: str | Path | None = None, tokenizer_source: str | Path | None = None,
                   chat_template: str | None = None) -> list[str]:
    """Write config.json, generation_config.json and the tokenizer files into `folder`; returns what differs from
    the source (empty without a source)."""
    source_dir = _folder(source)
    changes = _write_config(folder, model_cfg, dtype, source_dir)
    if source_dir is not None and (source_dir / "generation_config.json").is_file():
        shutil.copyfile(source_dir / "generation_config.json", folder / "generation_config.json")
    else:
        generation_config.save_pretrained(str(folder))
    tokenizer_dir = _folder(tokenizer_source)
    copied = tokenizer_dir is not None and _copy_tokenizer_files(tokenizer_dir, folder)
    if not copied and tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    if chat_template is not None and (copied or tokenizer is not None):
        changes += set_chat_template(folder, chat_template)
    if source_dir is not None or copied:
        origin = ", ".join(sorted({str(d) for d in (source_dir, tokenizer_dir if copied else None) if d}))
        logger.info(f"HF export: the files of {origin}" + (f", except: {'; '.join(changes)}" if changes else
                                                          ", unchanged"))
    return changes


def _folder(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    from .hub import resolve_pretrained

    try:
        return resolve_pretrained(path)
    except FileNotFoundError:
        return None


def _write_config(folder: Path, model_cfg: Any, dtype: Any, source: Path | None) -> list[str]:
    dtype_name = str(dtype).removeprefix("torch.")
    ours = model_cfg.hf_config
    ours.dtype = dtype
    if source is None or not (source / "config.json").is_file():
        ours.save_pretrained(str(folder))
        return []
    src = json.loads((source / "config.json").read_text(encoding="utf-8"))
    try:
        as_read = type(model_cfg).from_hf(source).hf_config.to_dict()
    except (ValueError, TypeError, KeyError):  # another architecture than the source's: our config as it is
        ours.save_pretrained(str(folder))
        return [f"config.json written from the model config ({type(model_cfg).__name__}), not {source}'s"]
    out, changes = dict(src), []
    for key, value in ours.to_dict().items():
        if key in DTYPE_KEYS or key == "transformers_version" or value == as_read.get(key):
            continue
        if src.get(key) != value:
            changes.append(f"config.json {key}: {src.get(key)!r} -> {value!r}")
        out[key] = value
    for key in [k for k in DTYPE_KEYS if k in src] or ["dtype"]:
        if src.get(key) != dtype_name:
            changes.append(f"config.json {key}: {src.get(key)!r} -> {dtype_name!r} (the weights' dtype)")
        out[key] = dtype_name
    (folder / "config.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return changes


def _copy_tokenizer_files(source: Path, folder: Path) -> bool:
    found = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    if not {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json"} & set(found):
        return False  # not a tokenizer folder
    for name in found:
        shutil.copyfile(source / name, folder / name)
    if (source / "additional_chat_templates").is_dir():
        shutil.copytree(source / "additional_chat_templates", folder / "additional_chat_templates")
    return True


def set_chat_template(folder: Path, template: str) -> list[str]:
    """Put `template` wherever the tokenizer files of `folder` keep their chat template (chat_template.jinja,
    tokenizer_config.json's `chat_template`, chat_template.json), or in a new chat_template.jinja."""
    found, changed = False, []
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        found = True
        if jinja.read_text(encoding="utf-8") != template:
            jinja.write_text(template, encoding="utf-8")
            changed.append(jinja.name)
    for name in ("tokenizer_config.json", "chat_template.json"):
        file = folder / name
        data = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
        if "chat_template" not in data:
            continue
        found, old = True, data["chat_template"]
        if isinstance(old, list):  # named templates: replace the default one
            new = [{**t, "template": template} if t.get("name") == "default" else t for t in old]
        else:
            new = template
        if new != old:
            data["chat_template"] = new
            file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            changed.append(f"{name} chat_template")
    if not found:
        jinja.write_text(template, encoding="utf-8")
        return ["chat_template.jinja added: the chat template used in training (the tokenizer had none)"]
    return [f"chat template replaced by the one used in training ({', '.join(changed)})"] if changed else []
