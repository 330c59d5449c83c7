"""Training losses (named in mvcodec.presets.LOSSES): MV-MGINR's motion-aware alpha * motion-weighted L1 +
(1 - alpha) * (1 - SSIM) on RGB; the mean squared error on YUV 4:2:0 weighted 6:1:1 ("mse-yuv"); and the loss
whose gradient is that of the frames' mean PSNR-YUV, each frame's (6 PSNR_Y + PSNR_U + PSNR_V) / 8, the figure
the RD tables report ("psnr-yuv")."""

from __future__ import annotations

import torch

from mvcodec.color import ColorSpec, rgb_to_yuv420
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


def _squared_errors(
    pred: torch.Tensor, planes: tuple[torch.Tensor, ...], bit_depth: int, color: ColorSpec
) -> list[torch.Tensor]:
    """The squared errors of an RGB batch (B, 3, H, W) in [0, 1], converted to YUV 4:2:0 as the decoder converts
    it (before rounding), against the source planes (B, H, W), (B, H/2, W/2) x 2 in code values: one tensor a
    plane, in units of the code range squared (so a mean of 1e-3 is 30 dB)."""
    peak = float((1 << bit_depth) - 1)
    yuv = rgb_to_yuv420(pred, bit_depth, color)
    return [((p - t.float()) / peak).square() for p, t in zip(yuv, planes, strict=True)]


def yuv_mse_loss(
    pred: torch.Tensor, planes: tuple[torch.Tensor, ...], bit_depth: int, color: ColorSpec
) -> torch.Tensor:
    """(6 MSE_Y + MSE_U + MSE_V) / 8 of the batch (see _squared_errors)."""
    errs = [e.mean() for e in _squared_errors(pred, planes, bit_depth, color)]
    return (6 * errs[0] + errs[1] + errs[2]) / 8


def yuv_psnr_loss(
    pred: torch.Tensor,
    planes: tuple[torch.Tensor, ...],
    bit_depth: int,
    color: ColorSpec,
    scale: float | None = None,
    eps: float = 1e-10,
) -> torch.Tensor:
    """The loss whose gradient is that of the batch frames' mean PSNR-YUV, each frame's (6 PSNR_Y + PSNR_U +
    PSNR_V) / 8 as the metric averages them, times -scale * 10 / ln(10): each frame's and plane's squared error
    weighted by the inverse of its own mean (a plane or frame reproduced well gains more dB for the same
    squared error). With `scale` the typical yuv_mse_loss (fit passes the previous epoch's mean; None: the
    batch's own), the gradient is yuv_mse_loss's where every error is that typical one, so the rate term's
    weight keeps its meaning. Its value is yuv_mse_loss's."""
    errs = [e.flatten(1).mean(dim=1) for e in _squared_errors(pred, planes, bit_depth, color)]
    mse = (6 * errs[0].mean() + errs[1].mean() + errs[2].mean()) / 8
    logs = [e.clamp_min(eps).log() for e in errs]
    log_mse = ((6 * logs[0] + logs[1] + logs[2]) / 8).mean()
    weight = mse.detach() if scale is None else scale
    return mse.detach() + weight * (log_mse - log_mse.detach())
