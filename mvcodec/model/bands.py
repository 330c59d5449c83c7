"""The decoder's forward pass by bands of rows: the pieces that give a band of output rows exactly the values
the whole frame has there (bitstream_spec.md, sections 12.1 and 14), so that a decoder's memory follows the
band, not the frame.

Every operation of MV-Pyramid's path here is element-wise in binary32 (each multiply and add rounded on its
own, no fused multiply-add) or a matrix product whose rows are the output pixels: a pixel's value does not
depend on which other pixels are computed with it, and so not on the band. `conv_rows` (MV-MGINR's) is the
exception: PyTorch's convolution, within rounding of the whole frame's.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

SQRT_HALF = 0.7071067811865476  # binary64 1 / sqrt(2), rounded to binary32 where it multiplies


def gelu2(x: torch.Tensor) -> torch.Tensor:
    """Twice GELU, x * (1 + erf(x / sqrt(2))), one operation at a time (the half goes into the next layer's
    weights, where a multiplication by 0.5 is exact): PyTorch's fused GELU computes the last elements of a
    loop (its tail, which moves with the tensor's size and threads) by another formula than the rest, its
    erf does not."""
    return (x * SQRT_HALF).erf_().add_(1.0).mul_(x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """1 / (1 + e^-x), one operation at a time (as `gelu2`: the fused sigmoid's tail differs)."""
    return torch.exp(-x).add_(1.0).reciprocal_()


@functools.lru_cache(maxsize=64)
def bilinear_taps(n_in: int, n_out: int, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
    """Bilinear resampling of n_in samples to n_out (align_corners=False): for each output sample, its two
    source indices (i0, i1) and their binary32 weights (w0, w1), the weights computed in binary64 and rounded
    once (section 12.1)."""
    d = torch.arange(n_out, dtype=torch.float64, device=device)
    src = ((d + 0.5) * n_in / n_out - 0.5).clamp_min(0.0)
    i0 = src.floor()
    frac = src - i0
    i0 = i0.long()
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, (1.0 - frac).float(), frac.float()


def upsample_rows(x: torch.Tensor, height: int, width: int, r0: int, r1: int) -> torch.Tensor:
    """Rows r0..r1 of x (B, C, h, w) bilinearly resampled to height x width: (B, C, r1 - r0, width); columns
    first (each source row's samples the weighted sum of two of its columns), then rows, as section 12.1
    orders them; only the source rows the band reads."""
    i0, i1, w0, w1 = (t[r0:r1] for t in bilinear_taps(x.shape[-2], height, x.device))
    # the source rows read, as bilinear_taps computes them (binary64), without reading the device's tensors
    n = x.shape[-2]
    lo = math.floor(max((r0 + 0.5) * n / height - 0.5, 0.0))
    hi = min(math.floor(max((r1 - 0.5) * n / height - 0.5, 0.0)) + 1, n - 1) + 1
    j0, j1, v0, v1 = bilinear_taps(x.shape[-1], width, x.device)
    src = x[..., lo:hi, :]
    cols = src.index_select(-1, j0).mul_(v0.to(x.dtype)).add_(src.index_select(-1, j1).mul_(v1.to(x.dtype)))
    out = cols.index_select(-2, i0 - lo).mul_(w0[:, None].to(x.dtype))
    return out.add_(cols.index_select(-2, i1 - lo).mul_(w1[:, None].to(x.dtype)))


def halo(r0: int, r1: int, height: int, k: int = 3) -> tuple[int, int]:
    """The input rows (lo, hi) a k x k convolution with zero padding reads for its output rows r0..r1."""
    p = k // 2
    return max(0, r0 - p), min(height, r1 + p)


def conv3x3_rows(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, r0: int, r1: int, height: int
) -> torch.Tensor:
    """Output rows r0..r1 of a 3x3 cross-correlation with zero padding of 1 over a frame of `height` rows, from x
    (B, C, hi - lo, W) holding input rows halo(r0, r1, height): each tap's products summed over the input
    channels as one matrix product (the tap planes), then the nine taps added in the order (ky, kx) =
    (0, 0), (0, 1), ..., (2, 2), then the bias (section 12.1)."""
    b, c, n, w = x.shape
    out = weight.shape[0]
    lo = halo(r0, r1, height)[0]
    flat = x.permute(0, 2, 3, 1).reshape(-1, c)
    # (9 taps x out, pixels), written tap-major by the product itself (the pixels operand read transposed)
    planes = weight.permute(2, 3, 0, 1).reshape(9 * out, c) @ flat.t()
    planes = planes.view(9, out, b, n, w).transpose(1, 2)  # (9, b, out, n, w)
    # each tap added where it reads inside the frame (outside, its product is the zero padding's: adding
    # nothing there gives the same sums), in the order of the taps
    acc = x.new_zeros(b, out, r1 - r0, w)
    for k in range(9):
        ky, kx = divmod(k, 3)
        ra, rb = max(r0, 1 - ky), min(r1, height + 1 - ky)  # output rows whose input row is in the frame
        ca, cb = max(0, 1 - kx), min(w, w + 1 - kx)
        acc[:, :, ra - r0 : rb - r0, ca:cb] += planes[
            k, :, :, ra + ky - 1 - lo : rb + ky - 1 - lo, ca + kx - 1 : cb + kx - 1
        ]
    return acc.add_(bias[:, None, None])


def conv_rows(x: torch.Tensor, conv: torch.nn.Conv2d, r0: int, r1: int, height: int) -> torch.Tensor:
    """Output rows r0..r1 of `conv` (k x k, stride 1, zero padding k // 2) over a frame of `height` rows, from x
    holding input rows halo(r0, r1, height, k); computed by PyTorch's convolution, whose sums depend on the
    input's size: within section 14's tolerance of the whole frame's, not equal to it."""
    k = conv.kernel_size[0]
    p = k // 2
    lo, hi = halo(r0, r1, height, k)
    x = F.pad(x, (0, 0, p - (r0 - lo), p - (hi - r1)))
    return F.conv2d(x, conv.weight, conv.bias, padding=(0, conv.padding[1]))
