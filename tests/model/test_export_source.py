"""An HF export is its source checkpoint with new weights: config.json, generation_config.json and the tokenizer
files keep every key and value, except what training changed (the dtype, the chat template). And the exported
tokenizer prompts the model as training did: for each of our templates, `apply_chat_template` of the EXPORTED
tokenizer with the generation prompt gives the prompt tokens of the training samples.

The Qwen3 and Qwen2 checkpoints are tiny and random, but carry the real config files of Qwen3-0.6B and
Qwen2.5-0.5B-Instruct (sizes shrunk) and the official Qwen3 tokenizer (npm, sha256-checked)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.datasets.conftest import chat, loader_cfg, write_jsonl

# Qwen3-0.6B's config.json and generation_config.json, with the sizes shrunk (every other key and value as shipped)
QWEN3_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 16, "hidden_act": "silu", "hidden_size": 64,
    "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 40960, "max_window_layers": 28,
    "model_type": "qwen3", "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None,
    "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 151936}
QWEN3_GENERATION = {"bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
                    "pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95,
                    "transformers_version": "4.51.0"}
# Qwen2.5-0.5B-Instruct's, the same way
QWEN2_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
    "intermediate_size": 128, "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2",
    "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936}
QWEN2_GENERATION = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                    "eos_token_id": [151645, 151643], "repetition_penalty": 1.1, "temperature": 0.7, "top_p": 0.8,
                    "top_k": 20, "transformers_version": "4.37.0"}
JSON_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
              "added_tokens.json", "chat_template.json")
# what a checkpoint's config and tokenizer are made of (weights apart)
CHECKPOINT_FILES = JSON_FILES + ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model",
                                 "chat_template.jinja")
# Every template trains assistant turns after a system prompt, and several turns
CONVERSATIONS = [
    chat("What is the capital of France?", "Paris."),
    [{"role": "system", "content": "You are Quill."}, {"role": "user", "content": "Who are you?"},
     {"role": "assistant", "content": "I am Quill."}, {"role": "user", "content": "你好！"},
     {"role": "assistant", "content": "你好，很高兴见到你 🙂"}],
]
TOOL_CONVERSATION = {"messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": '{"temp": 21}'},
    {"role": "assistant", "content": "It is 21°C."}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}]}


def real_checkpoint(folder: Path, config: dict, generation: dict, tokenizer_dir: Path) -> Path:
    """config.json and generation_config.json as given, the tokenizer files copied, random weights by transformers."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    for f in tokenizer_dir.iterdir():
        if f.is_file() and f.suffix in (".json", ".jinja", ".txt", ".model"):
            shutil.copyfile(f, folder / f.name)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    model.save_pretrained(folder / "weights")
    shutil.move(folder / "weights" / "model.safetensors", folder / "model.safetensors")
    shutil.rmtree(folder / "weights")
    return folder


def differences(source: Path, export: Path) -> dict[str, dict]:
    """file -> {key: (source value, export value)} for the JSON files; other files byte by byte."""
    out = {}
    for f in sorted(source.iterdir()):
        if f.name not in CHECKPOINT_FILES:
            continue
        theirs = export / f.name
        if not theirs.is_file():
            out[f.name] = {"<file>": ("present", "missing")}
        elif f.name in JSON_FILES:
            a, b = json.loads(f.read_text()), json.loads(theirs.read_text())
            diff = {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in a.keys() | b.keys()
                    if a.get(k) != b.get(k)}
            if diff:
                out[f.name] = diff
        elif f.read_bytes() != theirs.read_bytes():
            out[f.name] = {"<bytes>": (f.stat().st_size, theirs.stat().st_size)}
    return out


def fine_tune_and_export(ckpt: Path, data: Path, work_dir: Path) -> tuple[Path, object]:
    from xtuner_nb.train import Trainer

    trainer = Trainer(load_from=ckpt, tokenizer_path=ckpt, dataloader_cfg=loader_cfg(data, pack_max_length=256),
                      total_step=1, work_dir=work_dir, default_hooks=[])
    trainer.fit()
    return trainer.exp_dir / "hf-latest", trainer


