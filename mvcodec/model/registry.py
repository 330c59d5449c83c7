"""The registered architectures, by stream id, by --arch name and by config type.

Adding a network is one module (see mvcodec/model/base.py) and one `register(...)` line below.
"""

from __future__ import annotations

from typing import Any

from mvcodec.model.base import ArchConfig, Architecture
from mvcodec.model.hinerv import MVHiNeRVArchitecture
from mvcodec.model.mginr import MVMGINRArchitecture
from mvcodec.model.pyramid import MVPyramidArchitecture
from mvcodec.model.pyramid_mc import MVPyramidMCArchitecture
from mvcodec.presets import DEFAULT_ARCH

ARCHITECTURES: dict[int, Architecture] = {}
DEFAULT = DEFAULT_ARCH


def register(arch: Architecture) -> Architecture:
    """Add an architecture (ValueError if its id, name or config type is taken); returns it."""
    if not 0 <= arch.id <= 0xFFFF:
        raise ValueError(f"architecture id {arch.id} is not a u16")
    if not (isinstance(arch, Architecture) and issubclass(arch.config_type, ArchConfig)):
        raise TypeError(f"{arch!r} is not an Architecture whose config_type is an ArchConfig dataclass")
    for other in ARCHITECTURES.values():
        ids, other_ids = {arch.id, *arch.legacy_ids}, {other.id, *other.legacy_ids}
        if ids & other_ids or arch.name == other.name or arch.config_type is other.config_type:
            raise ValueError(f"architecture {arch.name} (id {arch.id}) clashes with {other.name} (id {other.id})")
    ARCHITECTURES[arch.id] = arch
    return arch


def unregister(arch: Architecture) -> None:
    """Remove an architecture (tests that register their own)."""
    ARCHITECTURES.pop(arch.id, None)


def by_id(arch_id: int) -> Architecture | None:
    """The architecture of a stream id (or of an id it had while experimental), or None where this decoder
    does not know it."""
    if arch_id in ARCHITECTURES:
        return ARCHITECTURES[arch_id]
    return next((a for a in ARCHITECTURES.values() if arch_id in a.legacy_ids), None)


def by_name(name: str) -> Architecture:
    """The architecture of an --arch name; ValueError naming the known ones otherwise."""
    for arch in ARCHITECTURES.values():
        if arch.name == name:
            return arch
    raise ValueError(f"unknown architecture '{name}'; use one of {', '.join(names())}")


def names() -> list[str]:
    """The --arch names, in id order."""
    return [a.name for _, a in sorted(ARCHITECTURES.items())]


def arch_of(cfg: Any) -> Architecture:
    """The architecture a config belongs to (its config type exactly, else the nearest base)."""
    for arch in ARCHITECTURES.values():
        if type(cfg) is arch.config_type:
            return arch
    for arch in ARCHITECTURES.values():
        if isinstance(cfg, arch.config_type):
            return arch
    raise TypeError(f"{type(cfg).__name__} is not the config of a registered architecture")


register(MVMGINRArchitecture())
register(MVPyramidArchitecture())
register(MVPyramidMCArchitecture())
register(MVHiNeRVArchitecture())
