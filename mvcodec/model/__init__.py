"""The MV-MGINR network and its sizing."""

from mvcodec.model.mginr import MVMGINR, ModelConfig
from mvcodec.model.sizing import ablate, choose_layout, format_split, solve_config

__all__ = ["MVMGINR", "ModelConfig", "ablate", "choose_layout", "format_split", "solve_config"]
