"""A real byte-level BPE tokenizer with Qwen's chat special tokens, trained locally in about a second.

Nothing can come from a model hub in tests or the CPU demo, so the tiny model gets its own tokenizer: same
pre-tokenizer family as Qwen2/Qwen3 (byte-level BPE, so Chinese and emoji round-trip), same special tokens, and
a Qwen3-style `chat_template` so `apply_chat_template` works. Ids 0/1/2 are <|endoftext|>/<|im_start|>/<|im_end|>,
matching `Qwen3DenseTinyConfig` (bos 0, eos 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen3 also has these as added (non-special) tokens; keeping them single tokens makes tool/think text realistic.
ADDED_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

# Qwen-style ChatML; the {% generation %} markers let transformers return the assistant mask.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_BUILTIN_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Supervised fine-tuning teaches a language model to follow instructions.",
    "What are the three primary colors? The three primary colors are red, blue, and yellow.",
    "你好，世界！我们用小模型在笔记本里学习微调。",
    "今天天气很好。学习率、损失函数和梯度裁剪都是训练的一部分。",
    "Emoji also work: 🙂 🚀 🎉 ✨",
    "def add(a, b):\n    return a + b\n",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
]


def make_tiny_tokenizer(path: str | Path, texts: Iterable[str] | None = None, vocab_size: int = 2048):
    """Train a byte-level BPE on `texts` (default: the demo data + a small built-in corpus) and save it to `path`.

    Returns the loaded `transformers.PreTrainedTokenizerFast`; `AutoTokenizer.from_pretrained(path)` gives the same.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(texts) if texts is not None else _default_corpus()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus * 2, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, chat_template=CHAT_TEMPLATE,
                                   model_max_length=4096, clean_up_tokenization_spaces=False)
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    fast.add_tokens(ADDED_TOKENS)
    Path(path).mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(path))
    return fast


def _default_corpus() -> list[str]:
    try:
        from ..datasets.demo import demo_texts

        return demo_texts() + _BUILTIN_CORPUS
    except ImportError:
        return _BUILTIN_CORPUS
