"""Config forms driven the way a user drives them: set widget values, read `.value`, see errors next to fields."""

import abc
import types
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from xtuner_nb.config import AdamWConfig, FSDPConfig, LRConfig, XConfig
from xtuner_nb.loss import CELossConfig
from xtuner_nb.model import MHAConfig, Qwen3Dense0P6BConfig, Qwen3Dense8BConfig, Qwen3DenseTinyConfig
from xtuner_nb.notebook.forms import ConfigForm, ConfigFormError, config_form


def test_untouched_form_gives_back_the_config():
    for cfg in [AdamWConfig(lr=6e-5), LRConfig(lr_type="cosine"), CELossConfig(mode="chunk"),
                FSDPConfig(recompute_ratio=0.5), Qwen3Dense8BConfig(num_hidden_layers=16)]:
        form = config_form(cfg)
        assert form.value == cfg and type(form.value) is type(cfg)
    assert config_form(AdamWConfig).value == AdamWConfig()


def test_setting_widgets_changes_value_and_code_preview():
    form = config_form(Qwen3Dense8BConfig)
    assert "cfg = Qwen3Dense8BConfig()" in form.code
    form.field("num_hidden_layers").input.value = 16
    assert form.value == Qwen3Dense8BConfig(num_hidden_layers=16)
    assert "Qwen3Dense8BConfig(num_hidden_layers=16)" in form.code
    assert "from xtuner_nb.model import Qwen3Dense8BConfig" in form.code
    assert "Qwen3Dense8BConfig(num_hidden_layers=16)" in form.preview.value  # the visible <pre>
    form.field("attention.head_dim").input.value = 64  # nested sub-form
    assert form.value.attention.head_dim == 64
    # sliding_window=1024 is XTuner's 8B preset value (unused: Qwen3 dense never turns sliding windows on)
    assert "attention=MHAConfig(head_dim=64, sliding_window=1024)" in form.code


def test_widget_kinds_follow_field_types():
    import ipywidgets as W

    form = config_form(AdamWConfig)
    assert isinstance(form.field("lr").input, W.FloatText)
    assert isinstance(form.field("foreach").none, W.Checkbox)  # Optional[bool]
    lr = config_form(LRConfig)
    assert isinstance(lr.field("lr_type").input, W.Dropdown)
    assert [v for _, v in lr.field("lr_type").input.options] == ["constant", "cosine", "linear"]
    model = config_form(Qwen3DenseTinyConfig)
    assert isinstance(model.field("num_hidden_layers").input, W.IntText)
    assert isinstance(model.field("tie_word_embeddings").input, W.Checkbox)
    assert isinstance(model.rows["attention"].editor.widget, W.Accordion)  # collapsible sub-form
    # the field description is the hint
    assert "Decoder layers." in model.field("num_hidden_layers").hint.value


def test_invalid_value_shows_error_next_to_its_field():
    form = config_form(AdamWConfig)
    form.field("lr").input.value = -1.0
    row = form.field("lr")
    assert "greater than 0" in row.error.value
    assert row.error in row.widget.children  # in the field's own row
    assert form.field("eps").error.value == ""
    with pytest.raises(ConfigFormError, match="lr: Input should be greater than 0") as info:
        form.value
    assert info.value.errors == {"lr": "Input should be greater than 0"}
    assert "invalid" in form.preview.value
    form.field("lr").input.value = 2e-5
    assert form.field("lr").error.value == "" and form.value.lr == 2e-5


def test_validator_error_of_a_tuple_and_nested_error_paths():
    form = config_form(AdamWConfig)
    form.field("betas").editor.items[1].input.value = 1.5
    assert "betas must lie in [0, 1)" in form.field("betas").error.value
    model = config_form(Qwen3DenseTinyConfig)
    model.field("attention.num_key_value_heads").input.value = 0
    assert "greater than or equal to 1" in model.field("attention.num_key_value_heads").error.value
    with pytest.raises(ConfigFormError) as info:
        model.value
    assert list(info.value.errors) == ["attention.num_key_value_heads"]


def test_optional_field_none_checkbox():
    form = config_form(AdamWConfig)
    row = form.field("skip_grad_norm_threshold")
    assert row.none.value is True and row.input.disabled
    row.none.value = False
    assert not row.input.disabled
    row.input.value = 5.0
    assert form.value.skip_grad_norm_threshold == 5.0
    assert "skip_grad_norm_threshold=5.0" in form.code
    row.none.value = True
    assert form.value.skip_grad_norm_threshold is None


