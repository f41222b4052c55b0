"""The shipped demo data: deterministic, zh + en, held-out eval, compact with the tiny tokenizer."""

import json
import re

from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
from xtuner_nb.datasets.demo import demo_data_path, demo_prompts, demo_records, demo_texts, write_demo_files
from xtuner_nb.datasets.toy_tokenizer import UTF8ByteTokenizer

CJK = re.compile(r"[\u4e00-\u9fff]")


def _records(split):
    return [json.loads(line) for line in demo_data_path(split).read_text(encoding="utf-8").splitlines()]


def test_shipped_files_match_the_generator(tmp_path):
    for split in ("train", "eval"):
        assert _records(split) == demo_records(split)
    regenerated = write_demo_files(tmp_path)
    assert [p.read_bytes() for p in regenerated] == [demo_data_path(s).read_bytes() for s in ("train", "eval")]


def test_both_languages_and_held_out_eval():
    train, evals = _records("train"), _records("eval")
    user = lambda recs: {m["content"] for r in recs for m in r["messages"] if m["role"] == "user"}  # noqa: E731
    assert any(CJK.search(q) for q in user(train)) and any(not CJK.search(q) for q in user(train))
    assert user(evals).isdisjoint(user(train))  # eval questions never appear in training
    answers = {m["content"] for r in train for m in r["messages"] if m["role"] == "assistant"}
    assert all(r["messages"][-1]["content"] in answers for r in evals)  # ... but ask about learned facts
    for prompt, answer in demo_prompts():
        assert {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]} \
            in train
    assert 40 <= len(train) <= 120 and len(evals) >= 10


def test_demo_texts_cover_everything():
    texts = "".join(demo_texts())
    for split in ("train", "eval"):
        for r in demo_records(split):
            for m in r["messages"]:
                assert m["content"] in texts


def test_demo_data_is_short_with_the_tiny_tokenizer(tiny_tok):
    cfg = DataloaderConfig(dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(demo_data_path())),
                                                 "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template="qwen3")}],
                           pack_max_length=512)
    loader = cfg.build(tiny_tok)
    lengths = loader.sample_lengths()
    assert lengths.max() <= 64 and loader.stats.tokens < 3000  # a few packs per epoch
    byte_tokens = cfg.build(UTF8ByteTokenizer()).stats.tokens
    assert loader.stats.tokens * 3 < byte_tokens  # the demo-trained BPE is compact
