"""XTuner v1's module path `xtuner.v1.data_proto.templates.chat`: its older `ChatTemplate` class is not kept here."""

from ..._unsupported import unsupported

ChatTemplate = unsupported(
    "ChatTemplate", "XTuner's older template class (with meta_instruction); every template here is a "
                    "HybridChatTemplate: use CHAT_TEMPLATE_MAP[name] or HybridChatTemplate(...)", __name__)

__all__ = ["ChatTemplate"]
