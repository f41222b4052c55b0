"""The merged LoRA/QLoRA export makes one weight at a time (`lazy_weights.py`): under QLoRA it reads each 16-bit base
linear back from the checkpoint, adds its delta, writes it and frees it, so the export adds a few copies of one
linear to the process's peak, not the decoder again (it used to add about three decoders: read, merged, cast)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("torchao", reason='QLoRA needs torchao: pip install "xtuner_nb[qlora]"')

# In its own process: a peak measured from a reset VmHWM (Linux's clear_refs "5") is this export's alone, and the
# reset does not touch pytest's own peak, which other tests read.
SCRIPT = r"""
import json, re, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
from xtuner_nb.model import LoRAConfig, MHAConfig, Qwen3DenseConfig, load_hf_weights, save_hf
from xtuner_nb.model.hf_save import save_lora_hf
from xtuner_nb.model.lora import apply_lora, merged_state_dict
from xtuner_nb.model.qlora import decoder_linears, nf4_placeholders

def status(key):
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024

out = Path(sys.argv[1])
cfg = Qwen3DenseConfig(vocab_size=512, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                       max_position_embeddings=512,
                       attention=MHAConfig(num_attention_heads=8, num_key_value_heads=8, head_dim=64))
torch.manual_seed(0)
base = save_hf(cfg.build(dtype=torch.float32), cfg, out / "base", dtype=torch.bfloat16)
model = cfg.build(device="meta", dtype=torch.float32)  # as the Trainer builds QLoRA on a CPU: fp32 compute
nf4_placeholders(model, "cpu")
model.to_empty(device="cpu")
load_hf_weights(model, base)
lora = LoRAConfig(r=4, lora_alpha=8, quantize_base="nf4")
peft = apply_lora(model, lora, base_model_name_or_path=base)
with torch.no_grad():  # B starts at zero: trained-looking adapters, so that every merge changes its weight
    for name, p in peft.named_parameters():
        if ".lora_B." in name:
            p.normal_(0, 0.02)
adapters = {k: v for k, v in peft.state_dict().items() if ".lora_" in k}  # what the Trainer's export gathers
save_lora_hf(peft, adapters, cfg, lora, out / "warm-up")  # imports and first-call allocations, out of the figure
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
before = status("VmRSS")
merged = save_lora_hf(peft, adapters, cfg, lora, out / "merged")
peak = status("VmHWM") - before
decoder = sum(m.weight.numel() for _, m in decoder_linears(peft))
largest = max(m.weight.numel() for _, m in decoder_linears(peft))
want = merged_state_dict(adapters, lora.scaling, source=base, model_state=peft.state_dict())  # all at once
got = load_file(str(merged / "model.safetensors"))
same = sorted(got) == sorted(k for k in want if k != "lm_head.weight" or not cfg.tie_word_embeddings) and all(
    torch.equal(got[k], want[k].to(torch.bfloat16)) for k in got)
print("RESULT " + json.dumps({"peak": peak, "decoder_fp32": 4 * decoder, "largest_fp32": 4 * largest,
                              "same": same}))
"""


def test_qlora_export_peak_is_about_one_linear_not_the_decoder(tmp_path):
    from tests.train.test_subprocess import ENV, REPO

    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=ENV,
                         cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    print(f"export peak above the trained model: {r['peak'] / 2**20:.1f} MiB; the decoder linears in fp32 "
          f"{r['decoder_fp32'] / 2**20:.1f} MiB, the largest one {r['largest_fp32'] / 2**20:.1f} MiB")
    assert r["same"]  # written one at a time: the same tensors as the all-at-once merge, rounded once to bf16
    # a few copies of the largest linear (its bf16 read, fp32 merge, bf16 cast) and allocator slack; the decoder
    # made at once would be 1.5 to 3 times `decoder_fp32`
    assert r["peak"] < 0.25 * r["decoder_fp32"], r
