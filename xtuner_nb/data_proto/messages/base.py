"""XTuner v1's `xtuner.v1.data_proto.messages.base`: `BaseMessages`, what a conversation class offers."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict


class BaseMessages(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @abstractmethod
    def add(self, role: str, content: Any):
        """Append a message."""

    @abstractmethod
    def pop(self):
        """Remove and return the last message."""

    @abstractmethod
    def get_prompt(self, chat_template) -> str:
        """The conversation rendered as text by `chat_template`."""

    @abstractmethod
    def tokenize(self, tokenizer, chat_template) -> dict:
        """`{"input_ids", "labels", "num_tokens"}` of the conversation."""
