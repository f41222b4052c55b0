"""`launch()`'s config travels as YAML data (issue 26): what cannot travel is refused before anything starts, naming
the field, and what travels reads back as the same config, the fields that were set explicitly included. The real
processes are tested from a kernel: tests/notebook/test_launch_kernel.py."""

from __future__ import annotations

import pytest

from tests.train.helpers import small_config


def test_a_config_holding_code_is_refused_naming_the_field(tiny_ckpt, tmp_path):
    from xtuner_nb.train import HooksConfig
    from xtuner_nb.train.launch_config import config_yaml
    from xtuner_nb.train.launcher import Launch

    def after_step(**info):
        pass

    cfg = small_config(tiny_ckpt, tmp_path, hooks_config=HooksConfig(after_train_step=[after_step]))
    with pytest.raises(ValueError, match=r"config field hooks_config\.after_train_step\[0\] \(.*after_step\) "
                                         r"holds code"):
        config_yaml(cfg)
    with pytest.raises(ValueError, match="hooks_config.after_train_step"):
        Launch(cfg, 2)
    assert not (tmp_path / "launches").exists()  # refused before any folder or process


def test_the_yaml_reads_back_as_the_same_config_with_the_same_explicit_fields(tiny_ckpt, tmp_path):
    from xtuner_nb.config import FSDPConfig
    from xtuner_nb.train import TrainerConfig
    from xtuner_nb.train.launch_config import config_yaml

    cfg = small_config(tiny_ckpt, tmp_path, fsdp_cfg=FSDPConfig(recompute_ratio=0.0))
    back = TrainerConfig.from_yaml(config_yaml(cfg))
    assert back.to_dict() == cfg.to_dict()
    # torch_compile acts only when set explicitly: a dump of every field would turn it on in the workers
    assert "torch_compile" not in back.fsdp_cfg.model_fields_set
    compiled = small_config(tiny_ckpt, tmp_path, fsdp_cfg=FSDPConfig(torch_compile=True))
    assert "torch_compile" in TrainerConfig.from_yaml(config_yaml(compiled)).fsdp_cfg.model_fields_set
