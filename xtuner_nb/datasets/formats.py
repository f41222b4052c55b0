"""Data as people have it, converted to the OpenAI messages records the tokenize functions read.

- `sharegpt`: `{"conversations": [{"from": "human"|"gpt"|"system"|"function_call"|"observation", "value": ...}],
  "tools": "<JSON list>"}` (LLaMA-Factory's ShareGPT, e.g. glaive_toolcall_en_demo.json). A `function_call` turn
  becomes an assistant message with `tool_calls` (a list in its value: parallel calls), `observation` a tool message.
- `alpaca`: `{"instruction", "input", "output", "system"?, "history"?: [[query, answer], ...]}`; the user turn is
  instruction and input joined by a newline, as LLaMA-Factory's Alpaca converter does.
- `llamafactory`: LLaMA-Factory v1's messages, whose `content` is a list of `{"type": "text"|"reasoning"|
  "tool_call", "value": ...}` parts and which carry a `loss_weight` (e.g. v1_sft_demo.jsonl,
  reason_tool_use_demo_50.jsonl): reasoning becomes `reasoning_content`, tool_call parts `tool_calls`.
- `openai`: XTuner's own format (a list of messages, or `{"messages"|"dialogs": [...], "tools": [...]}`), as is.

`detect_format` looks at one record; the file reader detects the format from a file's first record and converts
every record of that file with it, so a record that does not fit raises a ValueError naming what is wrong (the
reader adds file and line).
"""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("auto", "openai", "sharegpt", "alpaca", "llamafactory")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "observation": "tool", "function_call": "assistant"}
LLAMAFACTORY_ROLES = ("system", "user", "assistant", "tool")


def detect_format(record: Any) -> str:
    if isinstance(record, dict):
        if "conversations" in record:
            return "sharegpt"
        if "instruction" in record or ("output" in record and "messages" not in record):
            return "alpaca"
        messages = record.get("messages")
        if isinstance(messages, list) and any(_is_llamafactory_message(m) for m in messages):
            return "llamafactory"
    return "openai"


def _is_llamafactory_message(m: Any) -> bool:
    if not isinstance(m, dict):
        return False
    parts = m.get("content")
    return "loss_weight" in m or (isinstance(parts, list) and any(isinstance(p, dict) and "value" in p
                                                                  for p in parts))


def convert(record: Any, data_format: str) -> Any:
    """`record` in `data_format` -> an OpenAI-messages record (`{"messages": [...], "tools": [...]}`)."""
    if data_format == "openai":
        return record
    if not isinstance(record, dict):
        raise ValueError(f"a {data_format} record must be a JSON object (got {type(record).__name__})")
    return {"sharegpt": from_sharegpt, "alpaca": from_alpaca, "llamafactory": from_llamafactory}[data_format](record)


