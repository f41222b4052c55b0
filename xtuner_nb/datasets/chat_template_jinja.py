"""`chat_template="hf"`: the tokenizer's own jinja `chat_template`, token for token, with every assistant turn trained.

The whole conversation is rendered once, exactly as `tokenizer.apply_chat_template(messages, tools=tools)`, and
encoded once, so the ids are the ones the model sees when it is served with its own template (vLLM, llama.cpp,
Ollama). The labels come from where each assistant turn lies in that text:
1. a template that marks assistant turns with `{% generation %}` gives transformers' `assistant_masks`;
2. otherwise each trained assistant turn `i` is located by rendering the same conversation a second time with only
   that message replaced by a stand-in (same role, other text). Both renderings agree before and after the turn, so
   it lies between the first and the last difference. All other messages stay in place, because templates look
   ahead: Qwen3's decides from the last user query which turns keep their `<think>` block, so rendering a prefix
   of the conversation can change earlier turns. The difference is widened to the whole turn as the model writes
   it: from the end of the assistant header (what `add_generation_prompt=True` appends) to the end-of-turn token
   included; the separator after it (ChatML's `\\n`) stays untrained, as in XTuner's qwen3.
A token that straddles the header boundary (a BPE merge of the header's `\\n` with leading newlines of the answer)
is trained, so no character the assistant writes is left out.
"""

from __future__ import annotations

import re
from typing import Any

from .messages import Conversation, Message

HF_TEMPLATE = "hf"  # the `chat_template` name that selects this rendering (the others are CHAT_TEMPLATE_MAP's)
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
_STAND_INS = ("\u00a7", "\u00a4", "\u00b6")  # "§¤¶": one differs from the first and last character of any turn


def hf_messages(conv: Conversation) -> list[dict[str, Any]]:
    out = []
    for index, m in enumerate(conv.messages, 1):
        if m.role == "pretrain":
            raise ValueError(f"message {index}: role 'pretrain' cannot be rendered by a chat template")
        if m.loss and m.role != "assistant":
            raise ValueError(f"message {index} ({m.role}): with chat_template='hf' only assistant turns can be trained")
        d: dict[str, Any] = {"role": m.role, "content": m.text}
        for key in ("tool_calls", "name", "tool_call_id", "reasoning_content"):
            if m.raw.get(key) is not None:
                d[key] = m.raw[key]
        if m.thinking is not None:
            d["reasoning_content"] = m.thinking
        out.append(d)
    return out


