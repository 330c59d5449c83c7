"""Training losses: MV-MGINR's motion-aware alpha * motion-weighted L1 + (1 - alpha) * (1 - SSIM) on RGB, and
the mean squared error on YUV 4:2:0 weighted 6:1:1 as PSNR-YUV weighs the planes."""

from __future__ import annotations

import torch

from mvcodec.color import ColorSpec, rgb_to_yuv420
from mvcodec.metrics import ssim

LOSSES = ("l1-ssim", "mse-yuv")


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


def yuv_mse_loss(
    pred: torch.Tensor, planes: tuple[torch.Tensor, ...], bit_depth: int, color: ColorSpec
) -> torch.Tensor:
    """(6 MSE_Y + MSE_U + MSE_V) / 8 of an RGB batch (B, 3, H, W) in [0, 1], converted to YUV 4:2:0 as the
    decoder converts it (before rounding), against the source planes (B, H, W), (B, H/2, W/2) x 2 in code
    values; in units of the code range squared (so 1e-3 is 30 dB)."""
    peak = float((1 << bit_depth) - 1)
    errs = [
        ((p - t.float()) / peak).square().mean()
        for p, t in zip(rgb_to_yuv420(pred, bit_depth, color), planes, strict=True)
    ]
    return (6 * errs[0] + errs[1] + errs[2]) / 8
