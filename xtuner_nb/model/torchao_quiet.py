"""torchao imported once, quietly, before transformers and peft import it: a leaf module (no package imports), so
that the model modules (`attention.py`, `packed.py`) can call it without a cycle through `qlora.py`."""

from __future__ import annotations

import importlib
import importlib.util
import logging


def torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


def import_torchao_quietly():
    """Import torchao's NF4 module (None without torchao). torchao logs a warning for each CUDA/C++ extension it
    cannot load and torch one per enum it registers; NF4 is pure PyTorch and needs none of them. peft imports torchao
    whenever it wraps a model, and transformers when it loads its model code, so `apply_lora` and our model modules
    (`attention.py`, `packed.py`) import it here first."""
    if not torchao_available():
        return None
    quiet = [logging.getLogger(n) for n in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        from torchao.quantization.quantize_.workflows.nf4 import nf4_tensor

        try:  # what transformers' torchao quantizer imports at its own import, and registers more enums
            importlib.import_module("torchao.prototype.safetensors.safetensors_support")
        except ImportError:
            pass
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    return nf4_tensor
