"""QLoRA (issue 29): `LoRAConfig(quantize_base="nf4")`, the frozen decoder linears in 4-bit NF4 (torchao) under fp32
adapters. One process, exact resume after SIGINT, the merged export against peft on the original base, GGUF from
the merged folder, torchrun with FSDP2 (the 4-bit base sharded), and a clear error when torchao is missing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from tests.train.helpers import losses, small_config
from tests.train.test_lora import _hf, _logits  # the LoRA tests' reference model and logits

pytest.importorskip("torchao", reason='QLoRA needs torchao: pip install "xtuner_nb[qlora]"')

BF16_LOGITS = 5e-2  # the LoRA tests' tolerance for a bf16 export of the tiny model


def _qlora(**kw):
    from xtuner_nb.model import LoRAConfig

    return LoRAConfig(**{"r": 4, "lora_alpha": 8, "quantize_base": "nf4", **kw})


def test_decoder_linears_are_nf4_the_rest_in_the_compute_dtype_adapters_and_adam_states_fp32(tiny_ckpt, tmp_path):
    from xtuner_nb.config import AdamWConfig
    from xtuner_nb.model.qlora import decoder_linears, dequantize, is_nf4, quantize, quantized_bytes
    from xtuner_nb.train import Trainer
    from xtuner_nb.train.memory import estimate_memory

    cfg = small_config(tiny_ckpt, tmp_path, total_step=2, lora_cfg=_qlora(), debug_skip_save=True,
                       optim_cfg=AdamWConfig(lr=1e-2))
    t = Trainer.from_config(cfg)
    linears = decoder_linears(t.model)
    assert len(linears) == 7 * cfg.model_cfg.num_hidden_layers
    assert all(is_nf4(m.weight) and not m.weight.requires_grad for _, m in linears)
    nf4_ids = {id(m.weight) for _, m in linears}
    others = [(n, p) for n, p in t.model.named_parameters() if id(p) not in nf4_ids]
    assert all(p.dtype == torch.float32 for _, p in others)  # the CPU's compute dtype: embedding, norms, adapters
    trainable = {n for n, p in others if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * len(linears)
    assert not any(p.requires_grad for n, p in others if n not in trainable)  # embedding and norms frozen

    # the 4-bit weights are torchao's own quantization of the checkpoint's values (loaded into placeholders)
    base = _hf(tiny_ckpt)
    for name, module in linears[:3]:
        hf_weight = base.get_parameter(name.replace("base_model.model.", "").replace(".base_layer", "") + ".weight")
        assert torch.equal(dequantize(module.weight), dequantize(quantize(hf_weight)))
        assert 0 < (dequantize(module.weight) - hf_weight).abs().max() < 0.2 * hf_weight.abs().max()

    # the estimate prices exactly these weights: fp32 for the rest of the base and the adapters, NF4 with its scales
    est = estimate_memory(cfg.model_cfg, 256, param_dtype="float32", lora=cfg.lora_cfg, device_type="cpu")
    plain = sum(p.numel() * p.element_size() for _, p in others)
    n_trainable = sum(p.numel() for n, p in others if n in trainable)
    assert est.trainable == n_trainable
    measured = plain + quantized_bytes(t.model)
    assert est.weights == pytest.approx(measured, rel=0.01)  # the tiny shapes use smaller scale blocks than 256

    t.fit()
    states = [s for s in t.optimizer.state.values()]
    assert len(states) == len(trainable)
    assert all(s["exp_avg"].dtype == s["exp_avg_sq"].dtype == torch.float32 for s in states)
    assert all(is_nf4(m.weight) for _, m in decoder_linears(t.model))  # training left the base in 4 bits


@pytest.mark.slow
def test_merged_export_is_the_original_base_plus_adapters_and_gguf_reads_back(qwen3_tokenizer_dir, tmp_path):
    """hf-N merges the adapters into the checkpoint's own weights (not their 4-bit rounding): peft's adapter on the
    original base gives its logits within the bf16 tolerance, and llama.cpp converts the merged folder."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from tests.model.test_gguf_export import TOLERANCE, _logits as gguf_logits
    from xtuner_nb.config import AdamWConfig
    from xtuner_nb.model import MHAConfig, Qwen3DenseConfig, save_hf
    from xtuner_nb.model.hf_save import save_lora_hf
    from xtuner_nb.train import Trainer

    tok = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir))
    # the GGUF test's model: the official tokenizer (llama.cpp converts only tokenizers it knows), head_dim 128
    cfg = Qwen3DenseConfig(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           max_position_embeddings=512, attention=MHAConfig(num_attention_heads=2,
                                                                            num_key_value_heads=1, head_dim=128))
    torch.manual_seed(0)
    base_dir = save_hf(cfg.build(dtype=torch.float32), cfg, tmp_path / "qwen3", tokenizer=tok, dtype=torch.bfloat16)
    t = Trainer.from_config(small_config(base_dir, tmp_path / "work", total_step=3, lora_cfg=_qlora(),
                                         optim_cfg=AdamWConfig(lr=2e-2), checkpoint_interval=None))
    t.fit()
    trained = _logits(t.model)
    base = _hf(base_dir)
    hf = t.exp_dir / "hf-3"
    merged = _logits(_hf(hf))
    assert (merged - _logits(base)).abs().max() > 10 * BF16_LOGITS  # the adapters are in the export

    peft_model = PeftModel.from_pretrained(base, hf / "adapter")  # the adapter on the original bf16 base
    on_original = _logits(peft_model)
    assert (on_original - merged).abs().max().item() < BF16_LOGITS
    # exactly peft's own merge into the original weights, rounded once to bf16 (the source dtype)
    fp32 = save_lora_hf(t.model, t.model.state_dict(), t.model_cfg, t.config.lora_cfg, tmp_path / "fp32",
                        tokenizer=t.tokenizer, dtype=torch.float32)
    by_peft = peft_model.merge_and_unload().state_dict()
    ours = load_file(fp32 / "model.safetensors")
    assert all(torch.allclose(v, by_peft[k], atol=1e-6) for k, v in ours.items())
    exported = load_file(hf / "model.safetensors")
    assert all(exported[k].dtype == torch.bfloat16 and torch.equal(exported[k], v.to(torch.bfloat16))
               for k, v in ours.items())
    # what training ran on (the 4-bit base) differs from the export by the NF4 rounding of the base only
    gap = (trained - merged).abs().max().item()
    print(f"trained (NF4 base) vs merged export: max |logit diff| {gap:.3f}; "
          f"peft on the original base vs merged export: {(on_original - merged).abs().max().item():.1e}")

    out = t.export_gguf()  # f16, converted by llama.cpp from hf-3
    name, got = gguf_logits(None, out)
    _, want = gguf_logits(hf)
    assert name == "Qwen3ForCausalLM" and (got - want).abs().max().item() <= TOLERANCE["f16"]


