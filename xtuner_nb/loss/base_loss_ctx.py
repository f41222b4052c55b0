"""XTuner v1's module path `xtuner.v1.loss.base_loss_ctx`: `BaseLossConfig` (`loss/config.py`, pydantic only) and
`BaseLossKwargs`, `BaseLossContext` (`loss/context.py`, torch), the base classes of a custom loss."""

from .config import BaseLossConfig
from .context import BaseLossContext, BaseLossKwargs

__all__ = ["BaseLossConfig", "BaseLossKwargs", "BaseLossContext"]
