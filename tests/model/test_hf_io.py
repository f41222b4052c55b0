"""HF folders in and out: checkpoints written by transformers load into ours, ours load into transformers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GenerationConfig, Qwen3ForCausalLM

from .model_testlib import VOCAB, small_cfg
from xtuner_nb.model import Qwen3DenseConfig, load_hf_weights, save_hf
from xtuner_nb.model.hf_save import parse_size

IDS = torch.randint(0, VOCAB, (2, 13), generator=torch.Generator().manual_seed(0))


def _hf_checkpoint(path: Path, tie: bool, dtype=torch.float32, max_shard_size="4GB", seed=0) -> Path:
    """A random Qwen3 written by transformers' own save_pretrained."""
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(small_cfg("sdpa", tie_word_embeddings=tie).hf_config).to(dtype)
    model.save_pretrained(str(path), max_shard_size=max_shard_size)
    return path


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("tie, shard", [(True, None), (False, None), (True, "100KB"), (False, "100KB")],
                         ids=["tied", "untied", "tied-sharded", "untied-sharded"])
def test_transformers_checkpoint_loads_into_ours(tmp_path, tie, shard):
    path = _hf_checkpoint(tmp_path / "ck", tie, max_shard_size=shard or "4GB")
    files = os.listdir(path)
    assert ("model.safetensors.index.json" in files) == bool(shard)
    if tie:  # transformers does not write the tied head
        keys = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"] if shard else \
            safe_open(str(path / "model.safetensors"), "pt").keys()
        assert "lm_head.weight" not in keys

    cfg = Qwen3DenseConfig.from_hf(path)
    assert cfg.tie_word_embeddings == tie
    ours = cfg.build()
    report = load_hf_weights(ours, path)
    assert not report.missing and not report.unexpected
    assert len(report.files) == len([f for f in files if f.endswith(".safetensors")])
    theirs = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    assert (_logits(ours) - _logits(theirs)).abs().max().item() < 1e-5
    # every tensor is the checkpoint's, bit for bit
    for name, p in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], p), name


def test_bf16_checkpoint_loads_into_fp32_master_weights(tmp_path):
    path = _hf_checkpoint(tmp_path / "ck", tie=False, dtype=torch.bfloat16)
    ours = Qwen3DenseConfig.from_hf(path).build()
    load_hf_weights(ours, path)
    on_disk = load_file(str(path / "model.safetensors"))
    assert on_disk["lm_head.weight"].dtype == torch.bfloat16
    assert {p.dtype for p in ours.parameters()} == {torch.float32}
    for name, t in on_disk.items():
        assert torch.equal(ours.state_dict()[name], t.float()), name


def test_our_save_loads_in_transformers_bf16_on_disk(tmp_path):
    torch.manual_seed(1)
    cfg = small_cfg("varlen", tie_word_embeddings=False)
    ours = cfg.build().eval()
    path = save_hf(ours, cfg, tmp_path / "out")

    assert sorted(os.listdir(path)) == ["config.json", "generation_config.json", "model.safetensors"]
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
        assert f.metadata() == {"format": "pt"}
    assert json.loads((path / "config.json").read_text())["dtype"] == "bfloat16"

    theirs = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    assert theirs.config._attn_implementation == "sdpa"  # our attention name never leaks into config.json
    rounded = cfg.build().eval()
    rounded.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in ours.state_dict().items()})
    assert (_logits(theirs) - _logits(rounded)).abs().max().item() < 1e-5  # exactly our weights, in bf16
    ref = _logits(ours)
    assert (_logits(theirs) - ref).abs().max().item() < 0.02 * ref.abs().max().item()  # bf16 rounding only
    # the dtype config.json records is what a plain load gives from transformers 5 on (its default is dtype="auto");
    # 4.x loads float32 unless asked for "auto"
    assert AutoModelForCausalLM.from_pretrained(str(path), dtype="auto").dtype == torch.bfloat16
    default = torch.bfloat16 if int(transformers.__version__.split(".")[0]) >= 5 else torch.float32
    assert AutoModelForCausalLM.from_pretrained(str(path)).dtype == default


def test_sharded_save_with_index(tmp_path):
    torch.manual_seed(2)
    cfg = small_cfg("varlen", tie_word_embeddings=True)
    ours = cfg.build().eval()
    path = save_hf(ours, cfg, tmp_path / "out", max_shard_size="150KB", dtype=torch.float32)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 3 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert "lm_head.weight" not in index["weight_map"]  # tied: like transformers
    total = 0
    for shard in shards:
        tensors = load_file(str(path / shard))
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        assert nbytes <= 150_000 or len(tensors) == 1
        total += nbytes
    assert index["metadata"]["total_size"] == total
    theirs = AutoModelForCausalLM.from_pretrained(str(path))
    assert (_logits(theirs) - _logits(ours)).abs().max().item() < 1e-5
    again = Qwen3DenseConfig.from_hf(path).build()
    load_hf_weights(again, path)
    assert (_logits(again) - _logits(ours)).abs().max().item() < 1e-5


