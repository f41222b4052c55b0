"""LoRA (peft) in the Trainer: adapter-only training, merged + adapter exports, exact resume, one wrapping, torchrun."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from tests.train.helpers import losses, small_config

IDS = torch.tensor([[1, 5, 9, 200, 17, 33, 1000, 4, 2047, 60, 61, 62, 7, 8, 300, 12]])


def _lora(**kw):
    from xtuner_nb.model import LoRAConfig

    return LoRAConfig(**{"r": 4, "lora_alpha": 8, **kw})


def _logits(model, ids=IDS):
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ids).logits.float()
    model.train(was)
    return out


def _hf(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()


def test_only_adapters_are_trainable_get_gradients_and_reach_the_optimizer(tiny_ckpt, tmp_path):
    from xtuner_nb.config import AdamWConfig
    from xtuner_nb.notebook.memory import estimate_memory
    from xtuner_nb.train import Trainer

    cfg = small_config(tiny_ckpt, tmp_path, total_step=2, lora_cfg=_lora(), debug_skip_save=True,
                       optim_cfg=AdamWConfig(lr=1e-2))
    t = Trainer.from_config(cfg)
    named = dict(t.model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * 7 * cfg.model_cfg.num_hidden_layers  # A and B on every linear of every layer
    assert all(named[n].dtype == torch.float32 for n in trainable)
    in_optimizer = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(named[n]) for n in trainable}
    n_trainable = sum(named[n].numel() for n in trainable)
    # the notebook's memory estimate counts the same adapters from the same config
    assert estimate_memory(cfg.model_cfg, 256, lora=cfg.lora_cfg).trainable == n_trainable

    got_grad = set()
    for n in trainable:
        named[n].register_post_accumulate_grad_hook(lambda p, n=n: got_grad.add(n))
    frozen_before = {n: p.detach().clone() for n, p in named.items() if not p.requires_grad}
    lora_before = {n: named[n].detach().clone() for n in trainable}
    t.fit()
    assert got_grad == trainable
    assert all(torch.equal(named[n], v) for n, v in frozen_before.items())  # the base never moves
    assert all(not torch.equal(named[n], v) for n, v in lora_before.items() if ".lora_B." in n)
    assert any(not torch.equal(named[n], v) for n, v in lora_before.items() if ".lora_A." in n)

    # MFU counts the frozen base's FLOPs (no weight gradient) and the adapters': each step's row says so
    from xtuner_nb.train.flops import device_peak_flops, flops_per_token

    row = t.history.iloc[-1]
    per_flop = row["runtime_info/total_text_tokens"] / row["time/step_time"] / device_peak_flops("cpu", torch.float32)
    # the attended length is between 0 and the pack's 256 tokens
    low, high = (per_flop * flops_per_token(cfg.model_cfg, s, n_trainable) for s in (0.0, 256.0))
    assert low <= row["runtime_info/mfu"] <= high
    assert per_flop * flops_per_token(cfg.model_cfg, 0.0) > high  # what counting the base's weight gradients gave


def test_merged_export_and_peft_adapter_reproduce_the_adapted_model(tiny_ckpt, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    from xtuner_nb.config import AdamWConfig
    from xtuner_nb.model.hf_save import save_lora_hf
    from xtuner_nb.train import Trainer

    t = Trainer.from_config(small_config(tiny_ckpt, tmp_path, total_step=3, lora_cfg=_lora(),
                                         optim_cfg=AdamWConfig(lr=1e-2), checkpoint_interval=None))
    t.fit()
    adapted = _logits(t.model)
    base = _hf(tiny_ckpt)
    assert (adapted - _logits(base)).abs().max() > 1e-2  # the adapters changed the model (so the checks bite)

    # merged weights, exported in fp32: the same function as the adapted model
    fp32 = save_lora_hf(t.model, t.model.state_dict(), t.model_cfg, t.config.lora_cfg, tmp_path / "fp32",
                        tokenizer=t.tokenizer, dtype=torch.float32)
    assert (_logits(_hf(fp32)) - adapted).abs().max().item() < 1e-4

    # the Trainer's own export hf-3 (bf16): exactly the fp32 merge rounded once; loads as a plain HF model
    hf = t.exp_dir / "hf-3"
    ours, ref = load_file(hf / "model.safetensors"), load_file(fp32 / "model.safetensors")
    assert ours.keys() == ref.keys() and all(ours[k].dtype == torch.bfloat16 for k in ours)
    assert all(torch.equal(ours[k], ref[k].to(torch.bfloat16)) for k in ours)
    assert (_logits(_hf(hf)) - adapted).abs().max().item() < 5e-2  # bf16 weights

    # hf-3/adapter is a peft adapter: on the base model it gives the adapted logits, and peft's merge = ours
    adapter = hf / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_ckpt)
    peft_model = PeftModel.from_pretrained(base, adapter)
    assert (_logits(peft_model) - adapted).abs().max().item() < 1e-5
    merged_by_peft = peft_model.merge_and_unload().state_dict()
    fp32_weights = load_file(fp32 / "model.safetensors")
    for k, v in fp32_weights.items():
        assert torch.allclose(v, merged_by_peft[k], atol=1e-6), k


def test_lora_resume_in_a_new_trainer_is_exact_and_checkpoints_hold_adapters_only(tiny_ckpt, tmp_path):
    from torch.distributed.checkpoint import FileSystemReader

    from xtuner_nb.train import Trainer

    over = dict(total_step=4, global_batch_size=2, lora_cfg=_lora(), hf_interval=100)
    ref = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "ref", **over))
    ref.fit()
    first = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "run", checkpoint_interval=2, **over))
    first.total_step = 2  # as if the kernel died after the step-2 checkpoint
    first.fit()
    first.close()
    ck = next((tmp_path / "run").glob("*/checkpoints/ckpt-step-2"))
    keys = FileSystemReader(str(ck / "weights")).read_metadata().state_dict_metadata
    model_keys = [k for k in keys if k.startswith("model.")]
    assert model_keys and all(".lora_" in k for k in model_keys)  # the frozen base comes from load_from
    assert any(k.startswith("optimizer.state.") and ".lora_" in k for k in keys)

    again = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "run", checkpoint_interval=2, auto_resume=True,
                                             **over))
    assert again.cur_step == 2
    again.fit()
    assert losses(again)[2:] == pytest.approx(losses(ref)[2:], abs=1e-6)
    assert len(losses(again)) == 4


def test_one_wrapping_when_a_cell_is_rerun_or_a_run_resumed_and_mismatched_resumes_refused(tiny_ckpt, tmp_path):
    from peft.tuners.lora import LoraLayer

    from xtuner_nb.model.lora import apply_lora
    from xtuner_nb.train import Trainer

    def lora_layers(model):
        names = [n for n, m in model.named_modules() if isinstance(m, LoraLayer)]
        assert not any(".base_layer." in n for n in names)  # no LoRA layer inside another one
        return len(names)

    cfg = small_config(tiny_ckpt, tmp_path, total_step=1, lora_cfg=_lora())
    expected = 7 * cfg.model_cfg.num_hidden_layers
    t1 = Trainer.from_config(cfg)
    t1.fit()
    assert lora_layers(t1.model) == expected
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        apply_lora(t1.model, cfg.lora_cfg)

    resumed = Trainer.from_config(cfg.model_copy(update={"auto_resume": True}))
    assert lora_layers(t1.model) == expected  # a new Trainer leaves the previous one whole (and unwrapped twice)
    assert resumed.cur_step == 1 and lora_layers(resumed.model) == expected
    t1.close()
    resumed.close()

    hf = next(tmp_path.glob("*/hf-1"))
    bad = {
        "another LoRAConfig": dict(lora_cfg=_lora(r=8)),
        "another base model": dict(load_from=hf),  # the merged export already holds the adapters
        "lora_cfg=None": dict(lora_cfg=None),
    }
    for message, update in bad.items():
        with pytest.raises(ValueError, match=message):
            Trainer.from_config(cfg.model_copy(update={"auto_resume": True, **update}))

    t2 = Trainer.from_config(cfg)  # the building cell run again: a fresh base, wrapped once
    t3 = Trainer.from_config(cfg)
    assert lora_layers(t2.model) == lora_layers(t3.model) == expected


def test_lora_config_validation_and_round_trip(tiny_ckpt):
    from pydantic import ValidationError

    from xtuner_nb.model import LoRAConfig, Qwen3DenseConfig
    from xtuner_nb.model.lora import apply_lora
    from xtuner_nb.train import TrainerConfig

    c = LoRAConfig()
    assert (c.r, c.lora_alpha, c.lora_dropout, c.modules_to_save) == (16, 32, 0.0, None)
    assert c.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfg = TrainerConfig(model_cfg=Qwen3DenseConfig.from_hf(tiny_ckpt), lora_cfg={"r": 8})
    assert TrainerConfig.from_json(cfg.to_json()).lora_cfg == LoRAConfig(r=8)
    assert "lora_cfg=LoRAConfig(r=8)" in cfg.to_python()
    with pytest.raises(ValidationError, match="target_modules is empty"):
        LoRAConfig(target_modules=[])
    model = cfg.model_cfg.build()
    with pytest.raises(ValueError, match=r"\['qkv'\] match no layer.*'q_proj'"):
        apply_lora(model, LoRAConfig(target_modules=["qkv"]))
    with pytest.raises(ValueError, match="tie_word_embeddings"):  # the tiny model ties lm_head to the embedding
        apply_lora(model, LoRAConfig(modules_to_save=["lm_head"]))


def test_torchrun_two_cpu_ranks_fsdp2_trains_lora(tiny_ckpt, tmp_path):
    from peft import PeftModel

    from tests.train.test_subprocess import SCRIPT, _losses, _run

    from xtuner_nb.train import Trainer

    over = {"total_step": 2, "global_batch_size": 2, "lora_cfg": {"r": 4, "lora_alpha": 8},
            "optim_cfg": {"lr": 1e-2}}
    two = _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
                str(SCRIPT), str(tiny_ckpt), str(tmp_path / "two"), json.dumps(over)])
    assert two.returncode == 0, two.stderr[-3000:]
    one = Trainer.from_config(small_config(tiny_ckpt, tmp_path / "one", **over))
    one.fit()
    l2 = _losses(two.stdout)
    assert sorted(l2) == [1, 2]
    assert [l2[1], l2[2]] == pytest.approx(losses(one), abs=1e-4)  # step 2 runs on the adapters of step 1
    hf = next((tmp_path / "two").glob("*/hf-2"))  # gathered from the FSDP2 shards on rank 0
    adapted = _logits(PeftModel.from_pretrained(_hf(tiny_ckpt), hf / "adapter"))
    assert (adapted - _logits(one.model)).abs().max().item() < 1e-3
    assert (_logits(_hf(hf)) - adapted).abs().max().item() < 5e-2  # the merged bf16 export
    assert list((tmp_path / "two").glob("*/checkpoints/ckpt-step-2/train_state.json"))
