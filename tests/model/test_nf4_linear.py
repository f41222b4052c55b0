"""QLoRA's linear layer over an NF4 weight (`model/nf4_linear.py`): the values and gradients of torchao's own
`linear_nf4`, with a dequantization whose only weight-sized allocation is its result (torchao's makes int64 indices
and five more temporaries, which fragmented the CPU heap: QLoRA's peak RSS rose step after step)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("torchao", reason='QLoRA needs torchao: pip install "xtuner_nb[qlora]"')


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,shards", [((3072, 1024), 1), ((192, 64), 1), ((192, 64), 2)])
def test_dequantize_equals_torchaos_and_the_layer_its_linear_nf4(dtype, shape, shards):
    from xtuner_nb.model.nf4_linear import DEQUANT_CHUNK, NF4LinearFunction, dequantize_nf4
    from xtuner_nb.model.qlora import quantize, require_torchao

    linear_nf4 = require_torchao().linear_nf4  # torchao's
    torch.manual_seed(0)
    q = quantize(torch.randn(shape).to(dtype), shards)  # (192, 64) with 2 shards: scale blocks smaller than 256
    assert q.numel() // 2 > DEQUANT_CHUNK or shape[0] < 1000  # the large one spans several chunks
    for to in (None, torch.float32, torch.bfloat16):
        want = q.get_original_weight() if to is None else q.get_original_weight().to(to)
        assert torch.equal(dequantize_nf4(q, to), want)
    assert torch.equal(dequantize_nf4(q, chunk=q.numel()), q.get_original_weight())  # one chunk, as on a GPU
    assert torch.equal(dequantize_nf4(q, chunk=100), q.get_original_weight())  # not a whole number of blocks

    def run(linear, *args):  # output, then the gradients of a loss that weighs each output differently
        y = linear(*args)
        grads = torch.autograd.grad((y * torch.arange(y.numel(), dtype=dtype).view_as(y)).sum(),
                                    [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad])
        return [y.detach(), *grads]

    x = torch.randn(5, shape[1], dtype=dtype, requires_grad=True)
    bias = torch.randn(shape[0], dtype=dtype, requires_grad=True)
    assert all(map(torch.equal, run(NF4LinearFunction.apply, x, q, None), run(linear_nf4, x, q)))
    # with a bias (Qwen2's q/k/v): a plain linear over torchao's dequantized weight
    plain = torch.nn.functional.linear
    assert all(map(torch.equal, run(NF4LinearFunction.apply, x, q, bias),
                   run(plain, x, q.get_original_weight().to(dtype), bias)))


def test_quantized_linears_run_nf4_linear_under_peft(tiny_ckpt):
    from xtuner_nb.model import LoRAConfig, load_hf_weights, model_config_from_hf
    from xtuner_nb.model.lora import apply_lora
    from xtuner_nb.model.nf4_linear import NF4Linear
    from xtuner_nb.model.qlora import decoder_linears

    cfg = model_config_from_hf(tiny_ckpt)
    model = cfg.build(dtype=torch.float32)
    load_hf_weights(model, tiny_ckpt)
    peft = apply_lora(model, LoRAConfig(r=4, lora_alpha=8, quantize_base="nf4"))
    linears = decoder_linears(peft)
    assert linears and all(type(m) is NF4Linear for _, m in linears)
    # peft wraps them as it wraps any nn.Linear: its layer holds ours as base_layer, state dict names unchanged
    assert all(n.endswith(".base_layer") for n, _ in linears)
    assert not any("NF4Linear" in k for k in peft.state_dict())


# In its own process: a peak measured from a reset VmHWM (Linux's clear_refs "5") is this code's alone, and with a
# fixed mmap threshold glibc maps every block over 64 KiB and unmaps it when freed, so that the peak counts the bytes
# alive at once, not blocks that an earlier free left in the heap.
SCRIPT = r"""
import json, re, sys
import torch
from xtuner_nb.model.nf4_linear import dequantize_nf4
from xtuner_nb.model.qlora import quantize

def status(key):
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024

dequantize = dequantize_nf4 if sys.argv[1] == "ours" else lambda t: t.get_original_weight()
q = quantize(torch.randn(3072, 1024))
dequantize(quantize(torch.randn(192, 64)))  # first-call costs out of the figure
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
before = status("VmRSS")
out = dequantize(q)
print("RESULT " + json.dumps({"peak": status("VmHWM") - before, "result": out.numel() * out.element_size()}))
"""


def _peak(which: str) -> dict:
    import os

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, which], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])


def test_dequantization_allocates_little_beside_its_result():
    ours, torchaos = _peak("ours"), _peak("torchao")
    MiB = 2**20
    print(f"dequantizing a 3072x1024 fp32 weight: peak {ours['peak'] / MiB:.1f} MiB (result "
          f"{ours['result'] / MiB:.1f} MiB); torchao's get_original_weight {torchaos['peak'] / MiB:.1f} MiB")
    assert ours["result"] <= ours["peak"] < ours["result"] + 4 * MiB  # the result and one chunk's 1 MiB index
    assert torchaos["peak"] > 3 * ours["result"]  # what it replaced: the test would fail on torchao's
