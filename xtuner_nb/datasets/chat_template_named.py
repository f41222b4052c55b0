"""XTuner's named chat templates (`chat_template="qwen3"`, ...): `HybridChatTemplate` and `CHAT_TEMPLATE_MAP`,
rendered as XTuner v1 renders them (`HybridChatTemplate` + `ChatMessages.tokenize`). The tokenizer's own Jinja
template (`chat_template="hf"`) is `chat_template_jinja.py`.

A conversation becomes a list of `(text, trained)` segments, one per message plus the separator after every
assistant turn. Each segment is encoded on its own (never the whole string at once), which is what makes the
masks exact: with `qwen3` the assistant header belongs to the user segment (masked), the assistant content plus
`<|im_end|>` is trained and the `\\n` separator is not.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .messages import Conversation, Message, tool_calls_text, tools_text


class Segments(list):
    """The `(text, trained)` segments of one conversation, plus `dropped`: what the template did not render
    (`{"reasoning": n}` assistant turns whose reasoning is left out), so that nothing is lost silently."""

    dropped: dict[str, int]

    def __init__(self, items=(), dropped: dict[str, int] | None = None):
        super().__init__(items)
        self.dropped = dropped or {}


class HybridChatTemplate(BaseModel):
    """The format strings of one chat template (XTuner's field names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    developer: str | None = None
    user: str
    assistant: str
    stop_words: list[str]
    sep: str = "\n"
    thinking: str | None = None
    default_system: str | None = None
    tool_prompt: str | None = None
    tool_extractor: str | None = None
    only_last_assistant_loss: bool = False
    loss_assistant_format_mapping: dict[str, str] = {}

    def render(self, conv: Conversation) -> Segments:
        """The `(text, trained)` segments of a conversation, in order. Raises ValueError for what cannot render."""
        messages = _prepare(conv, self)
        segments = Segments(dropped=_unrendered_reasoning(conv, self))
        for index, msg in enumerate(messages, 1):
            segments.append((self._decorate(msg, index), msg.loss))
            if msg.role == "assistant":
                segments.append((self.sep, False))
        return segments

    # XTuner's decorate_* methods: one message's text in its role's format string
    def decorate_system(self, text: str) -> str:
        return self.system.format(system=text)

    def decorate_developer(self, text: str) -> str:
        if self.developer is None:
            raise ValueError("this chat template has no developer role")
        return self.developer.format(developer=text)

    def decorate_user(self, text: str) -> str:
        return self.user.format(user=text)

    def decorate_assistant(self, text: str) -> str:
        return self.assistant.format(assistant=text)

    def decorate_thinking(self, text: str) -> str:
        if self.thinking is None:
            raise ValueError("'thinking' is not supported by this chat template (XTuner's qwen3 template has no "
                             "thinking format)")
        return self.thinking.format(thinking=text)

    def decorate_tool_extractor(self, text: str) -> str:
        if self.tool_extractor is None:
            raise ValueError("this chat template has no tool role")
        return self.tool_extractor.format(tool_extractor=text)

    def _decorate(self, msg: Message, index: int) -> str:
        text, role = msg.text, msg.role
        try:
            return self._decorate_role(msg, text, role)
        except ValueError as e:
            raise ValueError(f"message {index}: {e}") from None

    def _decorate_role(self, msg: Message, text: str, role: str) -> str:
        if role == "system":
            return self.decorate_system(text)
        if role == "developer":
            return self.decorate_developer(text)
        if role == "user":
            return self.decorate_user(text)
        if role == "pretrain":
            return text
        if role == "tool":
            return self.decorate_tool_extractor(text)
        # assistant
        if msg.tool_calls:
            calls = tool_calls_text(msg.tool_calls)
            text = text + ("\n" + calls if text else calls)
        prefix = self.decorate_thinking(msg.thinking) if msg.thinking is not None else ""
        body = self.decorate_assistant(text)
        if msg.loss:
            for old, new in self.loss_assistant_format_mapping.items():
                body = body.replace(old, new)
        return prefix + body


def _unrendered_reasoning(conv: Conversation, template: HybridChatTemplate) -> dict[str, int]:
    """Assistant turns whose reasoning XTuner's rendering leaves out: `reasoning_content` (XTuner accepts the field
    and never renders it) and `thinking` on any but the last message (dropped by `process_message`)."""
    n = 0
    for k, m in enumerate(conv.messages):
        if m.role != "assistant":
            continue
        thinking_kept = m.thinking is not None and k == len(conv.messages) - 1 and template.thinking is not None
        if (m.thinking and not thinking_kept) or (m.raw.get("reasoning_content") and m.thinking is None):
            n += 1
    return {"reasoning": n} if n else {}


def _prepare(conv: Conversation, template: HybridChatTemplate) -> list[Message]:
    """XTuner's `process_message`: default system, thinking only on the last turn, tools appended to the system."""
    messages = [Message(m.role, m.text, m.loss, m.thinking, m.tool_calls, m.raw) for m in conv.messages]
    if not messages:
        return messages
    if template.default_system is not None and messages[0].role != "system":
        messages.insert(0, Message("system", template.default_system, False))
    for msg in messages[:-1]:
        msg.thinking = None
    if messages[-1].role == "assistant" and template.only_last_assistant_loss:
        for msg in messages[:-1]:
            if msg.role == "assistant":
                msg.loss = False
    if conv.tools:
        if template.tool_prompt is None:
            raise ValueError("this chat template has no tool prompt, so 'tools' cannot be used")
        tool_text = template.tool_prompt.format(tool_text=tools_text(conv.tools))
        if messages[0].role != "system":
            messages.insert(0, Message("system", tool_text, False))
        else:
            messages[0].text += tool_text
    return messages


_QWEN_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, "
    "\"arguments\": <args-json-object>}}\n</tool_call>"
)
_QWEN_TOOL_EXTRACTOR = ("<|im_start|>user\n<tool_response>\n{tool_extractor}\n</tool_response><|im_end|>\n"
                        "<|im_start|>assistant\n")

