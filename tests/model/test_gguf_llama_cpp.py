"""The GGUF run by llama.cpp itself: the real SmolLM2-135M-Instruct fine-tuned as the real-model tutorial does (LoRA,
the identity data, the qwen3 template), exported to HF and GGUF, and answered greedily by llama.cpp's prebuilt
build (npm node-llama-cpp, pinned in xtuner_nb.assets) with the chat template stored in the GGUF, against
transformers on the HF export. Also: the HF export equals the source checkpoint but for the dtype and the chat
template, and the GGUF keeps the source's special token ids.

About 3 minutes on the 2-core VM: the first run also converts SmolLM2 (a minute) and installs node-llama-cpp."""

from __future__ import annotations

import json

import pytest

from tests.conftest import outside_asset
from tests.model.test_export_source import differences

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_run(tmp_path_factory):
    from xtuner_nb.assets import node_llama_cpp_dir
    from xtuner_nb.config import AdamWConfig, FSDPConfig, LRConfig
    from xtuner_nb.datasets import (DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig, identity_data_path,
                                    identity_prompts)
    from xtuner_nb.model import LoRAConfig, fetch_pretrained
    from xtuner_nb.train import Trainer

    source = outside_asset(fetch_pretrained)
    outside_asset(node_llama_cpp_dir)
    data = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(identity_data_path("train"))),
                                                  "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3")}],
                            pack_max_length=256)
    trainer = Trainer(load_from=source, tokenizer_path=source, dataloader_cfg=data, eval_prompts=identity_prompts(),
                      eval_match="contains", eval_max_new_tokens=20, lora_cfg=LoRAConfig(r=16, lora_alpha=32),
                      optim_cfg=AdamWConfig(lr=2e-3), lr_cfg=LRConfig(lr_type="cosine", warmup_ratio=0, lr_min=2e-4),
                      fsdp_cfg=FSDPConfig(recompute_ratio=0.0), total_epoch=3, checkpoint_interval=None,
                      work_dir=tmp_path_factory.mktemp("smollm2"), default_hooks=[])
    trainer.fit()
    gguf = trainer.export_gguf(check=True)
    return source, trainer, gguf


def test_llama_cpp_answers_equal_transformers_answers(smollm2_run):
    source, trainer, gguf = smollm2_run
    check = trainer.gguf_check
    print(check.summary())
    for p, a in zip(check.prompts, check.llama_cpp):
        print(f"  {p!r} -> {a!r}")
    assert len(check.prompts) == 5 and check.llama_cpp is not None
    assert all(check.same_prompt_tokens)  # llama.cpp rendered the GGUF's template to the tokens transformers did
    assert check.equal == len(check.prompts), check.summary()
    assert sum("Quill" in a for a in check.llama_cpp) >= 2 and any("Paris" in a for a in check.llama_cpp)


def test_hf_export_equals_the_source_and_the_gguf_keeps_its_ids(smollm2_run):
    from gguf import GGUFReader

    source, trainer, gguf = smollm2_run
    export = trainer.exp_dir / "hf-latest"
    diff = differences(source, export)
    assert diff.pop("config.json") == {"dtype": ("float32", "bfloat16")}
    assert diff.pop("chat_template.jinja")  # the qwen3 template used in training, in place of SmolLM2's own
    assert (export / "chat_template.jinja").read_text() == trainer.preflight.export_template.jinja
    assert diff == {}, diff
    config = json.loads((source / "config.json").read_text())
    fields = GGUFReader(gguf).fields
    for kind in ("bos", "eos", "padding"):
        key = f"tokenizer.ggml.{kind}_token_id"
        want = config[f"{'pad' if kind == 'padding' else kind}_token_id"]
        got = int(fields[key].parts[-1][0]) if key in fields else None
        assert got == want, (key, got, want)
    text = bytes(fields["tokenizer.chat_template"].parts[fields["tokenizer.chat_template"].data[0]]).decode()
    assert text == trainer.preflight.export_template.jinja


def test_check_says_plainly_when_there_is_no_llama_cpp(smollm2_run, tmp_path, monkeypatch):
    from xtuner_nb.model.gguf_check import check_gguf

    _, trainer, gguf = smollm2_run
    monkeypatch.setenv("PATH", str(tmp_path))  # no `node` on the PATH
    result = check_gguf(gguf, trainer.exp_dir / "hf-latest", ["Hi"])
    assert result.llama_cpp is None and not result.passed
    summary = result.summary()
    assert "Node.js (`node`) is not installed" in summary and "GGUF not checked in llama.cpp" in summary
