"""The MV-MGINR network and its sizing."""

from mvcodec.model.mginr import MVMGINR, ModelConfig, parameter_layout
from mvcodec.model.sizing import ablate, choose_layout, format_split, solve_config

__all__ = ["MVMGINR", "ModelConfig", "ablate", "choose_layout", "format_split", "parameter_layout", "solve_config"]