def test_preset_picker_swaps_class_and_keeps_overrides():
    form = config_form(Qwen3Dense8BConfig(num_hidden_layers=16, rope_theta=5e6))
    form.field("attention.head_dim").input.value = 64
    form.preset.value = Qwen3Dense0P6BConfig
    cfg = form.value
    assert type(cfg) is Qwen3Dense0P6BConfig
    assert (cfg.num_hidden_layers, cfg.rope_theta, cfg.hidden_size) == (16, 5e6, 1024)
    # nested overrides are kept field by field: the 0.6B head counts, the user's head_dim
    assert (cfg.attention.num_attention_heads, cfg.attention.head_dim) == (16, 64)
    assert "Qwen3Dense0P6BConfig(" in form.code and "num_hidden_layers=16" in form.code
    assert config_form(AdamWConfig).preset is None
    # a preset's own nested defaults (0.6B: 16 heads) are not taken for user changes
    small = config_form(Qwen3Dense0P6BConfig())
    small.preset.value = Qwen3DenseTinyConfig
    assert small.value == Qwen3DenseTinyConfig()


def test_nested_model_form_inside_trainer_config():
    from xtuner_nb.train import TrainerConfig

    form = config_form(TrainerConfig(model_cfg=Qwen3Dense0P6BConfig(), total_step=10))
    model_form = form.rows["model_cfg"].editor.form
    model_form.preset.value = Qwen3DenseTinyConfig
    form.field("model_cfg.num_hidden_layers").input.value = 2
    cfg = form.value
    assert cfg.model_cfg == Qwen3DenseTinyConfig(num_hidden_layers=2) and cfg.total_step == 10
    assert "model_cfg=Qwen3DenseTinyConfig(num_hidden_layers=2)" in form.code


def test_set_and_reset():
    form = config_form(CELossConfig)
    form.set(mode="chunk", chunk_size=512)
    assert form.value == CELossConfig(mode="chunk", chunk_size=512)
    with pytest.raises(KeyError, match="no field 'chunk'"):
        form.set(chunk=1)
    form.reset.click()
    assert form.value == CELossConfig()
    model = config_form(Qwen3DenseTinyConfig).set(attention={"head_dim": 16})
    assert model.value.attention == MHAConfig(num_attention_heads=4, num_key_value_heads=2, head_dim=16)


class _Item(XConfig):
    path: Path = Field(Path("data/a.jsonl"), description="A JSONL file.")
    weight: float = Field(1.0, gt=0, description="Sampling weight.")
    kind: Literal["chat", "text"] = Field("chat", description="Format.")


class _Bundle(XConfig):
    name: str = Field(..., description="Required name.")
    items: list[_Item] = Field(default_factory=lambda: [_Item()], description="Files.")
    tags: list[str] = Field(default_factory=list, description="Free tags.")
    extra: dict = Field(default_factory=dict, description="Anything else.")
    seeds: tuple[int, ...] = Field((1, 2), description="Seeds.")


def test_required_fields_lists_of_configs_paths_and_json():
    form = ConfigForm(_Bundle)
    with pytest.raises(ConfigFormError) as info:
        form.value
    assert info.value.errors == {"name": "Field required"}
    assert "Field required" in form.field("name").error.value
    form.field("name").input.value = "mix"
    assert form.value.items == [_Item()]
    items = form.rows["items"].editor
    items.add.click()
    form.field("items.1.path").input.value = "data/b.jsonl"
    form.field("items.1.weight").input.value = 0.0
    assert "greater than 0" in form.field("items.1.weight").error.value
    with pytest.raises(ConfigFormError, match=r"items\.1\.weight"):
        form.value
    form.field("items.1.weight").input.value = 2.0
    form.field("tags").input.value = "a b\nc"
    form.field("extra").input.value = '{"k": [1, 2]}'
    form.field("seeds").input.value = "3, 4, 5"
    cfg = form.value
    assert cfg.items[1] == _Item(path=Path("data/b.jsonl"), weight=2.0)
    assert (cfg.tags, cfg.extra, cfg.seeds) == (["a b", "c"], {"k": [1, 2]}, (3, 4, 5))
    form.field("extra").input.value = "{oops"
    assert "not valid JSON" in form.field("extra").error.value
    items.remove.click()
    form.field("extra").input.value = "{}"
    assert len(form.value.items) == 1


def test_mimebundle_has_widget_view_and_static_code():
    bundle = config_form(Qwen3Dense8BConfig(num_hidden_layers=16))._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "Qwen3Dense8BConfig(num_hidden_layers=16)" in bundle["text/plain"]
    assert "<pre" in bundle["text/html"]


