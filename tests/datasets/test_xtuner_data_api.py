"""XTuner v1's data objects as XTuner code uses them: `ChatMessages` renders and tokenizes a conversation the way
XTuner's `qwen3` template does (checked against the official Qwen3 tokenizer), FTDP records become the ids and
labels of XTuner's format, a `SequenceContext` describes a pack, and XTuner's other dataset names import and say
why they cannot be used."""

from __future__ import annotations

import pytest
import torch

from xtuner_nb.data_proto import SequenceContext
from xtuner_nb.data_proto.messages import ChatMessages
from xtuner_nb.data_proto.templates import CHAT_TEMPLATE_MAP
from xtuner_nb.datasets import FTDPTokenizeFnConfig, OpenaiTokenizeFunctionConfig, label_spans
from xtuner_nb.datasets import chat_template_named

EMPTY_THINK = "<think>\n\n</think>\n\n"
TALK = [{"role": "system", "content": "You are Lumi."}, {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi! What can I do?"}, {"role": "user", "content": "A joke, please."},
        {"role": "assistant", "content": "Why did the GPU cross the road?"}, {"role": "user", "content": "Why?"}]


def test_chat_messages_render_and_tokenize_as_the_official_qwen3_template(qwen3_tok):
    template = CHAT_TEMPLATE_MAP["qwen3"]
    msgs = ChatMessages(messages=TALK)
    official = qwen3_tok.apply_chat_template(TALK, tokenize=False, add_generation_prompt=True)
    # XTuner's qwen3 template renders no reasoning at all, not even Qwen3's empty block
    assert msgs.get_prompt(template) == official.replace(EMPTY_THINK, "")
    out = msgs.tokenize(qwen3_tok, template)
    assert out["input_ids"] == qwen3_tok.encode(official.replace(EMPTY_THINK, ""), add_special_tokens=False)
    assert out["num_tokens"] == len(out["labels"]) == len(out["input_ids"])
    # trained: each assistant reply and its end token; the assistant header (in the user turn) and the "\n" after
    # <|im_end|> are not
    trained = [text for text, on in label_spans(qwen3_tok, out["input_ids"], out["labels"]) if on]
    assert trained == ["Hi! What can I do?<|im_end|>", "Why did the GPU cross the road?<|im_end|>"]
    # the same tokens as a training file's line get, and rendering leaves the messages as they were
    assert out == OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(qwen3_tok)({"messages": TALK})
    assert msgs.get_prompt(template) == msgs.get_prompt(template) and len(msgs.messages) == len(TALK)


def test_chat_messages_add_pop_and_the_checks_of_a_data_file(byte_tok):
    msgs = ChatMessages.from_str("Hi")
    msgs.add("assistant", "Yo", loss=True)
    assert [m.role for m in msgs.messages] == ["user", "assistant"] and msgs.messages[0].loss is False
    assert msgs.pop().content == "Yo"
    with pytest.raises(ValueError, match="message 2 has unknown role 'bot'"):
        ChatMessages(messages=[{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}])
    thinking = ChatMessages(messages=[{"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "Yo", "thinking": "hmm"}])
    with pytest.raises(ValueError, match="'thinking' is not supported by this chat template"):
        thinking.get_prompt(CHAT_TEMPLATE_MAP["qwen3"])


def test_template_map_is_the_datasets_one_and_says_why_a_name_is_missing():
    assert CHAT_TEMPLATE_MAP is chat_template_named.CHAT_TEMPLATE_MAP
    with pytest.raises(KeyError, match="'gpt-oss' is not supported by xtuner_nb: GPT-OSS is a MoE model"):
        CHAT_TEMPLATE_MAP["gpt-oss"]
    with pytest.raises(KeyError, match="unknown chat template 'qwen9'"):
        CHAT_TEMPLATE_MAP["qwen9"]


def _bytes(text: str) -> list[int]:
    return list(text.encode())


def test_ftdp_ids_and_labels_spelled_out_with_the_byte_tokenizer(byte_tok):
    out = FTDPTokenizeFnConfig().build(byte_tok)([{"role": "user", "content": "Hi"},
                                                   {"role": "assistant", "content": "Yo"}])
    prompt = _bytes("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    reply = _bytes("Yo<|im_end|>\n")  # internlm2: the reply and its end are trained, the header is not
    assert out["input_ids"] == [byte_tok.bos_token_id] + prompt + reply
    assert out["labels"] == [-100] * (1 + len(prompt)) + reply


def test_ftdp_names_tools_and_untrained_turns(byte_tok):
    record = {"dialogs": [
        {"role": "system", "content": "S", "name": "plugin"}, {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"}, {"role": "tool", "content": "T", "name": "interpreter"},
        {"role": "user", "content": "V"}, {"role": "assistant", "content": "B", "loss": False}]}
    out = FTDPTokenizeFnConfig(chat_template="qwen").build(byte_tok)(record)
    untrained_1 = _bytes("<|im_start|>system name=<|file_sep|>\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
                         "<|im_start|>assistant\n")
    # the tool call is merged into the assistant turn before it, spelled with the qwen names
    trained = _bytes("A<tool_call><|repo_name|>\nT</tool_call>\n<|im_end|>\n")
    untrained_2 = _bytes("<|im_start|>user\nV<|im_end|>\n<|im_start|>assistant\nB<|im_end|>\n")
    assert out["input_ids"] == [byte_tok.bos_token_id] + untrained_1 + trained + untrained_2
    assert out["labels"] == [-100] * (1 + len(untrained_1)) + trained + [-100] * len(untrained_2)
    cut = FTDPTokenizeFnConfig(chat_template="qwen", max_length=10).build(byte_tok)(record)
    assert cut["num_tokens"] == 10 and cut["num_tokens_before_truncation"] == len(out["input_ids"])
    with pytest.raises(ValueError, match="FTDP chat_template 'chatml' not found"):
        FTDPTokenizeFnConfig(chat_template="chatml").build(byte_tok)


def test_sequence_context_of_a_pack():
    ctx = SequenceContext.from_input_ids((torch.tensor([[5, 6, 7]]), torch.tensor([[8, 9]])), device="cpu")
    assert ctx.cu_seq_lens_q.tolist() == ctx.cu_seq_lens_k.tolist() == [0, 3, 5]
    assert ctx.seq_lens_k.tolist() == [3, 2] and int(ctx.max_length_q) == 3
    assert ctx.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    both = SequenceContext.cat([ctx, ctx])
    assert both.cu_seq_lens_k.tolist() == [0, 3, 5, 8, 10] and both.input_ids.tolist() == [[5, 6, 7, 8, 9] * 2]
    halves = both.chunk(2)
    assert [h.cu_seq_lens_k.tolist() for h in halves] == [[0, 3, 5], [0, 3, 5]]
    assert halves[1].input_ids.tolist() == [[5, 6, 7, 8, 9]] and int(halves[0].max_length_k) == 3
    assert ctx.copy(num_padding=1).num_padding == 1 and ctx.copy().input_ids is ctx.input_ids
    padded = SequenceContext(torch.tensor([[1, 2, 0, 0]]), torch.tensor([0, 2, 4], dtype=torch.int32),
                             torch.tensor([0, 2, 4], dtype=torch.int32), 2, 2, num_padding=2)
    assert padded.mask.tolist() == [[True, True, False, False]] and padded.split() is padded
    with pytest.raises(NotImplementedError, match="pixel_values=...\\) is not supported by xtuner_nb: vision"):
        SequenceContext(None, ctx.cu_seq_lens_q, ctx.cu_seq_lens_k, 3, 3, pixel_values=torch.zeros(1))


def test_xtuner_dataset_names_import_and_say_why_not():
    from xtuner_nb.data_proto import DSATopKCacheState
    from xtuner_nb.data_proto.messages.qwen35_chat import Qwen35ChatMessages, qwen35_tokenize_fn_slowspeed
    from xtuner_nb.datasets import (LongTextPretrainTokenizeFunctionConfig, PresetPackDataset, VLMJsonlDataset,
                                    qwen3_vl_sft_collator)

    for name, why in ((VLMJsonlDataset, "vision-language"), (PresetPackDataset, "preset packs"),
                      (qwen3_vl_sft_collator, "vision-language"), (Qwen35ChatMessages, "Qwen3.5"),
                      (qwen35_tokenize_fn_slowspeed, "Qwen3.5"), (LongTextPretrainTokenizeFunctionConfig, "chunked"),
                      (DSATopKCacheState, "MoE")):
        with pytest.raises(NotImplementedError, match=f"{name.__name__} is not supported by xtuner_nb: .*{why}"):
            name()
