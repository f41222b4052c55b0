"""XTuner v1's `ChatMessages` (`xtuner.v1.data_proto.messages.chat`): one conversation in OpenAI messages, rendered
by a `HybridChatTemplate` as XTuner renders it.

It is a view onto this project's one implementation: the messages are checked by `datasets/messages.py` (the same
errors as a data file gets, naming the message), rendered into `(text, trained)` segments by
`datasets/chat_template_named.py`, and tokenized segment by segment by `datasets/tokenize_fn.py`, which is exactly
what `OpenaiTokenizeFunction` does to every line of a training file. Unlike XTuner's, rendering does not change
`self.messages` (XTuner inserts the default system message and the tools prompt into them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from ...datasets.chat_template_named import HybridChatTemplate, Segments
from ...datasets.messages import DEFAULT_LOSS, parse_conversation, parse_message, tool_calls_text, tools_text
from ...datasets.tokenize_fn import assemble_segments, encode_texts
from .base import BaseMessages

tool_formatter = tools_text  # XTuner's names of the two formatters
function_formatter = tool_calls_text


class ChatMsg(BaseModel):
    """One message with XTuner's fields; `loss` defaults by role (assistant and pretrain: True)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["assistant", "user", "system", "developer", "pretrain", "tool"]
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    loss: bool | None = None
    thinking: str | None = None
    name: str | None = None
    meta: dict[str, Any] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _default_loss(self):
        if self.loss is None:
            self.loss = DEFAULT_LOSS[self.role]
        return self


class ChatMessages(BaseMessages):
    messages: list[ChatMsg]
    tools: list[dict[str, Any]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_messages(cls, data: Any) -> Any:
        """The checks a training file's line gets, with their wording (`message 2 (assistant) has no content`)."""
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            for i, msg in enumerate(data["messages"], 1):
                parse_message(msg.model_dump(exclude_none=True) if isinstance(msg, ChatMsg) else msg, i)
        return data

    def add(self, role: str, content: Any, loss: bool = False) -> None:
        self.messages.append(ChatMsg(role=role, content=content, loss=loss))

    def pop(self) -> ChatMsg:
        return self.messages.pop()

    def segments(self, chat_template: HybridChatTemplate) -> Segments:
        """The `(text, trained)` pieces `chat_template` renders this conversation into."""
        record = {"messages": [m.model_dump(exclude_none=True) for m in self.messages]}
        if self.tools:
            record["tools"] = self.tools
        return chat_template.render(parse_conversation(record))

    def get_prompt(self, chat_template: HybridChatTemplate) -> str:
        return "".join(text for text, _ in self.segments(chat_template))

    def tokenize(self, tokenizer, chat_template: HybridChatTemplate, **kwargs) -> dict:
        """`{"input_ids", "labels", "num_tokens"}`: each segment encoded on its own, labels only on trained ones."""
        segments = self.segments(chat_template)
        return assemble_segments(encode_texts(tokenizer, [text for text, _ in segments]), segments)

    @classmethod
    def from_str(cls, prompt: str) -> "ChatMessages":
        return cls(messages=[ChatMsg(role="user", content=prompt)])

    @classmethod
    def from_dict(cls, item: dict) -> "ChatMessages":
        return cls(**item)


__all__ = ["ChatMsg", "ChatMessages", "tool_formatter", "function_formatter"]
