"""Llama, Qwen2 and Qwen3 checkpoints through the same Trainer: config read from config.json, packed varlen attention
and chunked loss against transformers' own model, LoRA targets, exact resume, HF export, FSDP2 under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.helpers import losses, reference_token_mean, small_config

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
ARCHS = ["llama", "qwen2", "qwen3"]
NEW_ARCHS = ["llama", "qwen2"]  # Qwen3's resume, export and LoRA: test_trainer.py and test_lora.py


def _tiny_cfg(arch: str):
    """A small model of each architecture, with what makes it differ from the others switched on."""
    from xtuner_nb.model import LlamaDenseTinyConfig, Qwen2DenseTinyConfig, Qwen3DenseTinyConfig

    if arch == "llama":  # untied lm_head, Llama 3's scaled RoPE, MLP bias (Llama's mlp_bias)
        return LlamaDenseTinyConfig(num_hidden_layers=2, tie_word_embeddings=False, mlp_bias=True,
                                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    if arch == "qwen2":  # q/k/v bias, no o bias
        return Qwen2DenseTinyConfig(num_hidden_layers=2)
    return Qwen3DenseTinyConfig(num_hidden_layers=2)


@pytest.fixture(scope="module", params=ARCHS)
def arch_ckpt(request, tmp_path_factory):
    from xtuner_nb.model import make_tiny_checkpoint

    arch = request.param
    return arch, make_tiny_checkpoint(tmp_path_factory.mktemp(arch) / arch, _tiny_cfg(arch), seed=0)


def _config(ckpt, work_dir, **over):
    """The shared small config, but without model_cfg: the Trainer reads it from load_from's config.json."""
    cfg = small_config(ckpt, work_dir, **over).to_dict()
    del cfg["model_cfg"]
    from xtuner_nb.train import TrainerConfig

    return TrainerConfig.from_dict(cfg)


def _hf(path, **kw):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa", **kw).eval()


def test_config_class_from_model_type_and_unsupported_types_refused(arch_ckpt, tmp_path):
    from xtuner_nb.model import (LlamaDenseConfig, Qwen2DenseConfig, Qwen3DenseConfig, TransformerConfig,
                                 model_config_from_hf)

    arch, ckpt = arch_ckpt
    cfg = model_config_from_hf(ckpt)
    assert type(cfg) is {"llama": LlamaDenseConfig, "qwen2": Qwen2DenseConfig, "qwen3": Qwen3DenseConfig}[arch]
    assert cfg.model_dump() == _tiny_cfg(arch).model_dump()  # every field round-trips through config.json
    assert TransformerConfig.from_hf(ckpt) == cfg
    assert json.loads((ckpt / "config.json").read_text())["architectures"] == [cfg.hf_model_class]

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**json.loads((ckpt / "config.json").read_text()),
                                                   "model_type": "mistral"}))
    with pytest.raises(ValueError, match=r"config.json: model_type 'mistral' is not supported; supported dense "
                                         r"architectures: 'qwen3' \(Qwen3DenseConfig\), 'qwen2' "
                                         r"\(Qwen2DenseConfig\), 'llama' \(LlamaDenseConfig\)"):
        model_config_from_hf(other)
    with pytest.raises(ValueError, match="model_type is .* expected"):
        (Qwen2DenseConfig if arch != "qwen2" else LlamaDenseConfig).from_hf(ckpt)


def test_step1_loss_on_packs_equals_transformers_token_mean(arch_ckpt, tmp_path):
    """Packed varlen attention + chunked loss == transformers' own model run on each sample alone (fp32, 1e-5)."""
    from xtuner_nb.loss import CELossConfig
    from xtuner_nb.train import Trainer

    arch, ckpt = arch_ckpt
    trainer = Trainer.from_config(_config(ckpt, tmp_path, total_step=1, global_batch_size=2, checkpoint_interval=None,
                                          loss_cfg=CELossConfig(mode="chunk", chunk_size=64)))
    assert type(trainer.model_cfg).model_type == arch
    assert trainer.model.config._attn_implementation == "xtuner_varlen"
    trainer.loader.set_epoch(1)
    packs = next(iter(trainer.loader))
    assert max(len(p["cu_seq_lens"]) - 1 for p in packs) >= 3  # several samples share a pack
    trainer.fit()
    assert losses(trainer)[0] == pytest.approx(reference_token_mean(ckpt, packs), abs=1e-5)


