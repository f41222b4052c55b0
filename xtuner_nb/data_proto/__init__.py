"""XTuner v1's `xtuner.v1.data_proto`: `SequenceContext` (the layout of a pack, `sequence_context.py`), the chat
messages (`messages/`: `ChatMessages` with `get_prompt` and `tokenize`) and the chat templates (`templates/`:
`CHAT_TEMPLATE_MAP`, which is `xtuner_nb.datasets.chat_template_named`'s, the one implementation). The tensor code
is imported on first use (PEP 562); `xtuner_nb.datasets` never imports this package's messages or templates.
"""

from .._lazy import lazy_attributes

_LAZY = {"SequenceContext": ".sequence_context", "DSATopKCacheState": ".sequence_context"}

__all__ = ["DSATopKCacheState", "SequenceContext"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
