"""XTuner v1's module path `xtuner.v1.data_proto.messages.qwen35_chat`: Qwen3.5-VL conversations, not supported."""

from ..._unsupported import unsupported_names

_WHY = "Qwen3.5 is a vision-language model; this project trains dense text models (use ChatMessages)"

globals().update(unsupported_names(__name__, {name: _WHY for name in (
    "Qwen35ChatMessages", "qwen35_tokenize_fn_fastspeed", "qwen35_tokenize_fn_slowspeed")}))

__all__ = ["Qwen35ChatMessages", "qwen35_tokenize_fn_fastspeed", "qwen35_tokenize_fn_slowspeed"]
