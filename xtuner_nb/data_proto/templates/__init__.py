"""XTuner v1's `xtuner.v1.data_proto.templates`: `CHAT_TEMPLATE_MAP` and `HybridChatTemplate`, the very objects of
`xtuner_nb.datasets.chat_template_named` (one implementation: the tokenize functions render with them too)."""

from ...datasets.chat_template_named import CHAT_TEMPLATE_MAP
from .chat import ChatTemplate
from .hybrid import HybridChatTemplate

__all__ = ["ChatTemplate", "HybridChatTemplate", "CHAT_TEMPLATE_MAP"]