def test_from_hf_round_trips_the_hyper_parameters(tmp_path):
    cfg = small_cfg("varlen", tie_word_embeddings=False, rope_theta=5e5, rms_norm_eps=1e-5,
                    max_position_embeddings=2048, initializer_range=0.01)
    model = cfg.build(device="meta").to_empty(device="cpu")
    path = save_hf(model, cfg, tmp_path / "out")
    back = Qwen3DenseConfig.from_hf(path)
    keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
            "bos_token_id", "eos_token_id", "hidden_act", "attention_bias", "initializer_range"]
    a, b = cfg.hf_config, back.hf_config
    assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}
    assert a.rope_parameters["rope_theta"] == b.rope_parameters["rope_theta"] == 5e5
    # config.json has no attention kernel name: from_hf gives the default one
    normalised = dict(attention=cfg.attention.model_copy(update=dict(attn_impl="flash_attention")))
    assert back.to_dict(with_type=False) == cfg.model_copy(update=normalised).to_dict(with_type=False)


def test_generation_config_and_tokenizer(tmp_path, tiny_ckpt):
    gen = GenerationConfig.from_pretrained(str(tiny_ckpt))
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (0, [2, 0], 0)  # Qwen3's own layout
    assert (tiny_ckpt / "tokenizer.json").exists()


def test_state_dict_input_and_existing_folder_is_replaced(tmp_path):
    torch.manual_seed(3)
    cfg = small_cfg("varlen")
    model = cfg.build()
    target = tmp_path / "hf"
    target.mkdir()
    (target / "stale.txt").write_text("old export")
    save_hf(model.state_dict(), cfg, target, dtype=torch.float32)
    assert not (target / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temporary or old folders left
    theirs = AutoModelForCausalLM.from_pretrained(str(target))
    assert (_logits(theirs) - _logits(model)).abs().max().item() < 1e-5


def test_crash_mid_save_leaves_old_folder_and_no_temp(tmp_path):
    cfg = small_cfg("varlen")
    model = cfg.build()
    target = save_hf(model, cfg, tmp_path / "hf")
    before = sorted(os.listdir(target))

    class BrokenTokenizer:
        def save_pretrained(self, path):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_hf(model, cfg, target, tokenizer=BrokenTokenizer())
    assert sorted(os.listdir(target)) == before
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]