def test_sigint_mid_run_saves_and_resume_is_exact(tiny_ckpt, tmp_path):
    from tests.train.test_subprocess import ENV, REPO, SCRIPT, _losses, _run

    from xtuner_nb.train import Trainer

    over = {"total_step": 5, "global_batch_size": 2, "lora_cfg": _qlora().to_dict(with_type=False),
            "optim_cfg": {"lr": 1e-2}, "hf_interval": None}
    ref = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "ref", **over))  # the uninterrupted run
    ref.fit()
    ref_losses = dict(enumerate(losses(ref), start=1))
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(tiny_ckpt), str(tmp_path / "run"), json.dumps(over),
                             "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("LOSS 2 "):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    done = max(_losses("".join(seen) + out))
    assert 2 <= done < 5 and "Training interrupted" in err
    ckpt = next((tmp_path / "run").glob(f"*/checkpoints/ckpt-step-{done}"))
    state = json.loads((ckpt / "train_state.json").read_text())
    assert state["lora"]["config"]["quantize_base"] == "nf4" and "nf4" in state["lora"]["base"]["dtype"]

    resumed = _run([sys.executable, str(SCRIPT), str(tiny_ckpt), str(tmp_path / "run"),
                    json.dumps({**over, "auto_resume": True})])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _losses(resumed.stdout)
    assert sorted(after) == list(range(done + 1, 6))
    for step, loss in after.items():
        assert loss == pytest.approx(ref_losses[step], abs=1e-6), step

    # the same adapters on a base in the compute dtype are another run: refused, as any other LoRAConfig
    plain = {**over, "lora_cfg": {"r": 4, "lora_alpha": 8}}
    with pytest.raises(ValueError, match="another LoRAConfig"):
        Trainer.from_config(small_config(tiny_ckpt, tmp_path / "run", auto_resume=True, **plain))