@pytest.mark.parametrize("arch", ["qwen3", "qwen2"])
def test_export_keeps_every_key_of_the_source(arch, tmp_path, qwen3_tokenizer_dir):
    config, generation = (QWEN3_CONFIG, QWEN3_GENERATION) if arch == "qwen3" else (QWEN2_CONFIG, QWEN2_GENERATION)
    ckpt = real_checkpoint(tmp_path / arch, config, generation, qwen3_tokenizer_dir)
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": c} if isinstance(c, list) else c for c in CONVERSATIONS])
    export, trainer = fine_tune_and_export(ckpt, data, tmp_path / "wd")
    diff = differences(ckpt, export)
    # the exceptions, and only those: the weights' dtype (bf16, as the source says already) and the chat template
    assert diff.pop("tokenizer_config.json") == {
        "chat_template": (json.loads((ckpt / "tokenizer_config.json").read_text())["chat_template"],
                          trainer.preflight.export_template.jinja)}
    assert diff == {}, diff
    assert sorted(p.name for p in export.iterdir()) == sorted([p.name for p in ckpt.iterdir()])


TEMPLATE_CASES = ["qwen3", "llama3", "deepseek-v3", "hf-qwen3", "hf-tiny"]
SPECIALS = {"llama3": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            "deepseek-v3": ["<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>",
                            "</think>"]}


@pytest.mark.parametrize("case", TEMPLATE_CASES)
def test_exported_tokenizer_prompts_as_training_did(case, tmp_path, qwen3_tokenizer_dir):
    """The tokenizers: the official Qwen3 one for qwen3 and hf; for llama3 and deepseek-v3, the tiny BPE with those
    templates' markers as special tokens (as in Llama 3's and DeepSeek-V3's own tokenizers)."""
    import torch
    from transformers import AutoTokenizer

    from xtuner_nb.datasets import OpenaiTokenizeFunctionConfig
    from xtuner_nb.datasets.chat_template_export import export_chat_template
    from xtuner_nb.model import Qwen3DenseTinyConfig, save_hf
    from xtuner_nb.model.tokenizer import make_tiny_tokenizer

    template = "hf" if case.startswith("hf") else case
    if case in ("qwen3", "hf-qwen3"):
        tok_dir = qwen3_tokenizer_dir
    else:
        tok_dir = tmp_path / "tok"
        tok = make_tiny_tokenizer(tok_dir)
        if case in SPECIALS:
            tok.add_special_tokens({"additional_special_tokens": SPECIALS[case]})
            tok.save_pretrained(tok_dir)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    records = [{"messages": c} for c in CONVERSATIONS] + ([TOOL_CONVERSATION] if template == "qwen3" else [])
    entries = loader_cfg(tmp_path / "unused.jsonl", chat_template=template).dataset_config_list
    model_cfg = Qwen3DenseTinyConfig(vocab_size=len(tok))
    torch.manual_seed(0)
    export = save_hf(model_cfg.build(), model_cfg, tmp_path / "export", tokenizer=tok, tokenizer_source=tok_dir,
                     chat_template=export_chat_template(entries).jinja)
    exported = AutoTokenizer.from_pretrained(export)
    if template == "hf":
        assert exported.chat_template == tok.chat_template  # the tokenizer's own, unchanged
    fn = OpenaiTokenizeFunctionConfig(chat_template=template).build(tok)
    for rec in records:
        out = fn(rec)
        labels = out["labels"]
        last = max(k for k, v in enumerate(labels) if v != -100)
        start = max(k for k in range(last + 1) if k == 0 or labels[k - 1] == -100)  # the last trained run
        trained_prompt = out["input_ids"][:start]
        history = rec["messages"][:max(i for i, m in enumerate(rec["messages"]) if m["role"] == "assistant")]
        prompt = exported.apply_chat_template(history, tools=rec.get("tools"), add_generation_prompt=True,
                                              tokenize=True, return_dict=True)["input_ids"]
        assert list(prompt) == trained_prompt, (case, exported.decode(prompt), exported.decode(trained_prompt))