def parse_tools(tools: Any) -> list[dict[str, Any]] | None:
    """LLaMA-Factory keeps `tools` as a JSON string; a list (or one schema) is taken as it is."""
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as e:
            raise ValueError(f"'tools' is not valid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(tools, dict):
        tools = [tools]
    if not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise ValueError("'tools' must be a list of tool schema objects (or a JSON string of one)")
    return tools or None


def tool_calls_from_json(text: Any, where: str) -> list[dict[str, Any]]:
    """`{"name": ..., "arguments": {...}}` or a list of them (parallel calls) -> OpenAI `tool_calls`."""
    try:
        calls = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: the tool call is not valid JSON ({e.msg} at column {e.colno})") from None
    calls = calls if isinstance(calls, list) else [calls]
    out = []
    for j, call in enumerate(calls, 1):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or "arguments" not in call:
            raise ValueError(f'{where}: tool call {j} must be {{"name": ..., "arguments": ...}}')
        out.append({"type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}})
    return out


def _record(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
    tools = parse_tools(tools)
    return {"messages": messages, "tools": tools} if tools else {"messages": messages}


def from_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    turns = record.get("conversations")
    if not isinstance(turns, list):
        raise ValueError(f"a ShareGPT record needs a 'conversations' list (got keys {sorted(record)})")
    messages: list[dict[str, Any]] = []
    if isinstance(record.get("system"), str) and record["system"]:
        messages.append({"role": "system", "content": record["system"]})
    for k, turn in enumerate(turns, 1):
        where = f"conversations turn {k}"
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError(f"{where} must be an object with 'from' and 'value'")
        tag, value = turn["from"], turn["value"]
        if tag not in SHAREGPT_ROLES:
            raise ValueError(f"{where} has unknown 'from' value {tag!r} (expected human, gpt, system, "
                             "function_call or observation)")
        if tag == "function_call":
            messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls_from_json(value, where)})
            continue
        if not isinstance(value, str):
            raise ValueError(f"{where} ({tag}): 'value' must be a string (got {type(value).__name__})")
        messages.append({"role": SHAREGPT_ROLES[tag], "content": value})
    return _record(messages, record.get("tools"))


def from_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    for key in ("instruction", "input", "output", "system"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ValueError(f"Alpaca field {key!r} must be a string (got {type(record[key]).__name__})")
    if not isinstance(record.get("output"), str):
        raise ValueError(f"an Alpaca record needs an 'output' string (got keys {sorted(record)})")
    messages: list[dict[str, Any]] = []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise ValueError("Alpaca 'history' must be a list of [query, answer] pairs")
    for k, pair in enumerate(history, 1):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ValueError(f"Alpaca 'history' entry {k} must be a [query, answer] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    query = "\n".join(x for x in (record.get("instruction"), record.get("input")) if x)
    messages += [{"role": "user", "content": query}, {"role": "assistant", "content": record["output"]}]
    return _record(messages, record.get("tools"))


def from_llamafactory(record: dict[str, Any]) -> dict[str, Any]:
    raw = record.get("messages")
    if not isinstance(raw, list):
        raise ValueError(f"a LLaMA-Factory record needs a 'messages' list (got keys {sorted(record)})")
    messages = []
    for k, m in enumerate(raw, 1):
        if not isinstance(m, dict) or m.get("role") not in LLAMAFACTORY_ROLES:
            role = m.get("role") if isinstance(m, dict) else None
            raise ValueError(f"message {k} has unknown role {role!r} (expected one of "
                             f"{', '.join(LLAMAFACTORY_ROLES)})")
        where = f"message {k} ({m['role']})"
        out: dict[str, Any] = {"role": m["role"]}
        text, reasoning, calls = _llamafactory_parts(m.get("content"), where)
        out["content"] = text
        if reasoning:
            if m["role"] != "assistant":
                raise ValueError(f"{where}: only assistant messages can have reasoning parts")
            out["reasoning_content"] = reasoning
        if calls:
            if m["role"] != "assistant":
                raise ValueError(f"{where}: only assistant messages can have tool_call parts")
            out["tool_calls"] = calls
        weight = m.get("loss_weight")
        if weight is not None:
            if weight not in (0, 1):
                raise ValueError(f"{where}: loss_weight {weight!r} is not supported (only 0.0 or 1.0)")
            out["loss"] = bool(weight)
        messages.append(out)
    return _record(messages, record.get("tools"))


def _llamafactory_parts(content: Any, where: str) -> tuple[str, str, list[dict[str, Any]]]:
    if isinstance(content, str):
        return content, "", []
    if not isinstance(content, list):
        raise ValueError(f"{where}: 'content' must be a list of {{'type', 'value'}} parts or a string")
    text, reasoning, calls = "", "", []
    for j, part in enumerate(content, 1):
        kind = part.get("type") if isinstance(part, dict) else None
        value = part.get("value") if isinstance(part, dict) else None
        if kind not in ("text", "reasoning", "tool_call") or not isinstance(value, str):
            raise ValueError(f"{where}: content part {j} must be {{'type': 'text'|'reasoning'|'tool_call', "
                             f"'value': '...'}} (got type {kind!r}; images, videos and audio are not supported)")
        if kind == "text":
            text += value
        elif kind == "reasoning":
            reasoning += value
        else:
            calls += tool_calls_from_json(value, f"{where}, content part {j}")
    return text, reasoning, calls
