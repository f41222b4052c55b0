"""The memory estimate's arithmetic: by hand, against the tensors autograd really keeps, against the parameters the
build really makes, and (on this CPU) against the peak RSS of real runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xtuner_nb.config import FSDPConfig
from xtuner_nb.model import LlamaDenseTinyConfig, LoRAConfig, Qwen3Dense8BConfig, Qwen3DenseTinyConfig
from xtuner_nb.train.memory import (GiB, builds_on_meta, estimate_memory, estimate_run, layer_activation_bytes,
                                    layer_forward_temporaries, lora_params)
from xtuner_nb.train.precision import choose_precision

from .helpers import small_config

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


def test_tiny_param_count_by_hand():
    # attn 128*128 + 2*128*64 + 128*128 + 2*32 (q/k norms); mlp 3*128*384; 2 norms; 4 layers; final norm;
    # tied embedding 2048*128
    per_layer = (128 * 128 + 2 * 128 * 64 + 128 * 128 + 2 * 32) + 3 * 128 * 384 + 2 * 128
    assert Qwen3DenseTinyConfig().num_params() == 4 * per_layer + 128 + 2048 * 128 == 1_049_984


def test_weights_grads_optimizer_logits_exact():
    cfg = Qwen3DenseTinyConfig()
    P = 1_049_984
    e = estimate_memory(cfg, pack_max_length=2048, loss_mode="eager")
    assert (e.params, e.trainable) == (P, P)
    assert e.weights == P * (4 + 2)  # fp32 master + bf16 compute copy
    assert e.gradients == P * 4
    assert e.optimizer == P * 8  # AdamW: exp_avg + exp_avg_sq in fp32
    assert e.logits == 2048 * 2048 * 4 * 2 == 33_554_432
    assert estimate_memory(cfg, 2048, loss_mode="chunk", chunk_size=1024).logits == 1024 * 2048 * 8
    assert estimate_memory(cfg, 512, loss_mode="chunk", chunk_size=1024).logits == 512 * 2048 * 8  # chunk > L
    fp32 = estimate_memory(cfg, 2048, param_dtype="float32")
    assert fp32.weights == P * 4  # the master copy is the compute copy
    big = Qwen3Dense8BConfig()
    sharded = estimate_memory(big, 4096, world_size=8)
    assert sharded.weights == big.num_params() * 6 // 8 and sharded.optimizer == big.num_params() * 8 // 8
    assert estimate_memory(big, 4096, world_size=8, fsdp=False).gradients == big.num_params() * 4
    assert e.total == sum(e.parts().values())


def test_lora_counts_only_adapters_as_trainable():
    cfg = Qwen3DenseTinyConfig()
    # rank 8 on q_proj (128 -> 128) and v_proj (128 -> 64) of 4 layers
    assert lora_params(cfg, 8, ["q_proj", "v_proj"]) == 4 * 8 * ((128 + 128) + (128 + 64)) == 14_336
    e = estimate_memory(cfg, 2048, lora={"rank": 8, "targets": ["q_proj", "v_proj"]})
    assert e.trainable == 14_336
    assert (e.gradients, e.optimizer) == (14_336 * 4, 14_336 * 8)
    assert e.weights == 14_336 * 6 + 1_049_984 * 2  # adapters fp32+bf16, frozen base bf16 only
    from xtuner_nb.model.lora import LoRAConfig

    assert estimate_memory(cfg, 2048, lora=LoRAConfig(r=8, target_modules=["q_proj", "v_proj"])).trainable == 14_336
    untied = Qwen3DenseTinyConfig(tie_word_embeddings=False)
    head = estimate_memory(untied, 2048, lora=LoRAConfig(r=8, target_modules=["q_proj"], modules_to_save=["lm_head"]))
    assert head.trainable == 4 * 8 * (128 + 128) + 2048 * 128
    with pytest.raises(ValueError, match="unknown LoRA target"):
        lora_params(cfg, 8, ["qkv"])


def test_activation_formula_by_hand_and_recompute():
    cfg = Qwen3DenseTinyConfig()  # h 128, q 128, kv 64, I 384, 4 heads, 2 kv heads
    per_tok = 2 * (4 + 4) * 128 + (4 + 6) * (128 + 64) + 8 * 384 + 4 * (2 + 8 + 2)
    assert per_tok == 2048 + 1920 + 3072 + 48
    assert layer_activation_bytes(cfg, 2048, 2) == 2048 * per_tok
    head = 2048 * (4 + 6) * 128
    kept = 2048 * 128 * 2
    full_recompute = estimate_memory(cfg, 2048, recompute_ratio=1.0)
    assert full_recompute.activations == 4 * kept + 2048 * per_tok + head
    none = estimate_memory(cfg, 2048, recompute_ratio=0.0)
    assert none.activations == 4 * 2048 * per_tok + head
    half = estimate_memory(cfg, 2048, recompute_ratio=0.5)
    assert half.activations == 2 * kept + 2 * 2048 * per_tok + 2048 * per_tok + head


@pytest.mark.parametrize("config_class", [Qwen3DenseTinyConfig, LlamaDenseTinyConfig])
def test_activation_formula_matches_what_autograd_saves(config_class):
    """Sum the tensors autograd keeps for one real transformers decoder layer (bf16) and compare: Qwen3 with q/k
    norms, Llama (SmolLM2's architecture) without."""
    cfg = config_class(hidden_size=256, intermediate_size=768, num_hidden_layers=1)
    model = cfg.build(dtype=torch.bfloat16)
    n = 256
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in params:
            saved[key] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(1, n, 256, dtype=torch.bfloat16, requires_grad=True)
    pos = torch.arange(n)[None]
    cos_sin = model.model.rotary_emb(x, pos)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model.layers[0](x, position_embeddings=cos_sin, position_ids=pos, attention_mask=None)
    rope_tables = sum(t.untyped_storage().nbytes() for t in cos_sin)  # shared by all layers
    measured = sum(saved.values()) - rope_tables
    assert measured == pytest.approx(layer_activation_bytes(cfg, n, 2), rel=0.03)


@pytest.mark.parametrize("config_class", [Qwen3DenseTinyConfig, LlamaDenseTinyConfig])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_forward_temporaries_match_what_torch_allocates(config_class, lora):
    """Every tensor a real decoder layer's forward allocates (a dispatch mode sees each op's new outputs) less what
    autograd keeps: what the CPU allocator part is a share of."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from xtuner_nb.model.lora import apply_lora

    class Allocated(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                      if isinstance(t, torch.Tensor)}
            self.total += sum(t.untyped_storage().nbytes() for t in tree_flatten(out)[0]
                              if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs)
            return out

    cfg = config_class(hidden_size=256, intermediate_size=768, num_hidden_layers=1)
    model = cfg.build(dtype=torch.float32)
    if lora:
        model = apply_lora(model, LoRAConfig(r=16))
    inner = model.base_model.model.model if lora else model.model
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    n = 256
    x = torch.randn(1, n, 256, requires_grad=True)
    pos = torch.arange(n)[None]
    cos_sin = inner.rotary_emb(x, pos)
    allocated = Allocated()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), allocated:
        inner.layers[0](x, position_embeddings=cos_sin, position_ids=pos, attention_mask=None)
    measured = allocated.total - sum(saved.values())
    assert measured == pytest.approx(layer_forward_temporaries(cfg, n, 4, "all-linear" if lora else None), rel=0.05)


def test_deferred_reduce_scatter_is_counted():
    cfg = Qwen3Dense8BConfig()
    now = estimate_memory(cfg, 4096, world_size=8)
    deferred = estimate_memory(cfg, 4096, world_size=8, defer_reduce_scatter=True)
    assert deferred.gradients - now.gradients == 2 * cfg.num_params() - 2 * cfg.num_params() // 8


@pytest.mark.parametrize("lora", [None, LoRAConfig(r=8, target_modules=["q_proj", "v_proj"])], ids=["full", "lora"])
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_weights_are_what_the_build_allocates(tiny_ckpt, tmp_path, lora, precision):
    """The parameters `build.build_model` really makes (fp32 master weights; a LoRA base in the compute dtype) are the
    estimate's weights less the compute copy that autocast adds during a step."""
    import logging

    from transformers import AutoTokenizer

    from xtuner_nb.train.build import build_model
    from xtuner_nb.train.distributed import DistInfo

    cfg = small_config(tiny_ckpt, tmp_path, lora_cfg=lora, fsdp_cfg=FSDPConfig(precision=precision))
    chosen = choose_precision(cfg.fsdp_cfg, CPU)
    parts = build_model(cfg, DistInfo(0, 1, 0, CPU), AutoTokenizer.from_pretrained(tiny_ckpt),
                        logging.getLogger("test"), chosen)
    params = list(parts.model.parameters())
    allocated = sum(p.numel() * p.element_size() for p in params)
    est = estimate_run(cfg, chosen, 1, "cpu")
    b = 2 if precision == "bfloat16" else 4
    compute_copy = b * est.trainable if b < 4 else 0
    assert allocated == est.weights - compute_copy
    assert sum(p.numel() for p in params if p.requires_grad) == est.trainable
    assert sum(p.numel() for p in params) == est.params + (est.trainable if lora else 0)  # peft adds the adapters
    if lora:
        assert {p.dtype for p in params if not p.requires_grad} == {chosen.compute}  # the frozen base


def test_estimate_run_reads_the_trainer_config(tiny_ckpt, tmp_path):
    cfg = small_config(tiny_ckpt, tmp_path, fsdp_cfg=FSDPConfig(recompute_ratio=0.5, defer_reduce_scatter=True))
    fp32 = choose_precision(cfg.fsdp_cfg, CPU)
    est = estimate_run(cfg, fp32, 1, "cpu", process_bytes=300 * 2**20)
    same = estimate_memory(cfg.model_cfg, 256, param_dtype="float32", recompute_ratio=0.5, loss_mode="eager",
                           world_size=1, fsdp=False, overhead_gib=300 / 1024, defer_reduce_scatter=True,
                           device_type="cpu")
    assert est.parts() == same.parts() and est.host_bytes == 0 and est.overhead == 300 * 2**20
    # on a GPU: the CUDA context; the model is built on the host first unless it loads weights without LoRA
    bf16 = choose_precision(cfg.fsdp_cfg, torch.device("cuda", 0), capability=(9, 0))
    assert builds_on_meta(True, False) and estimate_run(cfg, bf16, 1, "cuda").host_bytes == 0
    assert estimate_run(cfg, bf16, 1, "cuda").overhead == GiB
    lora_cfg = cfg.model_copy(update={"lora_cfg": LoRAConfig()})
    assert not builds_on_meta(True, True)
    assert estimate_run(lora_cfg, bf16, 1, "cuda").host_bytes == 2 * cfg.model_cfg.num_params()
    scratch = cfg.model_copy(update={"load_from": None})
    assert estimate_run(scratch, bf16, 1, "cuda").host_bytes == 4 * cfg.model_cfg.num_params()


def test_tutorial_estimates_are_close_to_peak_rss(tmp_path):
    """The tutorials' tiny runs (quick start, trainer page) on this CPU, each in its own process, through the bench
    script: the estimate the Trainer checked against the peak RSS the run reached, within 15 % plus 0.1 GiB. The
    process's own memory dominates here; the check measures it after the one-off costs a run pays anyway (the first
    training step, `memory.warm_up`; the curves figure, made with its hook). What it cannot measure beforehand is how
    much glibc's heap grows over the first steps (its mmap threshold adapts to the freed blocks): +0.06 GiB on the
    2-core dev VM (AVX2), +0.10 GiB on CI's machine, whose CPU runs other kernels, both measured on the trainer page's
    run. Ratios measured: 0.90 and 0.89 on the dev VM, 0.91 and 0.85 on CI's machine; SmolLM2's runs
    (bench/memory_estimate.py --cases smollm2,smollm2-long) take minutes: 0.97 to 1.06 there, where 15 % holds alone."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "memory_estimate.py"), "--cases", "tiny",
                          "--work-dir", str(tmp_path), "--json"], capture_output=True, text=True, cwd=REPO,
                         timeout=600, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2, out.stdout
    for row in rows:
        print(row)
        assert abs(row["estimate_gib"] - row["peak_rss_gib"]) <= 0.15 * row["peak_rss_gib"] + 0.1, row
        assert row["parts_gib"]["overhead"] > 0.2  # the process's own memory, measured at the check
