"""XTuner v1's module path `xtuner.v1.data_proto.messages.glm52_chat`: GLM-5.2 conversations, not supported."""

from ..._unsupported import unsupported_names

_WHY = "GLM-5.2 is a MoE model; this project trains dense text models (use ChatMessages)"

globals().update(unsupported_names(__name__, {name: _WHY for name in (
    "Glm52ChatMessages", "glm52_tokenize_fn_fastspeed", "glm52_tokenize_fn_slowspeed", "render_glm52_chat")}))

__all__ = ["Glm52ChatMessages", "glm52_tokenize_fn_fastspeed", "glm52_tokenize_fn_slowspeed", "render_glm52_chat"]
