"""Quality and rate measures as video-codec tools report them: PSNR, SSIM, MS-SSIM, bits per pixel.

Conventions:
- PSNR of a plane = 10 log10(peak^2 / MSE), peak = 2^b - 1 at the source bit depth b; inf when identical.
- PSNR-YUV = (6 PSNR-Y + PSNR-U + PSNR-V) / 8, the weighting of the JCT-VC/JVET common test conditions.
- Sequence figures are means of per-frame figures (as HM and vvenc summarise).
- SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, computed over the
  valid region only (no padding); on the Y plane at the source's peak unless said otherwise.
- MS-SSIM (Wang et al. 2003): 5 scales with weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333, 2x2 mean
  downsampling (an odd last row or column is repeated first). Planes too small for 5 scales use as many scales as fit,
  with the leading weights renormalised to sum 1.
Every function takes torch tensors or numpy arrays.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mvcodec.io.formats import Planes

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
YUV_WEIGHTS = (6.0, 1.0, 1.0)


def _tensor(x) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    return t if t.is_floating_point() else t.to(torch.float64)


def mse(ref, test) -> float:
    """Mean squared error between two planes, in code values squared (float64)."""
    a, b = _tensor(ref).double(), _tensor(test).double()
    return float(torch.mean((a - b) ** 2))


def psnr(ref, test, peak: float) -> float:
    """PSNR in dB of `test` against `ref` for samples whose maximum is `peak`; inf if identical."""
    e = mse(ref, test)
    return math.inf if e == 0 else 10.0 * math.log10(peak * peak / e)


def psnr_yuv(psnr_y: float, psnr_u: float, psnr_v: float) -> float:
    """Combined PSNR, (6 Y + U + V) / 8, in dB."""
    wy, wu, wv = YUV_WEIGHTS
    return (wy * psnr_y + wu * psnr_u + wv * psnr_v) / (wy + wu + wv)


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma * sigma))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of (N, 1, H, W) with the 1-D window g.

    On CUDA as two cuDNN convolutions. On the CPU as weighted sums of shifted views: oneDNN's single-channel
    convolutions are slow there, above all their backward pass, which made SSIM most of a training step
    (fwd + bwd of one 6 x 180 x 320 map: 27 ms as convolutions, 4.5 ms as shifted sums, 2 cores).
    """
    if x.is_cuda:
        x = F.conv2d(x, g.view(1, 1, 1, -1))
        return F.conv2d(x, g.view(1, 1, -1, 1))
    return _shifted_sum(_shifted_sum(x, g, -1), g, -2)


def _shifted_sum(x: torch.Tensor, g: torch.Tensor, dim: int) -> torch.Tensor:
    """'Valid' correlation of x with the 1-D window g along `dim`, as a sum of shifted, weighted views."""
    n, w = x.shape[dim] - len(g) + 1, g.tolist()
    out = x.narrow(dim, 0, n) * w[0]
    for k in range(1, len(w)):
        out = torch.add(out, x.narrow(dim, k, n), alpha=w[k])  # out + w[k] * shifted x, one kernel
    return out


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, data_range: float, window: int, sigma: float):
    """Per-image mean SSIM and mean contrast-structure term of (N, 1, H, W) batches."""
    g = _gaussian_window(window, sigma, x)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mx * mx
    syy = _blur(y * y, g) - my * my
    sxy = _blur(x * y, g) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    s = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
    return s.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def _batch(x, y) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    a, b = _tensor(x), _tensor(y)
    dtype = torch.promote_types(a.dtype, b.dtype)
    lead = a.shape[:-2]
    return a.to(dtype).reshape(-1, 1, *a.shape[-2:]), b.to(dtype).reshape(-1, 1, *b.shape[-2:]), lead


def _fit_window(h: int, w: int, window: int) -> int:
    """The window, shrunk to the largest odd size that fits planes smaller than it."""
    side = min(h, w, window)
    return side if side % 2 else side - 1


def ssim(x, y, data_range: float, *, window: int = 11, sigma: float = 1.5, reduce: bool = True):
    """Mean SSIM of planes (..., H, W); a float, or a tensor of the leading shape if reduce=False."""
    a, b, lead = _batch(x, y)
    s, _ = _ssim_cs(a, b, data_range, _fit_window(*a.shape[-2:], window), sigma)
    return float(s.mean()) if reduce else s.reshape(lead)


def ms_ssim(x, y, data_range: float, *, window: int = 11, sigma: float = 1.5, reduce: bool = True):
    """Multi-scale SSIM of planes (..., H, W); a float, or a tensor of the leading shape if reduce=False."""
    a, b, lead = _batch(x, y)
    levels = len(MS_SSIM_WEIGHTS)
    while levels > 1 and min(a.shape[-2:]) // 2 ** (levels - 1) < window:
        levels -= 1
    weights = a.new_tensor(MS_SSIM_WEIGHTS[:levels])
    weights = weights / weights.sum()
    win = _fit_window(*a.shape[-2:], window)
    terms = []
    for level in range(levels):
        s, cs = _ssim_cs(a, b, data_range, win, sigma)
        if level < levels - 1:
            terms.append(torch.relu(cs))
            pad = [0, a.shape[-1] % 2, 0, a.shape[-2] % 2]
            a = F.avg_pool2d(F.pad(a, pad, mode="replicate"), 2)
            b = F.avg_pool2d(F.pad(b, pad, mode="replicate"), 2)
    terms.append(torch.relu(s))
    out = torch.prod(torch.stack(terms) ** weights.view(-1, 1), dim=0)
    return float(out.mean()) if reduce else out.reshape(lead)


def bits_per_pixel(file_bytes: int, views: int, frames: int, width: int, height: int) -> float:
    """8 x file bytes / (views x frames x width x height)."""
    return 8.0 * file_bytes / (views * frames * width * height)


def kbps(file_bytes: int, frames: int, fps: float) -> float:
    """Bit rate in kbit/s (1000 bits) of a stream covering `frames` frames at `fps`."""
    return 8.0 * file_bytes * fps / frames / 1000.0


def frame_quality(ref: Planes, test: Planes, bit_depth: int) -> dict[str, float]:
    """PSNR of Y, U, V and YUV (6:1:1) and SSIM of Y for one frame, at the source's peak."""
    peak = float((1 << bit_depth) - 1)
    q = {f"psnr_{n}": psnr(r, t, peak) for n, r, t in zip("yuv", ref, test, strict=True)}
    q["psnr_yuv"] = psnr_yuv(q["psnr_y"], q["psnr_u"], q["psnr_v"])
    q["ssim"] = ssim(ref.y, test.y, peak)
    return q


def mean_quality(frames: list[dict[str, float]]) -> dict[str, float]:
    """Per-key mean of per-frame figures (the sequence figures HM/vvenc print)."""
    keys = frames[0].keys() if frames else ()
    return {k: float(np.mean([f[k] for f in frames])) for k in keys}
