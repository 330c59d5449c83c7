"""The motion-aware loss: alpha * motion-weighted L1 + (1 - alpha) * (1 - SSIM)."""

from __future__ import annotations

import torch

from mvcodec.metrics import ssim


def motion_aware_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, alpha: float = 0.7, beta: float = 1.0
) -> torch.Tensor:
    """Loss of RGB batches (B, 3, H, W) in [0, 1]; the L1 term is weighted per pixel by 1 + beta * mask.

    mask (B, 1, H, W) in [0, 1] is the motion mask; None (or beta = 0) gives the plain 0.7 L1 + 0.3 (1 - SSIM).
    """
    err = (pred - target).abs()
    if mask is not None and beta:
        err = err * (1 + beta * mask)
    return alpha * err.mean() + (1 - alpha) * (1 - ssim(pred, target, 1.0, reduce=False).mean())
