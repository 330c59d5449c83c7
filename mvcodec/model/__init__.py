"""Network architectures: the contract (base), the registry, and MV-MGINR with its sizing."""

from mvcodec.model.base import ArchConfig, Architecture, ParamSpec, Role, Shape
from mvcodec.model.mginr import MVMGINR, ModelConfig, parameter_layout
from mvcodec.model.registry import arch_of, by_id, by_name, register
from mvcodec.model.sizing import ablate, choose_layout, solve_config

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