def test_dataset_list_round_trips_through_its_json_box():
    import ipywidgets as W

    from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig

    dl = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path="data/a.jsonl"),
                                                "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=256)}],
                          pack_max_length=256)
    form = config_form(dl)
    box = form.field("dataset_config_list").input
    assert isinstance(box, W.Textarea) and '"__type__"' in box.value
    assert form.value == dl
    box.value = box.value.replace("data/a.jsonl", "data/b.jsonl")
    assert str(form.value.dataset_config_list[0]["dataset"].anno_path).endswith("data/b.jsonl")
    assert "DatasetConfig(anno_path='data/b.jsonl')" in form.code


def _compat_rows(form) -> list[str]:
    """The fields shown in a form's "XTuner compatibility" section, by name (the section's rows are the field rows)."""
    inside = form.compat_section.children[0].children
    return [name for name, row in form.rows.items() if row.widget in inside]


def test_xtuner_compatibility_fields_are_folded_into_a_collapsed_section_at_every_level():
    import ipywidgets as W

    from xtuner_nb.config.base import is_compat_field
    from xtuner_nb.datasets import DataloaderConfig
    from xtuner_nb.train import TrainerConfig

    form = config_form(TrainerConfig(model_cfg=Qwen3DenseTinyConfig()))
    section = form.compat_section
    assert isinstance(section, W.Accordion) and section.selected_index is None  # closed
    assert section.titles[0].startswith("XTuner compatibility (8 fields")
    assert form.body.children[-1] is section  # below every real field
    assert _compat_rows(form) == ["sp_size", "async_hf_export", "skip_checkpoint_validation", "patch_for_dcp_finish",
                                  "check_health_interval", "intra_layer_micro_batch", "prober_list",
                                  "internal_metrics_cfg"]
    assert len(section.children[0].children) == 8
    real = [row.widget for name, row in form.rows.items() if not is_compat_field(TrainerConfig.model_fields[name])]
    assert list(form.body.children[:-1]) == real
    # nested configs have their own section: a sub-form, an Optional sub-form (None now), a standalone form
    loader = form.rows["dataloader_cfg"].editor.form
    assert loader.compat_section.selected_index is None
    assert _compat_rows(loader) == ["pack_workers", "sampler_type", "pack_config_path", "sampler_config_path"]
    fsdp = form.rows["fsdp_cfg"].editor.inner.form
    assert _compat_rows(fsdp) == ["tp_size", "ep_size", "vision_recompute_ratio", "mtp_checkpoint_use_reentrant",
                                  "mesh_prefix", "requires_grad"]
    assert _compat_rows(config_form(AdamWConfig)) == ["swap_optimizer"]
    assert config_form(LRConfig).compat_section is None  # nothing to fold: no empty section
    # a field in the section is edited like any other, and the code is the config's own to_python()
    form.field("async_hf_export").input.value = True
    form.field("dataloader_cfg.pack_workers").input.value = 2
    want = TrainerConfig(model_cfg=Qwen3DenseTinyConfig(), async_hf_export=True,
                         dataloader_cfg=DataloaderConfig(pack_workers=2))
    assert form.value == want
    assert form.code.endswith(f"cfg = {want.to_python()}")
    assert "async_hf_export=True" in form.code and "DataloaderConfig(pack_workers=2)" in form.code
    form.field("sp_size").input.value = 2  # a refused value: refused by the config, the form says which field
    with pytest.raises(ConfigFormError, match="TrainerConfig.sp_size=2 is not supported by xtuner_nb"):
        form.value
    assert "sp_size=2 is not supported" in form.form_error.value


class _Python310Alias(types.GenericAlias):
    """`list[int]` as Python 3.10 gives it: it says its class is `type` (fixed in 3.11), so `issubclass` raises."""

    @property
    def __class__(self):
        return type


def test_parametrized_generic_fields_build_a_form_on_python_3_10():
    from xtuner_nb.notebook.form_nested import _is_config_class, _is_subclass

    class Abstract(abc.ABC):  # ABCMeta's check is the one that raises on 3.10
        pass

    alias = _Python310Alias(list, (int,))
    assert isinstance(alias, type)  # the 3.10 behaviour the form must survive
    with pytest.raises(TypeError, match="must be a class"):
        issubclass(alias, Abstract)
    assert not _is_subclass(alias, Abstract) and not _is_subclass(alias, Path)
    assert not _is_config_class(alias) and not _is_config_class(list[int])
    assert _is_config_class(AdamWConfig)

    class Lists(XConfig):
        ids: _Python310Alias(list, (int,)) = [1, 2]  # type: ignore[valid-type]
        names: dict[str, int] = {"a": 1}

    assert config_form(Lists).value == Lists()
