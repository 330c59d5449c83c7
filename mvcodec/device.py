"""Choosing the torch device for encoding and decoding."""

from __future__ import annotations

import torch

from mvcodec.errors import InputError


def pick_device(name: str) -> torch.device:
    """auto: CUDA when available, else CPU; cuda: InputError where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device: unknown device '{name}'; use auto, cpu or cuda")
    return torch.device(name)
