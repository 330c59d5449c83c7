"""Network architectures: the contract (base), the registry, and MV-MGINR with its sizing.

The sizing (an encoder's concern) is imported on first use, so that the decoder does not load it.
"""

from mvcodec.model.base import ArchConfig, Architecture, ParamSpec, Role, Shape
from mvcodec.model.mginr import MVMGINR, ModelConfig, parameter_layout
from mvcodec.model.registry import arch_of, by_id, by_name, register

__all__ = [
    "MVMGINR",
    "ArchConfig",
    "Architecture",
    "ModelConfig",
    "ParamSpec",
    "Role",
    "Shape",
    "ablate",
    "arch_of",
    "by_id",
    "by_name",
    "choose_layout",
    "parameter_layout",
    "register",
    "solve_config",
]


def __getattr__(name: str):
    if name in ("ablate", "choose_layout", "solve_config"):
        from mvcodec.model import sizing

        return getattr(sizing, name)
    raise AttributeError(f"module 'mvcodec.model' has no attribute {name!r}")