def test_torchrun_two_cpu_ranks_shard_the_4bit_base_and_match_one_process(tiny_ckpt, tmp_path):
    from peft import PeftModel

    from tests.train.test_subprocess import SCRIPT, _losses, _run

    over = {"total_step": 2, "global_batch_size": 2, "lora_cfg": _qlora().to_dict(with_type=False),
            "optim_cfg": {"lr": 1e-2}}
    two = _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
                str(SCRIPT), str(tiny_ckpt), str(tmp_path / "two"), json.dumps(over)])
    assert two.returncode == 0, two.stderr[-3000:]
    assert "unwaited collective" not in two.stderr  # the export gathers the adapters only, never the 4-bit base
    # each rank holds half of every 4-bit tensor (fit_script prints rank 0's NF4 shard of the first q_proj)
    assert "NF4SHARD q_proj 8192 of 16384 4-bit codes" in two.stdout
    one = _run([sys.executable, str(SCRIPT), str(tiny_ckpt), str(tmp_path / "one"), json.dumps(over)])
    assert one.returncode == 0, one.stderr[-3000:]
    assert "NF4SHARD q_proj 16384 of 16384 4-bit codes" in one.stdout
    l1, l2 = _losses(one.stdout), _losses(two.stdout)
    assert sorted(l2) == [1, 2]
    assert [l2[1], l2[2]] == pytest.approx([l1[1], l1[2]], abs=1e-4)  # the same 4-bit values on 1 and 2 ranks
    hf1, hf2 = (next((tmp_path / d).glob("*/hf-2")) for d in ("one", "two"))
    assert (_logits(_hf(hf2)) - _logits(_hf(hf1))).abs().max().item() < BF16_LOGITS
    adapted = _logits(PeftModel.from_pretrained(_hf(tiny_ckpt), hf2 / "adapter"))
    assert (_logits(_hf(hf2)) - adapted).abs().max().item() < BF16_LOGITS


def test_without_torchao_the_error_and_the_fit_advice_name_the_extra(tiny_ckpt, tmp_path, monkeypatch):
    from xtuner_nb.model import LoRAConfig, Qwen3Dense8BConfig
    from xtuner_nb.train import Trainer
    from xtuner_nb.train.memory import estimate_memory, planned_budget, ways_to_fit

    monkeypatch.setitem(sys.modules, "torchao", None)  # as if torchao were not installed
    with pytest.raises(ImportError, match=r'pip install "xtuner_nb\[qlora\]"'):
        Trainer.from_config(small_config(tiny_ckpt, tmp_path, lora_cfg=_qlora(), debug_skip_save=True))
    est = estimate_memory(Qwen3Dense8BConfig(), 2048, param_dtype="float16", lora=LoRAConfig(r=16))
    qlora = [w for w in ways_to_fit(est, planned_budget("T4")) if "quantize_base='nf4'" in w.text]
    assert qlora and all('pip install "xtuner_nb[qlora]"' in w.text for w in qlora)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; bench/gpu_check.sh runs QLoRA there")
def test_qlora_trains_on_cuda(tiny_ckpt, tmp_path):
    from xtuner_nb.model.qlora import decoder_linears, is_nf4
    from xtuner_nb.train import Trainer

    t = Trainer.from_config(small_config(tiny_ckpt, tmp_path, lora_cfg=_qlora(), device="cuda", total_step=3,
                                         debug_skip_save=True))
    assert all(is_nf4(m.weight) and m.weight.device.type == "cuda" for _, m in decoder_linears(t.model))
    t.fit()
    assert losses(t)[-1] < losses(t)[0]
