"""Chat templates and labels against hand-written expected (text, trained) segments, with real tokenizers.

XTuner encodes each message on its own, so the expected ids are the concatenation of each expected segment's
encoding; the UTF8ByteTokenizer cases spell out the exact ids (UTF-8 bytes).
"""

import pytest

from xtuner_nb.datasets import (OpenaiTokenizeFunctionConfig, PretrainTokenizeFunctionConfig, label_spans)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]
TOOL_SCHEMA_LINE = ('{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", '
                    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}')
QWEN_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" + TOOL_SCHEMA_LINE +
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>")

CASES = {
    "single_turn": (
        [{"role": "user", "content": "What are the three primary colors?\n"},
         {"role": "assistant", "content": "The three primary colors are red, blue, and yellow."}],
        None,
        [("<|im_start|>user\nWhat are the three primary colors?\n<|im_end|>\n<|im_start|>assistant\n", False),
         ("The three primary colors are red, blue, and yellow.<|im_end|>", True),
         ("\n", False)]),
    "system_multi_turn_loss_false": (
        [{"role": "system", "content": "You are Lumi."},
         {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!", "loss": False},
         {"role": "user", "content": "Bye"},
         {"role": "assistant", "content": "See you"}],
        None,
        [("<|im_start|>system\nYou are Lumi.<|im_end|>\n", False),
         ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False),
         ("Hello!<|im_end|>", False), ("\n", False),
         ("<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n", False),
         ("See you<|im_end|>", True), ("\n", False)]),
    "chinese_emoji_user_loss_true": (
        [{"role": "developer", "content": "请用中文回答。"},
         {"role": "user", "content": "你好🙂", "loss": True},
         {"role": "assistant", "content": "你好！很高兴见到你 🎉"}],
        None,
        [("<|im_start|>system\n请用中文回答。<|im_end|>\n", False),
         ("<|im_start|>user\n你好🙂<|im_end|>\n<|im_start|>assistant\n", True),
         ("你好！很高兴见到你 🎉<|im_end|>", True), ("\n", False)]),
    "tools_and_tool_calls": (
        [{"role": "system", "content": "You are helpful."},
         {"role": "user", "content": "Weather in Paris?"},
         {"role": "assistant", "content": "",
          "tool_calls": [{"id": "c1", "type": "function",
                          "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
         {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "c1"},
         {"role": "assistant", "content": "It is 21°C in Paris ☀️"}],
        TOOLS,
        [("<|im_start|>system\nYou are helpful." + QWEN_TOOL_PROMPT + "<|im_end|>\n", False),
         ("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n", False),
         ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>', True),
         ("\n", False),
         ('<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n',
          False),
         ("It is 21°C in Paris ☀️<|im_end|>", True), ("\n", False)]),
    "tools_without_system_and_text_parts": (
        [{"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "now?"}]},
         {"role": "assistant", "content": "Let me check.",
          "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "北京"}}}]}],
        TOOLS,
        [("<|im_start|>system\n" + QWEN_TOOL_PROMPT + "<|im_end|>\n", False),
         ("<|im_start|>user\nWeather now?<|im_end|>\n<|im_start|>assistant\n", False),
         ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>'
          "<|im_end|>", True),
         ("\n", False)]),
}


def expected_ids(tok, segments):
    ids, labels = [], []
    for text, trained in segments:
        enc = tok.encode(text, add_special_tokens=False)
        ids += enc
        labels += enc if trained else [-100] * len(enc)
    return ids, labels


def merged(segments):
    out = []
    for text, trained in segments:
        if out and out[-1][1] == trained:
            out[-1] = (out[-1][0] + text, trained)
        elif text:
            out.append((text, trained))
    return out


def record(messages, tools):
    return {"messages": messages, "tools": tools} if tools else messages


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("tok_name", ["tiny_tok", "qwen2_tok", "byte_tok"])
def test_qwen3_template_matches_hand_written_segments(case, tok_name, request):
    tok = request.getfixturevalue(tok_name)
    messages, tools, segments = CASES[case]
    fn = OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(tok)
    out = fn(record(messages, tools))
    ids, labels = expected_ids(tok, segments)
    assert out["input_ids"] == ids
    assert out["labels"] == labels
    assert out["num_tokens"] == len(ids)
    assert label_spans(tok, out["input_ids"], out["labels"]) == merged(segments)


def test_byte_tokenizer_exact_ids(byte_tok):
    fn = OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(byte_tok)
    out = fn([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "好"}])
    prompt = list(b"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    answer = [0xE5, 0xA5, 0xBD] + list(b"<|im_end|>")
    assert out["input_ids"] == prompt + answer + [10]
    assert out["labels"] == [-100] * len(prompt) + answer + [-100]


def test_tiny_tokenizer_special_ids_in_place(tiny_tok):
    fn = OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(tiny_tok)
    out = fn([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    ids, labels = out["input_ids"], out["labels"]
    assert ids[0] == 1 and ids.count(1) == 2  # <|im_start|> user ... <|im_start|> assistant
    trained = [t for t in labels if t != -100]
    assert trained[-1] == 2 and ids[-2] == 2  # <|im_end|> of the answer is trained, the final "\n" is not
    assert labels[-1] == -100 and tiny_tok.decode([ids[-1]]) == "\n"


def test_llama3_template(tiny_tok):
    fn = OpenaiTokenizeFunctionConfig(chat_template="llama3").build(tiny_tok)
    out = fn([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello"}])
    segs = [("<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>", False),
            ("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant"
             "<|end_header_id|>\n\n", False),
            ("Hello<|eot_id|>", True)]  # sep is "" for llama3
    assert (out["input_ids"], out["labels"]) == expected_ids(tiny_tok, segs)


def test_no_think_injection_and_thinking_rejected(tiny_tok):
    fn = OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(tiny_tok)
    text = tiny_tok.decode(fn([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])[
        "input_ids"])
    assert "<think>" not in text
    # thinking on an earlier turn is dropped (XTuner keeps it only on the last message) ...
    out = fn([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "thinking": "hmm"},
              {"role": "user", "content": "c"}])
    assert "hmm" not in tiny_tok.decode(out["input_ids"])
    # ... and on the last turn the qwen3 template has no thinking format
    with pytest.raises(ValueError, match="thinking"):
        fn([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "thinking": "hmm"}])


def test_max_length_truncates(tiny_tok):
    fn = OpenaiTokenizeFunctionConfig(chat_template="qwen3", max_length=5).build(tiny_tok)
    out = fn([{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi"}])
    full = OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(tiny_tok)(
        [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi"}])
    assert out["input_ids"] == full["input_ids"][:5] and out["labels"] == full["labels"][:5]
    assert out["num_tokens"] == 5 and out["num_tokens_before_truncation"] == full["num_tokens"]


def test_batched_encoding_equals_encode(qwen2_tok):
    from xtuner_nb.datasets.tokenize_fn import encode_texts

    texts = ["<|im_start|>user\n你好🙂<|im_end|>\n", "  spaces  and\n\nnewlines ", "é" * 3, ""]
    assert encode_texts(qwen2_tok, texts) == [qwen2_tok.encode(t, add_special_tokens=False) for t in texts]


# ---- "hf": the tokenizer's own jinja template ----------------------------------------------------------------
HF_MESSAGES = [{"role": "user", "content": "Hi 你好"}, {"role": "assistant", "content": "Hello! 🙂"},
               {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you", "loss": False},
               {"role": "user", "content": "Again"}, {"role": "assistant", "content": "Sure."}]


def test_hf_generation_markers_equal_qwen3(tiny_tok):
    """The tiny tokenizer's template marks assistant turns with {% generation %}; with no think block and no
    default system it renders exactly what XTuner's qwen3 template does."""
    hf = OpenaiTokenizeFunctionConfig(chat_template="hf").build(tiny_tok)(HF_MESSAGES)
    q3 = OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(tiny_tok)(HF_MESSAGES)
    assert hf["input_ids"] == q3["input_ids"] and hf["labels"] == q3["labels"]


def test_hf_prefix_rendering_without_markers(tiny_tok, tmp_path):
    """Same template without {% generation %}: the mask comes from rendering prefixes, and must not change."""
    from transformers import AutoTokenizer

    tiny_tok.save_pretrained(tmp_path)
    plain = AutoTokenizer.from_pretrained(tmp_path)
    plain.chat_template = tiny_tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    a = OpenaiTokenizeFunctionConfig(chat_template="hf").build(plain)(HF_MESSAGES)
    b = OpenaiTokenizeFunctionConfig(chat_template="hf").build(tiny_tok)(HF_MESSAGES)
    assert (a["input_ids"], a["labels"]) == (b["input_ids"], b["labels"])


def test_hf_qwen2_template_with_default_system(qwen2_tok):
    out = OpenaiTokenizeFunctionConfig(chat_template="hf").build(qwen2_tok)(HF_MESSAGES[:2])
    full = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi 你好<|im_end|>\n"
            "<|im_start|>assistant\nHello! 🙂<|im_end|>\n")
    assert out["input_ids"] == qwen2_tok.encode(full, add_special_tokens=False)  # encoded whole, once
    assert label_spans(qwen2_tok, out["input_ids"], out["labels"]) == [
        ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi 你好<|im_end|>\n"
         "<|im_start|>assistant\n", False), ("Hello! 🙂<|im_end|>", True), ("\n", False)]


def test_hf_rejects_trained_user_turn_and_missing_template(tiny_tok, byte_tok):
    fn = OpenaiTokenizeFunctionConfig(chat_template="hf").build(tiny_tok)
    with pytest.raises(ValueError, match="only assistant turns"):
        fn([{"role": "user", "content": "x", "loss": True}, {"role": "assistant", "content": "y"}])
    with pytest.raises(ValueError, match="chat_template"):
        OpenaiTokenizeFunctionConfig(chat_template="hf").build(byte_tok)(HF_MESSAGES)


def test_unknown_template_named():
    with pytest.raises(ValueError, match="qwen3"):
        OpenaiTokenizeFunctionConfig(chat_template="qwen-3")


# ---- pretraining ---------------------------------------------------------------------------------------------
def test_pretrain_tokenize_fn(tiny_tok, byte_tok):
    fn = PretrainTokenizeFunctionConfig().build(tiny_tok)
    out = fn({"content": "你好 world"})
    assert out["input_ids"] == tiny_tok.encode("你好 world<|im_end|>", add_special_tokens=False)
    assert out["labels"] == [-100] + out["input_ids"][1:]
    assert fn({"messages": [{"role": "pretrain", "content": "你好 world"}]}) == out
    # the byte tokenizer has no special strings: the eos id is appended directly
    out = PretrainTokenizeFunctionConfig().build(byte_tok)({"content": "ab"})
    assert out["input_ids"] == [97, 98, 257] and out["labels"] == [-100, 98, 257]
    out = PretrainTokenizeFunctionConfig(add_bos_token=True, add_eos_token=False).build(byte_tok)({"text": "a"})
    assert out["input_ids"] == [256, 97]


def test_pretrain_role_in_chat(tiny_tok):
    out = OpenaiTokenizeFunctionConfig(chat_template="qwen3").build(tiny_tok)(
        [{"role": "pretrain", "content": "raw text"}])
    assert out["input_ids"] == tiny_tok.encode("raw text", add_special_tokens=False)
    assert out["labels"] == out["input_ids"]


# Qwen3-style think handling: only the final assistant turn after the last user query gets an (empty) think block,
# so rendering a prefix differs from the full conversation and the mask must be found by searching the content.
THINK_TEMPLATE = (
    "{%- set ns = namespace(last_query_index=0) %}"
    "{%- for m in messages %}{%- if m.role == 'user' %}{%- set ns.last_query_index = loop.index0 %}{%- endif %}"
    "{%- endfor %}"
    "{%- for m in messages %}{%- if m.role == 'assistant' %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if loop.index0 > ns.last_query_index and loop.last %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{{- m.content + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def test_hf_template_that_is_not_prefix_stable(qwen2_tok, tmp_path):
    from transformers import AutoTokenizer

    qwen2_tok.save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    tok.chat_template = THINK_TEMPLATE
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! 🙂"},
            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you"}]
    out = OpenaiTokenizeFunctionConfig(chat_template="hf").build(tok)(msgs)
    assert label_spans(tok, out["input_ids"], out["labels"]) == [
        ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False), ("Hello! 🙂<|im_end|>", True),
        ("\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n", False),
        ("<think>\n\n</think>\n\nSee you<|im_end|>", True), ("\n", False)]
