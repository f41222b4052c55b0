"""Parse and validate one jsonl record in XTuner's OpenAI-messages format.

A record is a bare list of messages, `{"messages": [...], "tools": [...]}` or `{"dialogs": [...]}`. Messages are
checked field by field in plain Python (faster than pydantic on millions of messages, and the messages name the
offending message: `message 2 has unknown role 'bot' ...`). Problems raise `ValueError`; the file reader adds the
file name and line number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .formats import parse_tools

ROLES = ("system", "developer", "user", "assistant", "tool", "pretrain")
DEFAULT_LOSS = {"system": False, "developer": False, "user": False, "assistant": True, "tool": False, "pretrain": True}
MESSAGE_KEYS = ("role", "content", "loss", "thinking", "tool_calls", "name", "meta", "tool_call_id",
                "reasoning_content")
CONTENT_PART_TYPES = {"text": "text", "image_url": "image_url", "video_url": "video_url"}


@dataclass
class Message:
    role: str
    text: str  # content flattened to text (image/video parts render as "" for text-only models, as XTuner)
    loss: bool
    thinking: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the message as written (the "hf" template renders it)


@dataclass
class Conversation:
    messages: list[Message]
    tools: list[dict[str, Any]] | None = None


def parse_conversation(record: Any) -> Conversation:
    tools = None
    if isinstance(record, dict):
        if isinstance(record.get("messages"), list):
            messages = record["messages"]
        elif isinstance(record.get("dialogs"), list):
            messages = record["dialogs"]
        elif "messages" in record or "dialogs" in record:
            key = "messages" if "messages" in record else "dialogs"
            raise ValueError(f"'{key}' must be a list of messages (got {type(record[key]).__name__})")
        else:
            raise ValueError("expected a list of messages, or an object with a 'messages' (or 'dialogs') list; "
                             f"got an object with keys {sorted(record)}")
        tools = parse_tools(record.get("tools"))  # a list, or a JSON string of one (as LLaMA-Factory keeps it)
    elif isinstance(record, list):
        messages = record
    else:
        raise ValueError(f"expected a list of messages or an object, got {type(record).__name__}")
    return Conversation([parse_message(m, i) for i, m in enumerate(messages, 1)], tools or None)


def parse_message(msg: Any, index: int) -> Message:
    if not isinstance(msg, dict):
        raise ValueError(f"message {index} is not an object (got {type(msg).__name__})")
    role = msg.get("role")
    if role is None:
        raise ValueError(f"message {index} has no 'role'")
    if role not in ROLES:
        raise ValueError(f"message {index} has unknown role {role!r} (expected one of {', '.join(ROLES)})")
    unknown = [k for k in msg if k not in MESSAGE_KEYS]
    if unknown:
        raise ValueError(f"message {index} ({role}) has unknown key {unknown[0]!r} "
                         f"(allowed: {', '.join(MESSAGE_KEYS)})")
    where = f"message {index} ({role})"
    tool_calls = msg.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant":
            raise ValueError(f"{where}: only assistant messages can have 'tool_calls'")
        tool_calls = _check_tool_calls(tool_calls, where)
    if msg.get("content") is None and not tool_calls:  # an assistant turn that only calls tools may have none
        raise ValueError(f"{where} has no content")
    text = _content_text(msg.get("content"), where)
    loss = msg.get("loss")
    if loss is not None and not isinstance(loss, bool):
        raise ValueError(f"{where}: 'loss' must be true or false (got {loss!r})")
    thinking = msg.get("thinking")
    if thinking is not None:
        if role != "assistant":
            raise ValueError(f"{where}: only assistant messages can have 'thinking'")
        if not isinstance(thinking, str):
            raise ValueError(f"{where}: 'thinking' must be a string")
    for key in ("name", "tool_call_id", "reasoning_content"):
        if msg.get(key) is not None and not isinstance(msg[key], str):
            raise ValueError(f"{where}: {key!r} must be a string")
    if msg.get("meta") is not None and not isinstance(msg["meta"], dict):
        raise ValueError(f"{where}: 'meta' must be an object")
    return Message(role, text, DEFAULT_LOSS[role] if loss is None else loss, thinking, tool_calls, msg)


def _content_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValueError(f"{where}: 'content' must be a string or a list of parts (got {type(content).__name__})")
    text = ""
    for j, part in enumerate(content, 1):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in CONTENT_PART_TYPES:
            raise ValueError(f"{where}: content part {j} must be an object with type text, image_url or video_url")
        payload = part.get(CONTENT_PART_TYPES[kind])
        if kind == "text":
            if not isinstance(payload, str):
                raise ValueError(f"{where}: content part {j} (text) has no 'text' string")
            text += payload
        elif not isinstance(payload, dict) or not isinstance(payload.get("url"), str):
            raise ValueError(f"{where}: content part {j} ({kind}) needs {{'{kind}': {{'url': ...}}}}")
    return text


def _check_tool_calls(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, list):
        raise ValueError(f"{where}: 'tool_calls' must be a list")
    for j, call in enumerate(tool_calls, 1):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or "arguments" not in fn:
            raise ValueError(f"{where}: tool call {j} needs {{'function': {{'name': ..., 'arguments': ...}}}}")
        if isinstance(fn["arguments"], str):
            try:
                json.loads(fn["arguments"])
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: tool call {j} arguments are not valid JSON ({e})") from None
        elif not isinstance(fn["arguments"], dict):
            raise ValueError(f"{where}: tool call {j} arguments must be a JSON string or an object")
    return tool_calls


def tool_calls_text(tool_calls: list[dict[str, Any]]) -> str:
    """XTuner's `function_formatter`: one `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` per call."""
    texts = []
    for call in tool_calls:
        fn = call["function"]
        args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
        texts.append(json.dumps({"name": fn["name"], "arguments": args}, ensure_ascii=False))
    return "\n".join(f"<tool_call>\n{t}\n</tool_call>" for t in texts)


def tools_text(tools: list[dict[str, Any]]) -> str:
    """XTuner's `tool_formatter`: each schema on its own line, wrapped as {"type": "function", ...} if needed."""
    out = ""
    for tool in tools:
        wrapped = tool if tool.get("type") == "function" else {"type": "function", "function": tool}
        out += "\n" + json.dumps(wrapped, ensure_ascii=False)
    return out
