"""The configs import without torch: `xtuner_nb.model` (every architecture, the registry, `LoRAConfig`), XTuner's
`xtuner_nb.module` paths and the loss configs load pydantic only, so config forms open at once; the tensor code comes
with its first use."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "huggingface_hub")
PROBE = f"""
import sys
import xtuner_nb.loss, xtuner_nb.model, xtuner_nb.model.lora, xtuner_nb.model.registry, xtuner_nb.module.attention
from xtuner_nb.model import MODEL_PRESETS, LoRAConfig, get_model_config
from xtuner_nb.loss.config import CELossConfig

cfgs = [cls() for cls in MODEL_PRESETS.values()] + [LoRAConfig(r=8), CELossConfig(mode="chunk")]
assert get_model_config("qwen3-tiny").to_dict() == cfgs[0].to_dict()
print("CONFIGS", sorted(m for m in {HEAVY!r} if m in sys.modules))
xtuner_nb.model.load_hf_weights  # a tensor function: its first use brings torch
print("TENSORS", sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def test_configs_load_no_torch_transformers_or_peft():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["CONFIGS"] == "[]"
    assert "'torch'" in lines["TENSORS"]  # the probe sees a heavy import when there is one
