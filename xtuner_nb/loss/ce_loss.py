"""XTuner v1's module path `xtuner.v1.loss.ce_loss`: `CELossConfig` (`loss/config.py`, pydantic only) and
`CELossKwargs`, `CELossContextInputItem`, `LMHeadLossContext` (= `CELossContext`) (`loss/context.py`, torch)."""

from .config import CELossConfig
from .context import CELossContext, CELossContextInputItem, CELossKwargs, LMHeadLossContext

__all__ = ["CELossConfig", "CELossKwargs", "CELossContextInputItem", "LMHeadLossContext", "CELossContext"]
