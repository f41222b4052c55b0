"""The data viewer names the format and template, the share of trained tokens, and the conversations that were
truncated or lost content to the template, with the line of each."""

import json

import pytest

from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
from xtuner_nb.model.tokenizer import make_tiny_tokenizer
from xtuner_nb.notebook import show_dataset


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_show_dataset_summary(tok, tmp_path, caplog):
    records = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
               {"conversations": [{"from": "human", "value": "long " * 40}, {"from": "gpt", "value": "ok"}]}]
    sharegpt = tmp_path / "chat.json"
    sharegpt.write_text(json.dumps(records, indent=1))
    first, second = [i + 1 for i, line in enumerate(sharegpt.read_text().split("\n")) if line == " {"]
    entry = {"dataset": DatasetConfig(anno_path=str(sharegpt)),
             "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=30)}
    html = show_dataset(DataloaderConfig(dataset_config_list=[entry]), tok, n=2)
    assert "<th style='text-align:left;padding:2px 12px 2px 0'>format</th><td>sharegpt</td>" in html
    assert "<td>qwen3</td>" in html and f"truncated to max_length</th><td>1 (lines {second})</td>" in html
    ids = [tok.encode(t, add_special_tokens=False) for t in ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>"
                                                             "assistant\n", "Hello!<|im_end|>", "\n")]
    n_tokens, n_trained = sum(map(len, ids)) + 30, len(ids[1])
    trained_in_cut = 0  # the long conversation is cut inside its user turn: nothing of it is trained
    assert f"{n_trained + trained_in_cut:,} of {n_tokens:,}" in html
    assert f"line {first}</div>" in html and f"line {second} <span" in html and ">truncated</span>" in html

    reasoning = tmp_path / "r.jsonl"
    reasoning.write_text(json.dumps({"messages": [{"role": "user", "content": "2+2?"}, {
        "role": "assistant", "content": "4", "reasoning_content": "Two and two."}]}) + "\n")
    html = show_dataset({"dataset": DatasetConfig(anno_path=str(reasoning)),
                         "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3")}, tok)
    assert "<td>openai</td>" in html
    assert "1 conversations: reasoning of 1 assistant turn (lines 1)" in html
    assert "reasoning of 1 assistant turn not rendered" in html  # the badge on the sample
    loader = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(reasoning)),
                                                    "tokenize_fn": OpenaiTokenizeFunctionConfig(
                                                        chat_template="qwen3")}], pack_max_length=64).build(tok)
    assert "(openai, template qwen3)" in str(loader.stats) and "reasoning of 1 assistant turns" in str(loader.stats)


def test_compare_templates_side_by_side(tok):
    from xtuner_nb.notebook import compare_templates

    conv = [{"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "Two and two."}]
    html = compare_templates(tok, conv)
    q3, hf = html.split("<td ")[1:]
    assert 'chat_template="qwen3"' in q3 and "not rendered: reasoning of 1 turn(s)" in q3
    # the tiny model's own template has no reasoning either: found by looking at what it rendered
    assert 'chat_template="hf"' in hf and "not rendered: reasoning of 1 turn(s)" in hf
    assert "<span style='background:#d8f5d8;color:#1b5e20'>4&lt;|im_end|&gt;</span>" in hf