class TemplateMap(dict):
    """`CHAT_TEMPLATE_MAP`: a dict whose lookup of one of XTuner's other template names says why it is not here."""

    NOT_HERE = {"gpt-oss": "GPT-OSS is a MoE model", "glm5.2": "GLM-5.2 is a MoE model",
                **{name: f"{name} is a vision-language template" for name in (
                    "qwen3.5-vl", "intern-s1", "internvl-3.5", "qwen3-vl", "qwen3-vl-rl")}}

    def __missing__(self, name: str) -> HybridChatTemplate:
        why = self.NOT_HERE.get(name)
        if why is not None:
            raise KeyError(f"chat template {name!r} is not supported by xtuner_nb: {why}, and this project trains "
                           f"dense text models; templates here: {sorted(self)}")
        raise KeyError(f"unknown chat template {name!r}; templates here: {sorted(self)}")


CHAT_TEMPLATE_MAP: dict[str, HybridChatTemplate] = TemplateMap({
    "qwen3": HybridChatTemplate(
        system="<|im_start|>system\n{system}<|im_end|>\n",
        developer="<|im_start|>system\n{developer}<|im_end|>\n",
        user="<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
        assistant="{assistant}<|im_end|>",
        stop_words=["<|im_end|>", "<|endoftext|>"],
        sep="\n",
        tool_prompt=_QWEN_TOOL_PROMPT,
        tool_extractor=_QWEN_TOOL_EXTRACTOR,
    ),
    "llama3": HybridChatTemplate(
        system="<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
        user=("<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n"),
        assistant="{assistant}<|eot_id|>",
        sep="",
        stop_words=["<|eot_id|>"],
    ),
    "deepseek-v3": HybridChatTemplate(
        system="<｜begin▁of▁sentence｜>{system}",
        developer="<｜begin▁of▁sentence｜>{developer}",
        user="<｜User｜>{user}<｜Assistant｜></think>",
        assistant="{assistant}<｜end▁of▁sentence｜>",
        stop_words=["<｜end▁of▁sentence｜>"],
        sep="",
    ),
})
