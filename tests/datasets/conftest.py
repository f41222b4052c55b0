"""Real tokenizers for the data tests: the project's tiny BPE, a Qwen2-style byte-level BPE built here, bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xtuner_nb.datasets import DataloaderConfig, DatasetConfig, OpenaiTokenizeFunctionConfig
from xtuner_nb.model.tokenizer import make_tiny_tokenizer
from xtuner_nb.datasets.toy_tokenizer import UTF8ByteTokenizer

# Qwen2's pre-tokenizer regex (tokenizer.json of Qwen2/Qwen2.5/Qwen3), then byte-level without its own regex
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen2-7B-Instruct's own chat template: no {% generation %} markers, and a default system prompt
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "Hello! How are you today? I am fine, thank you.",
    "What is the weather in Paris? It is 21 degrees and sunny.",
    "The three primary colors are red, blue, and yellow.",
    "你好，世界！今天天气很好。我们一起学习机器学习。",
    "Emoji: 🙂 🚀 🎉 ✨ ☀️",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "user assistant system tool You are a helpful assistant.",
]


def build_qwen2_style_tokenizer(path: Path):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    # as in Qwen2, the chat specials come after the BPE vocabulary
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t in ("<tool_call>", "</tool_call>", "<think>", "</think>")])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=QWEN2_CHAT_TEMPLATE, clean_up_tokenization_spaces=False)
    fast.save_pretrained(str(path))
    return fast


@pytest.fixture(scope="session")
def tiny_tok(tmp_path_factory):
    return make_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tok"))


@pytest.fixture(scope="session")
def qwen2_tok(tmp_path_factory):
    return build_qwen2_style_tokenizer(tmp_path_factory.mktemp("qwen2_tok"))


@pytest.fixture(scope="session")
def qwen3_tok(qwen3_tokenizer_dir):
    """The official Qwen3 tokenizer and chat template (outside asset)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)


@pytest.fixture(scope="session")
def smollm2_tok():
    """SmolLM2-135M-Instruct's tokenizer and ChatML template, from its GGUF (outside asset)."""
    from transformers import AutoTokenizer

    from xtuner_nb.assets import smollm2_tokenizer_dir

    from ..conftest import outside_asset

    return AutoTokenizer.from_pretrained(outside_asset(smollm2_tokenizer_dir))


@pytest.fixture(scope="session")
def byte_tok():
    return UTF8ByteTokenizer()


def write_jsonl(path: Path, records) -> Path:
    """Records are dumped as JSON; a str is written as the raw line (for malformed input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def chat(q: str, a: str) -> list[dict]:
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def loader_cfg(anno_path, chat_template="qwen3", max_length=None, cache_dir=None, **kw) -> DataloaderConfig:
    ds_kw = {k: kw.pop(k) for k in ("skip_bad_lines", "sample_ratio", "cache_tag", "enable_sequential_sampler")
             if k in kw}
    return DataloaderConfig(
        dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(anno_path), cache_dir=cache_dir, **ds_kw),
                              "tokenize_fn": OpenaiTokenizeFunctionConfig(chat_template=chat_template,
                                                                          max_length=max_length)}], **kw)


@pytest.fixture
def varied_jsonl(tmp_path):
    """120 conversations of varied length (deterministic)."""
    recs = []
    for i in range(120):
        q = "question " + " ".join(["word"] * (i % 17))
        a = f"answer {i} " + "yes " * (i * 7 % 23)
        recs.append(chat(q, a))
    return write_jsonl(tmp_path / "varied.jsonl", recs)
