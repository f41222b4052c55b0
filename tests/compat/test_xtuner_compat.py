"""XTuner v1's public names against this code base: every config class builds with XTuner's defaults and with each
field set, refused values say why, presets equal XTuner's, the CLI takes XTuner's flags, and the compatibility
page is the one generated from both code bases.

XTuner's side is `tools/xtuner_v1_names.json`, read from its source by `tools/xtuner_v1_names.py` (XTuner v1 is not
on PyPI, so the test cannot fetch it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build_compat_page as compat  # noqa: E402

from xtuner_nb.config.base import REFUSED_KEY  # noqa: E402

CLASSES = {path: info for path, info in compat.NAMES["classes"].items()
           if path not in compat.SKIP_CLASSES and not info["name"].endswith("Kwargs")}
# values for fields XTuner requires (no default)
REQUIRED = {"anno_path": "data.jsonl", "chat_template": "qwen3", "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 32, "model_cfg": "Qwen3DenseTinyConfig()"}
# a value other than XTuner's default for every refused field: it must fail with a reason
REFUSED_VALUES = {
    "tp_size": 2, "ep_size": 2, "vision_recompute_ratio": 0.5, "mtp_checkpoint_use_reentrant": False,
    "requires_grad": False, "hsdp_sharding_size": 2, "swap_optimizer": True, "offload_optimizer_first_step": True,
    "sp_size": 2, "check_health_interval": 10, "intra_layer_micro_batch": 2, "prober_list": ["x"],
    "internal_metrics_cfg": {}, "fp32_keys_pattern": ["x"], "float8_cfg": {}, "hf_key_mapping": {"a": "b"},
    "rms_norm_type": "zero_centered", "linear_attention": {}, "mlp_bias": True, "generate_config": {},
    "return_hidden_states": True, "use_sliding_window": True, "with_sink": True, "with_gate": True,
    "mrope_section": [24, 20, 20], "fope_init_factor": 0.1, "fope_sep_head": True, "num_inv_freq": 4,
    "class_name": "VLMJsonlDataset", "sampler_type": "preset", "pack_config_path": "packs",
    "sampler_config_path": "order.npy",
}


def _ours(path):
    cls = compat.resolve(compat.ours(path))
    assert cls is not None, f"{path}: no class {compat.ours(path)}"
    return cls


def _required(cls, ns):
    return {k: compat.eval_default(v, ns) if isinstance(v, str) and v.endswith(")") else v
            for k, v in REQUIRED.items() if k in cls.model_fields and cls.model_fields[k].is_required()}


@pytest.mark.parametrize("path", sorted(CLASSES), ids=lambda p: p.rsplit(".", 1)[1])
def test_config_class_builds_with_xtuner_defaults_and_each_field_set(path):
    ns, cls, info = compat.namespace(), _ours(path), CLASSES[path]
    base = _required(cls, ns)
    cls(**base)  # with its defaults
    dumped = {}
    for field, f in info["fields"].items():
        if field in compat.CLASS_ATTRIBUTE_FIELDS:  # e.g. model_type: a class attribute, taken as an argument
            cls(**base, **{field: None})
            continue
        assert field in cls.model_fields, f"{info['name']}.{field} is not accepted"
        value = compat.eval_default(f["default"], ns) if f["default"] is not None else \
            _required(cls, ns).get(field, getattr(cls(**base), field))
        built = cls(**{**base, field: value})  # XTuner's default, given explicitly, never fails
        dumped[field] = built.to_dict(with_type=False)[field]
        extra = cls.model_fields[field].json_schema_extra or {}
        if REFUSED_KEY in extra:
            assert field in REFUSED_VALUES, f"add a non-default value for the refused field {field}"
            with pytest.raises(ValueError, match=f"{field}=.* is not supported by xtuner_nb: .+"):
                cls(**{**base, field: REFUSED_VALUES[field]})
    # a config dumped with every XTuner field at its default loads back (torch dtypes as XTuner writes them)
    for field in ("param_dtype", "reduce_dtype", "grad_norm_dtype"):
        if field in dumped:
            dumped[field] = f"torch.{dumped[field]}"
    cls.model_validate({**base, **{k: v for k, v in dumped.items() if k not in base}})


def test_presets_are_xtuners_and_differences_from_hf_config_json_are_recorded():
    from xtuner_nb.model import HF_CONFIG_JSON_DIFFS, get_model_config

    ns = compat.namespace()
    for path in ("xtuner.v1.model.dense.qwen3.Qwen3Dense8BConfig", "xtuner.v1.model.dense.qwen3.Qwen3Dense4BConfig",
                 "xtuner.v1.model.dense.qwen3.Qwen3Dense0P6BConfig"):
        info, ours = CLASSES[path], _ours(path)()
        for field, f in info["fields"].items():
            if field in compat.CLASS_ATTRIBUTE_FIELDS:
                continue
            theirs = compat.eval_default(f["default"], ns)
            assert compat.plain(getattr(ours, field)) == compat.plain(theirs), f"{info['name']}.{field}"
    assert get_model_config("qwen3-4B").max_position_embeddings == 262144
    for alias, diffs in HF_CONFIG_JSON_DIFFS.items():  # the HF value really differs from XTuner's preset
        cfg = get_model_config(alias)
        for key, hf_value in diffs.items():
            obj = cfg
            for part in key.split(".")[:-1]:
                obj = getattr(obj, part)
            assert getattr(obj, key.split(".")[-1]) != hf_value, (alias, key)


def test_get_model_config_matches_names_as_xtuner():
    from xtuner_nb.model import Qwen3Dense4BConfig, Qwen3Dense8BConfig, get_model_config

    assert type(get_model_config("Qwen3_8b")) is Qwen3Dense8BConfig
    assert type(get_model_config("QWEN3-4B")) is Qwen3Dense4BConfig
    with pytest.raises(ValueError, match="exists in XTuner but is not a dense model supported here"):
        get_model_config("qwen3-moe-30BA3")
    with pytest.raises(ValueError, match="unknown model preset"):
        get_model_config("llama-7b")


def test_refused_values_name_the_reason():
    from xtuner_nb.config import FSDPConfig
    from xtuner_nb.loss import CELossConfig
    from xtuner_nb.model import Qwen3DenseTinyConfig
    from xtuner_nb.train import TrainerConfig

    with pytest.raises(ValueError, match="sequence parallelism .* not implemented"):
        TrainerConfig(model_cfg=Qwen3DenseTinyConfig(), sp_size=2)
    with pytest.raises(ValueError, match="tensor parallelism is not implemented"):
        FSDPConfig(tp_size=2)
    try:
        import liger_kernel  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="needs the liger-kernel package"):
            CELossConfig(mode="liger")
    assert CELossConfig(chunk_size=None).chunk_size is None  # eager mode ignores it, as XTuner
    with pytest.raises(ValueError, match="mode='chunk' needs a chunk_size"):
        CELossConfig(mode="chunk", chunk_size=None)


def test_trainer_config_takes_xtuners_spellings():
    from xtuner_nb.config import MuonConfig
    from xtuner_nb.model import Qwen3DenseTinyConfig
    from xtuner_nb.train import ResumeConfig, TrainerConfig

    cfg = TrainerConfig(model_cfg=Qwen3DenseTinyConfig(), backend="gloo", grad_norm_dtype=torch.float64,
                        profile_step=3, resume_cfg=ResumeConfig(auto_resume=True, resume_from="ckpt",
                                                                load_optimizer_args=False))
    assert (cfg.dist_backend, cfg.grad_norm_dtype, cfg.profile_step, cfg.auto_resume) == ("gloo", "float64", [3], True)
    assert str(cfg.load_checkpoint_cfg.checkpoint_path) == "ckpt" and not cfg.load_checkpoint_cfg.load_optimizer_args
    assert TrainerConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="MuonConfig is not supported"):
        TrainerConfig(model_cfg=Qwen3DenseTinyConfig(), optim_cfg=MuonConfig())
    with pytest.raises(ValueError, match="MuonConfig is not supported"):  # the same refusal, built by hand
        MuonConfig().build([])
    # XTuner's Trainer(backend=...) is dist_backend, in one place the Trainer's overrides use too
    assert TrainerConfig.with_field_names({"backend": "nccl", "seed": 1}) == {"seed": 1, "dist_backend": "nccl"}
    assert TrainerConfig.with_field_names({"dist_backend": "gloo"}) == {"dist_backend": "gloo"}
    with pytest.raises(ValueError, match="backend='gloo' and dist_backend='nccl' disagree"):
        TrainerConfig(model_cfg=Qwen3DenseTinyConfig(), backend="gloo", dist_backend="nccl")


def test_cli_accepts_every_xtuner_sft_flag(tmp_path):
    from xtuner_nb.train.cli import build_parser, config_from_args

    rows = {r[0]: r for r in compat.cli_rows()}
    assert not [r for r in rows.values() if r[2] == "missing"], "XTuner sft flags this CLI does not parse"
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    args = build_parser().parse_args([
        "sft", "--model-cfg", "qwen3-tiny", "--dataset", str(data), "--chat-template", "qwen3", "--optim", "AdamW",
        "--cache-dir", str(tmp_path / "c"), "--cache-tag", "v1", "--pack-max-length", "512", "--num-workers", "0",
        "--no-group-by-length", "--loss-config.mode", "eager", "--loss-config.chunk-size", "None",
        "--fsdp-config.cpu-offload", "--fsdp-config.recompute-ratio", "0.5", "--fsdp-config.param-dtype",
        "torch.float16", "--no-load-dataset", "--load-optimizer-args", "--async-checkpoint", "--epoch-num", "2"])
    cfg = config_from_args(args)
    assert cfg.fsdp_cfg.cpu_offload and cfg.fsdp_cfg.recompute_ratio == 0.5 and cfg.fsdp_cfg.param_dtype == "float16"
    assert (cfg.loss_cfg.mode, cfg.loss_cfg.chunk_size) == ("eager", None)
    assert cfg.dataloader_cfg.pack_max_length == 512 and cfg.dataloader_cfg.group_by_length is False
    assert cfg.dataloader_cfg.dataset_config_list[0]["dataset"].cache_tag == "v1"
    assert cfg.load_checkpoint_cfg.load_dataset is False and cfg.async_checkpoint and cfg.total_epoch == 2
    default = config_from_args(build_parser().parse_args(
        ["sft", "--model-cfg", "qwen3-tiny", "--dataset", str(data), "--chat-template", "qwen3"]))
    assert (default.loss_cfg.mode, default.loss_cfg.chunk_size, default.dataloader_cfg.pack_max_length) == \
        ("chunk", 1024, 4096)  # XTuner's TrainingArguments defaults
    with pytest.raises(ValueError, match="not supported by xtuner_nb"):
        config_from_args(build_parser().parse_args(
            ["sft", "--model-cfg", "qwen3-tiny", "--dataset", str(data), "--chat-template", "qwen3",
             "--fsdp-config.tp-size", "2"]))


@pytest.mark.parametrize("lang", ["en", "zh_cn"])
def test_compat_page_is_generated_from_both_code_bases(lang):
    text = compat.page_path(lang).read_text(encoding="utf-8")
    assert compat.BEGIN in text and compat.END in text
    assert text == compat.render(lang, text), "stale: run `.venv/bin/python tools/build_compat_page.py`"
    assert not [r for r in compat.all_rows() if r[2] == "missing"], "an XTuner name with no row status"


def _english_only(note: str) -> bool:
    """Words outside code spans and no Chinese: an untranslated note (a code name alone or an empty note is fine)."""
    rest = re.sub(r"`[^`]*`", "", note)
    return rest.isascii() and re.search("[A-Za-z]", rest) is not None


def test_zh_cn_notes_are_all_translated(monkeypatch):
    assert _english_only("not implemented (see `x`)") and not _english_only("`xtuner_nb.model`")
    assert not _english_only("未实现（见 `x`）") and not _english_only("")
    rows = compat.all_rows()
    text = compat.page_path("zh_cn").read_text(encoding="utf-8")
    generated = text.partition(compat.BEGIN)[2].partition(compat.END)[0]
    notes = [re.split(r"(?<!\\)\|", line)[4].strip() for line in generated.splitlines() if line.startswith("| `")]
    assert len(notes) == len(rows)
    assert [n for n in notes if _english_only(n)] == [], "English notes in docs/zh_cn/xtuner_compat.md"
    assert compat.note_zh_cn("default 'x' here, `y` in XTuner") == "这里默认为 'x'，XTuner 中为 `y`"
    unused = [k for k in compat.NOTES_ZH_CN if not any(k in row[3] for row in rows)]
    assert unused == [], "translations of notes the table no longer has: remove them from tools/compat_notes_zh_cn.py"
    # a new English note (or a refused field's new reason) stops the generator instead of reaching the page
    new = [("`a`", "field", "different", "a new note"), ("`b`", "field", "refused", "only XTuner's default; a reason")]
    monkeypatch.setattr(compat, "all_rows", lambda: rows + new)
    with pytest.raises(compat.UntranslatedNotes, match="2 note.*\n  'a new note'\n  'a reason'"):
        compat.table("zh_cn")
    assert compat.table("en").count("| a new note |") == 1
