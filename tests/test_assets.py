"""The outside assets arrive from the registries, pinned, and are what they claim to be."""

import json

from transformers import AutoTokenizer


def test_official_qwen3_tokenizer_loads_with_its_template(qwen3_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir))
    assert len(tok) > 151_000
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_llamafactory_demo_data_is_there(llamafactory_data_dir):
    rows = json.loads((llamafactory_data_dir / "alpaca_en_demo.json").read_text())
    assert len(rows) > 100 and {"instruction", "input", "output"} <= set(rows[0])
