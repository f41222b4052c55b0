"""XTuner v1's `xtuner.v1.data_proto.messages`: `ChatMessages` (dense text chat, `chat.py`); the Qwen3.5-VL and
GLM-5.2 message classes are importable and refuse with the reason."""

from .base import BaseMessages
from .chat import ChatMessages
from .glm52_chat import Glm52ChatMessages
from .qwen35_chat import Qwen35ChatMessages

__all__ = ["BaseMessages", "ChatMessages", "Qwen35ChatMessages", "Glm52ChatMessages"]
