"""XTuner v1's `xtuner.v1.float8`, importable so that XTuner code loads: float8 training is not supported here.
`Float8Config` refuses to turn it on, and the float8 linear layers refuse to be built, each saying why."""

from .._unsupported import unsupported_names
from .config import WHY, Float8Config, ScalingGranularity

globals().update(unsupported_names(__name__, {"TileWiseFloat8Linear": WHY, "TileWiseFloat8GroupedLinear": WHY}))

__all__ = ["TileWiseFloat8Linear", "TileWiseFloat8GroupedLinear", "Float8Config", "ScalingGranularity"]