@pytest.mark.parametrize("arch_ckpt", NEW_ARCHS, indirect=True)
def test_exact_resume_and_hf_export_load_in_transformers(arch_ckpt, tmp_path):
    from xtuner_nb.train import Trainer

    arch, ckpt = arch_ckpt
    ref = Trainer.from_config(_config(ckpt, tmp_path / "ref", total_step=3, checkpoint_interval=None))
    ref.fit()
    first = Trainer.from_config(_config(ckpt, tmp_path / "run", total_step=3, checkpoint_interval=2))
    first.total_step = 2  # as if the kernel died after the step-2 checkpoint
    first.fit()
    first.close()
    again = Trainer.from_config(_config(ckpt, tmp_path / "run", total_step=3, checkpoint_interval=2,
                                        auto_resume=True))
    assert again.cur_step == 2
    again.fit()
    assert losses(again) == pytest.approx(losses(ref), abs=1e-6)

    hf = again.exp_dir / "hf-3"
    assert json.loads((hf / "config.json").read_text())["model_type"] == arch
    exported = _hf(hf)
    trained = again.model.state_dict()
    for name, p in exported.state_dict().items():  # bf16 on disk: the trained fp32 weights rounded once
        assert torch.equal(p, trained[name].to(torch.bfloat16).float()), name


@pytest.mark.parametrize("arch_ckpt", NEW_ARCHS, indirect=True)
def test_lora_targets_every_linear_layer_and_merged_export_matches(arch_ckpt, tmp_path):
    from xtuner_nb.model import DECODER_LINEAR_MODULES, LoRAConfig, model_config_from_hf
    from xtuner_nb.model.hf_save import save_lora_hf
    from xtuner_nb.train import Trainer

    arch, ckpt = arch_ckpt
    cfg = model_config_from_hf(ckpt)
    base = _hf(ckpt)
    linears = {n.rsplit(".", 1)[-1] for n, m in base.model.layers.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linears == set(DECODER_LINEAR_MODULES) == set(LoRAConfig().target_modules)

    from xtuner_nb.config import AdamWConfig

    t = Trainer.from_config(_config(ckpt, tmp_path, total_step=2, lora_cfg=LoRAConfig(r=4, lora_alpha=8),
                                    optim_cfg=AdamWConfig(lr=1e-2), checkpoint_interval=None, hf_interval=None,
                                    debug_skip_save=True))
    t.fit()
    adapted = {n for n, m in t.model.named_modules() if hasattr(m, "lora_A")}
    assert len(adapted) == len(linears) * cfg.num_hidden_layers
    ids = torch.tensor([[1, 5, 9, 200, 17, 33, 1000, 4, 60, 61]])
    t.model.eval()
    with torch.no_grad():
        ours = t.model(input_ids=ids).logits.float()
        before = base(input_ids=ids).logits
    assert (ours - before).abs().max() > 1e-2  # the adapters changed the model
    merged = save_lora_hf(t.model, t.model.state_dict(), t.model_cfg, t.config.lora_cfg, tmp_path / "merged",
                          tokenizer=t.tokenizer, dtype=torch.float32)
    with torch.no_grad():
        assert (_hf(merged)(input_ids=ids).logits - ours).abs().max().item() < 1e-4


@pytest.mark.slow
def test_torchrun_two_ranks_fsdp2_per_decoder_layer_llama(tmp_path):
    """FSDP2 shards each LlamaDecoderLayer; two CPU ranks give the losses of one process."""
    from xtuner_nb.model import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "llama", _tiny_cfg("llama"), seed=0)
    script = REPO / "tests/train/fit_script.py"
    over = json.dumps({"total_step": 2, "global_batch_size": 2})

    def run(name, *launcher):
        out = subprocess.run([*launcher, str(script), str(ckpt), str(tmp_path / name), over],
                             capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return out

    one = run("one", sys.executable)
    two = run("two", sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2")
    assert "shard by shard (meta-device build, 2 ranks)" in two.stderr and "LlamaDenseConfig" in two.stderr
    get = lambda out: [float(line.split()[2]) for line in out.stdout.splitlines() if line.startswith("LOSS")]  # noqa
    assert len(get(two)) == 2 and get(two) == pytest.approx(get(one), abs=1e-4)
