"""`chat_template="hf"`: render with the tokenizer's own jinja `chat_template` and derive the loss mask from it.

Two ways to find the assistant tokens, best first:
1. the template marks them with `{% generation %}` -> transformers' `return_assistant_tokens_mask`;
2. otherwise render prefixes: the assistant turn `i` spans from the end of
   `render(messages[:i], add_generation_prompt=True)` to the end of `render(messages[:i+1])`, minus trailing
   whitespace (so a ChatML `\\n` after `<|im_end|>` stays untrained, as in XTuner's qwen3). When a template renders
   a prefix differently from the full conversation (Qwen3's think blocks do), the turn is found by searching for its
   content, and the end-of-turn token right after it is trained too.
The whole conversation is encoded once, exactly as the model will see it at inference time.
"""

from __future__ import annotations

import re
from typing import Any

from .messages import Conversation

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


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


def hf_tokenize(tokenizer, conv: Conversation) -> tuple[list[int], list[int]]:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError("chat_template='hf' needs a tokenizer with a chat_template")
    if not isinstance(template, str):
        raise ValueError("chat_template='hf' needs a single (string) chat_template on the tokenizer")
    if not conv.messages:
        return [], []
    messages = hf_messages(conv)
    trained = [m.role == "assistant" and m.loss for m in conv.messages]
    if _GENERATION_TAG.search(template):
        out = tokenizer.apply_chat_template(messages, tools=conv.tools, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
        runs = _runs(mask)
        assistants = [t for m, t in zip(conv.messages, trained) if m.role == "assistant"]
        if all(trained[i] for i, m in enumerate(conv.messages) if m.role == "assistant"):
            return ids, [t if k else -100 for t, k in zip(ids, mask)]
        if len(runs) == len(assistants):  # drop the runs of assistant turns marked loss: false
            labels = [-100] * len(ids)
            for (a, b), keep in zip(runs, assistants):
                if keep:
                    labels[a:b] = ids[a:b]
            return ids, labels
        # cannot map the mask to turns: fall through to the prefix method
    return _by_prefixes(tokenizer, conv, messages, trained)


def _render(tokenizer, messages, tools, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def _by_prefixes(tokenizer, conv, messages, trained) -> tuple[list[int], list[int]]:
    full = _render(tokenizer, messages, conv.tools, False)
    regions, cursor = [], 0
    eos = getattr(tokenizer, "eos_token", None) or ""
    for i, keep in enumerate(trained):
        if not keep:
            continue
        start = end = None
        try:
            before = _render(tokenizer, messages[:i], conv.tools, True) if i else ""
            upto = _render(tokenizer, messages[: i + 1], conv.tools, False)
            if full.startswith(before) and full.startswith(upto) and len(upto) > len(before) >= cursor:
                start, end = len(before), len(upto)
                while end > start and full[end - 1].isspace():
                    end -= 1
        except Exception:  # some templates refuse a prefix (e.g. no user turn yet): search instead
            pass
        if start is None:
            text = messages[i]["content"]
            found = full.find(text, cursor) if text else -1
            if found < 0:
                raise ValueError(f"message {i + 1} (assistant): cannot locate it in the rendered chat template")
            start, end = found, found + len(text)
            if eos and full.startswith(eos, end):
                end += len(eos)
        regions.append((start, end))
        cursor = end
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    labels = [-100] * len(ids)
    r = 0
    for k, (a, _b) in enumerate(offsets):
        while r < len(regions) and a >= regions[r][1]:
            r += 1
        if r < len(regions) and regions[r][0] <= a < regions[r][1]:
            labels[k] = ids[k]
    return ids, labels


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for k, v in enumerate(list(mask) + [0]):
        if v and start is None:
            start = k
        elif not v and start is not None:
            runs.append((start, k))
            start = None
    return runs