def test_save_refuses_weights_that_do_not_fit_the_config(tmp_path):
    cfg = small_cfg("varlen")
    sd = cfg.build().state_dict()
    with pytest.raises(KeyError, match="missing .*model.norm.weight"):
        save_hf({k: v for k, v in sd.items() if k != "model.norm.weight"}, cfg, tmp_path / "a")
    with pytest.raises(ValueError, match="model.embed_tokens.weight has shape"):
        save_hf({**sd, "model.embed_tokens.weight": torch.zeros(7, 128)}, cfg, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def _rewrite(path: Path, edit) -> None:
    tensors = load_file(str(path / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


def test_load_errors_name_the_file_and_keys(tmp_path):
    path = _hf_checkpoint(tmp_path / "ck", tie=False)
    cfg = Qwen3DenseConfig.from_hf(path)

    _rewrite(path, lambda t: (t.pop("model.layers.1.mlp.up_proj.weight"), t.update(extra=torch.zeros(2))))
    with pytest.raises(KeyError, match=r"ck.*missing.*layers\.1\.mlp\.up_proj\.weight.*unexpected.*extra"):
        load_hf_weights(cfg.build(), path)
    report = load_hf_weights(cfg.build(), path, strict=False)
    assert report.missing == ["model.layers.1.mlp.up_proj.weight"] and report.unexpected == ["extra"]

    _rewrite(path, lambda t: t.update({"model.norm.weight": torch.ones(64)}))
    with pytest.raises(ValueError, match=r"model\.safetensors: model\.norm\.weight has shape \(64,\).*\(128,\)"):
        load_hf_weights(cfg.build(), path, strict=False)

    with pytest.raises(FileNotFoundError, match="neither model.safetensors"):
        load_hf_weights(cfg.build(), tmp_path)
    with pytest.raises(ValueError, match="meta device"):
        load_hf_weights(cfg.build(device="meta"), path, strict=False)


def test_missing_shard_is_named(tmp_path):
    path = _hf_checkpoint(tmp_path / "ck", tie=True, max_shard_size="100KB")
    (path / "model-00002-of-" f"{len(list(path.glob('model-*'))):05d}.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors\.index\.json lists model-00002-of-"):
        load_hf_weights(Qwen3DenseConfig.from_hf(path).build(), path)


def test_meta_init_then_to_empty_then_load(tmp_path):
    """The FSDP-style path: no random init, storage allocated empty, weights (and RoPE buffers) filled by load."""
    path = _hf_checkpoint(tmp_path / "ck", tie=True)
    cfg = Qwen3DenseConfig.from_hf(path)
    model = cfg.build(device="meta").to_empty(device="cpu")
    load_hf_weights(model, path)
    theirs = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    assert (_logits(model) - _logits(theirs)).abs().max().item() < 1e-5


def test_peft_wrapped_model_loads_and_saves_merged(tmp_path):
    import peft
    path = _hf_checkpoint(tmp_path / "ck", tie=True)
    cfg = Qwen3DenseConfig.from_hf(path)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    model = peft.get_peft_model(cfg.build(), lora)
    load_hf_weights(model, path)  # base weights by HF name; LoRA weights are not in an HF checkpoint
    theirs = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    assert (_logits(model) - _logits(theirs)).abs().max().item() < 1e-5  # LoRA B starts at zero

    with torch.no_grad():  # pretend training moved the adapters
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.05)
    trained = _logits(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = save_hf(model, cfg, tmp_path / "out", dtype=torch.float32)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # model left unmerged
    exported = AutoModelForCausalLM.from_pretrained(str(out))
    assert (_logits(exported) - trained).abs().max().item() < 1e-4
    assert (_logits(exported) - _logits(model.merge_and_unload())).abs().max().item() < 1e-5

    tied_lora = peft.get_peft_model(cfg.build(), peft.LoraConfig(r=4, target_modules=["q_proj", "embed_tokens"]))
    with pytest.raises(ValueError, match="LoRA on .*embed_tokens.*tied"):
        save_hf(tied_lora, cfg, tmp_path / "tied")
    with pytest.raises(ValueError, match="merge_and_unload"):
        save_hf({"model.layers.0.self_attn.q_proj.lora_A.default.weight": torch.zeros(4, 128)}, cfg, tmp_path / "x")


def test_parse_size():
    assert parse_size("4GB") == 4 * 10**9 and parse_size("2GiB") == 2 * 2**30 and parse_size("500 mb") == 5 * 10**8
    assert parse_size(123) == 123
    with pytest.raises(ValueError, match="max_shard_size"):
        parse_size("lots")


def test_fsdp2_sharded_model_loads_trains_packed_and_saves(tmp_path, tiny_ckpt):
    """One gloo rank in-process: DTensor parameters are filled by load_hf_weights, the packed forward runs, and
    the documented gather (get_model_state_dict full_state_dict) feeds save_hf."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    own_group = not dist.is_initialized()  # another test may have left its one-rank group: use it, never skip
    if own_group:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    assert dist.get_world_size() == 1
    try:
        cfg = Qwen3DenseConfig.from_hf(tiny_ckpt)
        model = cfg.build(device="meta")
        mesh = init_device_mesh("cpu", (1,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        model.to_empty(device="cpu")
        assert type(model.lm_head.weight).__name__ == "DTensor"
        load_hf_weights(model, tiny_ckpt)

        theirs = AutoModelForCausalLM.from_pretrained(str(tiny_ckpt))
        ids = torch.randint(0, 500, (1, 9), generator=torch.Generator().manual_seed(0))
        cu = torch.tensor([0, 4, 9], dtype=torch.int32)
        pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4]])
        packed = model(ids, position_ids=pos, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=5, max_length_k=5,
                       use_cache=False).logits
        with torch.no_grad():
            alone = torch.cat([theirs(ids[:, :4]).logits, theirs(ids[:, 4:]).logits], dim=1)
        assert (packed.detach() - alone).abs().max().item() < 1e-5
        packed.sum().backward()
        assert model.model.layers[0].self_attn.q_proj.weight.grad is not None

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        with pytest.raises(ValueError, match="get_model_state_dict"):
            save_hf(model, cfg, tmp_path / "sharded")
        out = save_hf(full, cfg, tmp_path / "out", dtype=torch.float32)
        with torch.no_grad():
            assert torch.equal(AutoModelForCausalLM.from_pretrained(str(out))(ids).logits, theirs(ids).logits)
    finally:
        if own_group:
            dist.destroy_process_group()
