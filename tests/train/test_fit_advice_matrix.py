"""Honest advice (issue 23): every way the fit check marks "fits" does fit the device it runs on. Qwen3-8B and
Qwen3-1.7B, full and LoRA, on a 24 GiB CPU and on a simulated T4, L4 and H100 (capability, free memory and host RAM
given, so this runs on a CPU): each fitting way is applied to the config, rebuilt on the meta device (peft's LoRA
too) with the estimate's parameter count, and re-estimated by the fit check's own path within its budget
(`bench/fit_advice_matrix.py --verify` prints the same matrix as a table)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from xtuner_nb.train.memory import GiB

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("fit_advice_matrix", REPO / "bench" / "fit_advice_matrix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_fitting_way_rebuilds_and_fits(bench):
    rows = bench.matrix(check=True)  # raises on the first fitting way that does not rebuild or does not fit
    cells = {(r["run"], r["device"]) for r in rows}
    assert len(cells) == len(bench.MODELS) * 2 * len(bench.DEVICES) == 16
    for r in rows:
        assert "num_hidden_layers" not in r["way"]  # every run fine-tunes a checkpoint
        if r["device"].startswith("CPU"):
            assert "cpu_offload" not in r["way"] and "torchrun" not in r["way"]
        if r["device"].startswith("T4"):
            assert "bfloat16" not in r["way"]  # sm75 has no bf16
    # the case: Qwen3-8B full on a 24 GiB CPU: only LoRA with its base in bf16 fits
    fitting = [r["way"] for r in rows if r["run"] == "Qwen3-8B full" and r["device"] == "CPU 24 GiB" and r["fits"]
               and r["way"] != "(as configured)"]
    assert fitting and all("LoRAConfig" in w and "precision='bfloat16'" in w for w in fitting)
    # a way that does not lower the estimate is never listed
    assert all(r["estimate"] < next(c["estimate"] for c in rows if (c["run"], c["device"], c["way"]) ==
                                    (r["run"], r["device"], "(as configured)"))
               for r in rows if r["way"] != "(as configured)")


def test_lora_is_priced_with_its_base_in_the_compute_dtype(bench):
    """fp32 on the CPU (its default), fp16 on the T4, bf16 on the L4 and H100: the frozen base is 4 or 2 bytes a
    parameter, as `build.build_model` builds it."""
    for device, bytes_per_param in [("CPU 24 GiB", 4), ("T4 16 GB", 2), ("L4 24 GB", 2), ("H100 80 GB", 2)]:
        _, _, est, _ = bench.advice("Qwen3-8B", True, device)
        compute_copy = (bytes_per_param if bytes_per_param < 4 else 0) * est.trainable
        assert est.weights == bytes_per_param * est.params + 4 * est.trainable + compute_copy
    # on the CPU the bf16 way re-prices the base at 2 bytes
    _, _, est, ways = bench.advice("Qwen3-8B", True, "CPU 24 GiB")
    bf16 = next(w for w in ways if w.changes == {"param_dtype": "bfloat16"})
    assert est.weights - bf16.estimate.weights == 2 * est.params - 2 * est.trainable
    assert bf16.estimate.weights < 16 * GiB < est.weights


def test_t4_fits_qwen3_8b_only_with_qlora_and_the_l4_is_offered_16bit_lora(bench):
    """Issue 29: Qwen3-8B, r=16, packs of 2048, recompute on. On a 16 GB T4 (fp16: sm75 has no bf16) QLoRA fits with
    its estimate, while the full fine-tune and LoRA on a 16-bit base do not, and the advice for those two is QLoRA.
    On a 24 GB L4 the full fine-tune is offered LoRA on a bf16 base (QLoRA only where no 16-bit LoRA fits)."""
    from xtuner_nb.model.qlora import nf4_bytes

    rows = bench.qlora_matrix(check=True)  # every fitting way rebuilt on the meta device and re-estimated
    as_is = {(r["run"], r["device"]): r for r in rows if r["way"] == "(as configured)"}
    t4, l4 = "T4 16 GB", "L4 24 GB"
    assert as_is[("Qwen3-8B QLoRA", t4)]["fits"] and as_is[("Qwen3-8B QLoRA", t4)]["estimate"] < 14.5
    assert not as_is[("Qwen3-8B full", t4)]["fits"] and not as_is[("Qwen3-8B LoRA", t4)]["fits"]
    for run in ("Qwen3-8B full", "Qwen3-8B LoRA"):
        fitting = [r["way"] for r in rows if (r["run"], r["device"]) == (run, t4) and r["fits"]
                   and r["way"] != "(as configured)"]
        assert fitting and all("quantize_base='nf4'" in w for w in fitting)
    offered = [r for r in rows if (r["run"], r["device"]) == ("Qwen3-8B full", l4) and r["way"] != "(as configured)"]
    assert any(r["fits"] and r["way"].startswith("lora_cfg=LoRAConfig(r=16)") for r in offered)
    assert not any("quantize_base" in r["way"] for r in offered)

    # the estimate counts the decoder linears at 4 bits with their block scales, the rest of the base at 2 bytes
    _, _, lora, _ = bench.advice("Qwen3-8B", bench.QLORA_RUNS["LoRA"], t4, pack=2048, recompute=1.0)
    _, _, qlora, _ = bench.advice("Qwen3-8B", bench.QLORA_RUNS["QLoRA"], t4, pack=2048, recompute=1.0)
    cfg = lora.inputs["model_cfg"]
    a, h, inter = cfg.attention, cfg.hidden_size, cfg.intermediate_size
    q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
    sizes = [h * q, h * kv, h * kv, q * h, h * inter, h * inter, inter * h]
    decoder = cfg.num_hidden_layers * sum(sizes)
    assert decoder == pytest.approx(6.95e9, rel=0.01)
    quantized = cfg.num_hidden_layers * sum(nf4_bytes(n, 2) for n in sizes)
    assert quantized / decoder == pytest.approx(0.5 + 1 / 64, rel=0.001)  # 4 bits + an int8 absmax per 64
    assert lora.weights - qlora.weights == 2 * decoder - quantized
