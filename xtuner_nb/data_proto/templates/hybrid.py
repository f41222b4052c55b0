"""XTuner v1's module path `xtuner.v1.data_proto.templates.hybrid` (a re-export of `datasets/chat_template_named.py`)."""

from ...datasets.chat_template_named import HybridChatTemplate

__all__ = ["HybridChatTemplate"]