def hf_tokenize(tokenizer, conv: Conversation) -> tuple[list[int], list[int], dict[str, int]]:
    """`(input_ids, labels, dropped)`: `dropped` counts what the template left out (assistant turns whose
    reasoning or tool calls it does not render; `tools` when the tool schemas are not in the prompt)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError("chat_template='hf' needs a tokenizer with a chat_template")
    if not isinstance(template, str):
        raise ValueError("chat_template='hf' needs a single (string) chat_template on the tokenizer")
    if not conv.messages:
        return [], [], {}
    messages = hf_messages(conv)
    full = _render(tokenizer, messages, conv.tools)
    turns = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
    regions = {}
    for i in turns:
        try:
            regions[i] = _locate(tokenizer, messages, conv.tools, full, i)
        except ValueError:
            if conv.messages[i].loss:
                raise
    dropped = _dropped(conv.messages, full, regions)
    # a template without tool support leaves the schemas out (the names alone may still show in the tool calls)
    probes = [t.get("function", t).get("description") or t.get("function", t).get("name") for t in conv.tools or []]
    if probes and not any(isinstance(p, str) and p in full for p in probes):
        dropped["tools"] = 1
    trained = [regions[i] for i in turns if conv.messages[i].loss]
    if any(a[1] > b[0] for a, b in zip(trained, trained[1:])):
        raise ValueError("the assistant turns overlap in the rendered chat template")
    if _GENERATION_TAG.search(template):
        out = tokenizer.apply_chat_template(messages, tools=conv.tools, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
        runs = _runs(mask)
        if len(runs) == len(turns):  # the template's own marks, minus the turns with loss: false
            labels = [-100] * len(ids)
            for (a, b), i in zip(runs, turns):
                if conv.messages[i].loss:
                    labels[a:b] = ids[a:b]
            return ids, labels, dropped
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    labels = [-100] * len(ids)
    r = 0
    for k, (a, b) in enumerate(offsets):
        while r < len(trained) and a >= trained[r][1]:
            r += 1
        if r < len(trained) and a < trained[r][1] and max(b, a + 1) > trained[r][0]:
            labels[k] = ids[k]
    return ids, labels, dropped


def _render(tokenizer, messages, tools, generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def _locate(tokenizer, messages, tools, full: str, i: int) -> tuple[int, int]:
    """Character span `[start, end)` of assistant message `i` in `full`, header and separator excluded."""
    original = messages[i]
    text = str(original.get("content") or "")
    stand_in = next(c for c in _STAND_INS if not (text.startswith(c) or text.endswith(c)))
    other = _render(tokenizer, messages[:i] + [{"role": "assistant", "content": stand_in}] + messages[i + 1:], tools)
    if other == full:
        raise ValueError(f"message {i + 1} (assistant): the chat template does not render it")
    first = _common_prefix(full, other)
    last = max(first, len(full) - _common_suffix(full[first:], other[first:]))  # == first: an empty turn
    header, end_token = _markers(tokenizer)
    found = full.rfind(header, 0, first) if header else -1
    start = found + len(header) if found >= 0 else first
    found = full.find(end_token, last) if end_token else -1
    if found >= 0 and header and header in full[last:found]:  # no end token of its own: never reach the next turn
        found = -1
    end = found + len(end_token) if found >= 0 else last
    return start, end


def _markers(tokenizer) -> tuple[str, str]:
    """The assistant header (what `add_generation_prompt=True` adds) and the end-of-turn text of this template,
    from a probe conversation; cached on the tokenizer (keyed by the template text)."""
    template = tokenizer.chat_template
    cached = getattr(tokenizer, "_xtuner_nb_markers", None)
    if cached and cached[0] == template:
        return cached[1]
    header = end_token = ""
    probe = [{"role": "user", "content": "u"}]
    try:
        prompt = _render(tokenizer, probe, None)
        with_header = _render(tokenizer, probe, None, generation_prompt=True)
        if with_header.startswith(prompt):
            header = with_header[len(prompt):]
        answered = _render(tokenizer, probe + [{"role": "assistant", "content": "\u00a7"}], None)
        end_token = answered[answered.rfind("\u00a7") + 1:].rstrip()
    except Exception:  # noqa: BLE001 - a template that refuses the probe: fall back to the eos token
        pass
    if not end_token:
        end_token = getattr(tokenizer, "eos_token", None) or ""
    try:
        tokenizer._xtuner_nb_markers = (template, (header, end_token))
    except AttributeError:
        pass
    return header, end_token


def _dropped(messages: list[Message], full: str, regions: dict[int, tuple[int, int]]) -> dict[str, int]:
    """Assistant reasoning and tool calls that the template did not put into the text (e.g. Qwen3 drops the
    reasoning of turns before the last user query; a template without tool support drops tool calls)."""
    dropped: dict[str, int] = {}
    for i, (a, b) in regions.items():
        m, turn = messages[i], full[a:b]
        reasoning = reasoning_of(m)
        if reasoning and reasoning.strip() not in turn:
            dropped["reasoning"] = dropped.get("reasoning", 0) + 1
        if m.tool_calls and any(call["function"]["name"] not in turn for call in m.tool_calls):
            dropped["tool_calls"] = dropped.get("tool_calls", 0) + 1
    return dropped


def reasoning_of(m: Message) -> str | None:
    """The reasoning an assistant message carries: `thinking`, `reasoning_content` or a `<think>` block."""
    if m.thinking:
        return m.thinking
    if m.raw.get("reasoning_content"):
        return m.raw["reasoning_content"]
    if "</think>" in m.text:
        return m.text.split("</think>")[0].split("<think>")[-1]
    return None


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search over slice comparisons, which run in C)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str) -> int:
    return _common_prefix(a[::-1], b[::-1])


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for k, v in enumerate(list(mask) + [0]):
        if v and start is None:
            start = k
        elif not v and start is not None:
            runs.append((start, k))
            start = None
    return runs
