"""FLOPs per token, peak FLOP/s table and MFU, against numbers worked out by hand."""

import json

import pytest
import torch

from xtuner_nb.model import Qwen3Dense0P6BConfig, Qwen3Dense8BConfig
from xtuner_nb.train.flops import (device_peak_flops, effective_attn_len, flops_per_token, mfu,
                                   peak_flops_for_name)


def test_qwen3_8b_flops_per_token_by_hand():
    # hidden 4096, 36 layers, 32 q heads x 128, 8 kv heads x 128, MLP 12288, vocab 151936, untied.
    attn = 4096 * 4096 + 2 * 4096 * 1024 + 4096 * 4096 + 2 * 128  # q, k+v, o projections, q/k norms
    assert attn == 41_943_296
    per_layer = attn + 3 * 4096 * 12288 + 2 * 4096  # + MLP + two RMSNorms = 192_946_432
    non_embedding = 36 * per_layer + 4096  # + final norm = 6_946_075_648
    lm_head = 151936 * 4096  # 622_329_856
    assert non_embedding + lm_head == 7_568_405_504
    # 6 * 7_568_405_504 = 45_410_433_024 ; 12 * 36 * 4096 * 4096 = 7_247_757_312
    assert flops_per_token(Qwen3Dense8BConfig(), 4096) == 52_658_190_336
    assert flops_per_token(Qwen3Dense8BConfig(), 0) == 45_410_433_024


def test_lora_over_a_frozen_base_by_hand():
    # Qwen3-8B (7_568_405_504 matmul parameters, above) with 43_646_976 adapter parameters (r=16 on all 7 linears of
    # 36 layers): the base costs 4 FLOPs a parameter (no weight gradient), the adapters 6
    base = 4 * 7_568_405_504 + 6 * 43_646_976 + 12 * 36 * 4096 * 4096
    assert flops_per_token(Qwen3Dense8BConfig(), 4096, adapter_params=43_646_976) == base
    assert base / flops_per_token(Qwen3Dense8BConfig(), 4096) == pytest.approx(0.72, abs=0.01)


def test_tied_lm_head_still_costs_its_matmul():
    # Qwen3-0.6B (tied in its HF config.json; XTuner's preset unties it): 28 layers x 15_730_944 + 1024 =
    # 440_467_456 non-embedding, lm_head 151936 * 1024.
    cfg = Qwen3Dense0P6BConfig(tie_word_embeddings=True)
    # 6 * (440_467_456 + 155_582_464) + 12 * 28 * 2048 * 1000
    assert flops_per_token(cfg, 1000) == 3_576_299_520 + 688_128_000 == 4_264_427_520


def test_packed_effective_length_sums_per_sample_attention():
    lens = [1000, 24]
    assert effective_attn_len(lens) == (1000**2 + 24**2) / 1024 == 977.125
    assert effective_attn_len(torch.tensor([0, 1000, 1024]).diff()) == 977.125
    cfg = Qwen3Dense8BConfig()
    packed = flops_per_token(cfg, effective_attn_len(lens)) * sum(lens)
    separate = sum(flops_per_token(cfg, n) * n for n in lens)
    assert packed == pytest.approx(separate, rel=1e-12)
    assert effective_attn_len([]) == 0.0
    with pytest.raises(ValueError):
        flops_per_token(cfg, -1)


@pytest.mark.parametrize("name, dtype, peak", [
    ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989e12),
    ("NVIDIA H100 PCIe", torch.bfloat16, 756e12),
    ("NVIDIA H200", torch.bfloat16, 989e12),
    ("NVIDIA A100-SXM4-80GB", torch.float16, 312e12),
    ("NVIDIA L4", torch.bfloat16, 121e12),
    ("NVIDIA L40S", torch.bfloat16, None),  # not the L4
    ("Tesla T4", torch.float16, 65e12),
    ("Tesla T4", torch.bfloat16, None),
    ("NVIDIA GeForce RTX 4090", torch.bfloat16, 165e12),
    ("NVIDIA H100 80GB HBM3", torch.float32, None),
    ("Some Future GPU", torch.bfloat16, None),
])
def test_peak_flops_by_device_name(name, dtype, peak):
    assert peak_flops_for_name(name, dtype) == peak


def test_cpu_peak_is_the_best_this_machine_has_shown_and_mfu_divides_by_it(tmp_path, monkeypatch):
    """A CPU's peak is the matmul speed measured here, in the dtype asked for, once per process, kept in the cache
    under this machine's key as the best seen: a figure stored on a busy machine (low) is replaced by the next
    process's measurement, a higher stored one is kept."""
    from xtuner_nb.train import cpu_peak

    monkeypatch.setenv("XTUNER_NB_CACHE", str(tmp_path))
    cpu_peak._cached.cache_clear()
    measured = cpu_peak.measured_cpu_peak()
    assert measured["float32"] > 1e8 and measured["bfloat16"] > 1e6  # FLOP/s: even a busy 1-core VM does more
    (key, stored), = json.loads((tmp_path / "cpu_peak.json").read_text()).items()
    assert f"threads={torch.get_num_threads()}" in key and stored == measured

    (tmp_path / "cpu_peak.json").write_text(json.dumps({key: {"float32": 1.0, "bfloat16": 1.0}}))  # a busy day's
    cpu_peak._cached.cache_clear()
    healed = cpu_peak.measured_cpu_peak()
    assert healed["float32"] > 1e8 and healed["bfloat16"] > 1e6
    assert json.loads((tmp_path / "cpu_peak.json").read_text())[key] == healed

    # figures above any CPU's: kept, and MFU and the precision reason read them
    (tmp_path / "cpu_peak.json").write_text(json.dumps({key: {"float32": 4e15, "bfloat16": 1e15}}))
    cpu_peak._cached.cache_clear()
    assert device_peak_flops("cpu", torch.float32) == 4e15 and device_peak_flops("cpu", torch.bfloat16) == 1e15
    assert mfu(1000.0, 1e12, device_peak_flops(torch.device("cpu"), torch.float32)) == pytest.approx(0.25)
    assert ("bf16 matmuls measured 1000000.0 GFLOP/s here against fp32's 4000000 (slower than fp32 on this CPU)"
            in cpu_peak.cpu_precision_reason())
    from xtuner_nb.env import env_report

    assert "bf16 matmuls measured 1000000.0 GFLOP/s" in str(env_report())  # the report asks the same decision
    cpu_peak._cached.cache_clear()


def test_measuring_the_cpu_peak_leaves_the_global_rng_alone():
    """Each process measures once: were the global generator drawn from, a torchrun worker or a resumed run (which
    measure) would get other dropout masks than the process they are compared with (which measured earlier)."""
    from xtuner_nb.train import cpu_peak

    before = torch.get_rng_state()
    cpu_peak._measure()
    assert torch.equal(torch.get_rng_state(), before)


def test_mfu_by_hand():
    # 3000 tokens/s/GPU of Qwen3-8B at 4096 on an H100: 3000 * 52_658_190_336 / 989e12
    assert mfu(3000, 52_658_190_336, 989e12) == pytest.approx(0.159731619, rel=1e-8)
