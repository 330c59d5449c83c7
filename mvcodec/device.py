"""Choosing the torch device for encoding and decoding."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from mvcodec.errors import InputError


def pick_device(name: str) -> torch.device:
    """auto: CUDA when available, else CPU; otherwise any device torch names (cpu, cuda, cuda:1, ...), with an
    InputError where it is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device: '{name}' is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
    return device


def set_threads(n: int | None) -> None:
    """--threads: the CPU threads of torch's and OpenCV's pools (None keeps their defaults: all cores)."""
    if n is None:
        return
    if n < 1:
        raise InputError(f"--threads: must be 1 or more, got {n}")
    torch.set_num_threads(n)
    _threads["cv2"] = n
    if "cv2" in sys.modules:  # the decoder never loads OpenCV; the encoder's flow code calls cv2_threads()
        sys.modules["cv2"].setNumThreads(n)


_threads: dict[str, int] = {}


def cv2_threads() -> None:
    """Apply --threads to OpenCV once the encoder has loaded it."""
    if "cv2" in _threads and "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(_threads["cv2"])


def available_memory() -> int | None:
    """Bytes of main memory available to a new allocation: Linux's MemAvailable, or less where a cgroup (v2, a
    container's) allows less; else the physical memory where the platform reports it; else None."""
    found = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            room = max(int(limit) - used, 0)
            found = room if found is None else min(found, room)
    except (OSError, ValueError):
        pass
    if found is not None:
        return found
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
