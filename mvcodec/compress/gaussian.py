"""The Gaussian entropy model of quantised parameters: one Gaussian per group of symbols (a tensor, or a
channel), its parameters the mean and standard deviation of the group's symbols; and the Laplace
distributions of model mode 4 (laplace_bits), which MV-Pyramid-MC's motion fields are coded under.

`gaussian_bits` is the one definition of the code length: training evaluates it on relaxed symbols
(y + U(-1/2, 1/2)) as the differentiable rate term, and mvinfo on the stored integer symbols with the
stored float32 parameters as the ideal size of the file's range-coded data.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mvcodec.bitstream.tensor import MODEL_SCALAR, CodedTensor

MIN_STD = 0.1  # a Gaussian narrower than this buys nothing for integer symbols
MIN_PROB = 1e-9  # a symbol's probability is floored here (about 30 bits), as the range coder's is


def group_stats(y: torch.Tensor, mask: torch.Tensor | None, axis: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (floored at MIN_STD) of the kept symbols of each group (index along
    `axis`, or the whole tensor), broadcastable to y."""
    w = torch.ones_like(y) if mask is None else mask.to(y.dtype)
    dims = tuple(range(y.ndim)) if axis is None else tuple(d for d in range(y.ndim) if d != axis)
    n = w.sum(dim=dims, keepdim=True).clamp_min(1)
    mean = (y * w).sum(dim=dims, keepdim=True) / n
    var = (((y - mean) ** 2) * w).sum(dim=dims, keepdim=True) / n
    return mean, torch.sqrt(var + 1e-12).clamp_min(MIN_STD)


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The standard normal CDF, 0.5 (1 + erf(x / sqrt 2))."""
    return 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))


def gaussian_bits(
    y: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    lo: torch.Tensor | int,
    hi: torch.Tensor | int,
    mask: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduce: bool = True,
) -> torch.Tensor:
    """Code length in bits of symbols y (kept elements only): -sum log2 P, P the Gaussian's mass on
    [y - 1/2, y + 1/2], with the tails below lo and above hi folded into the end symbols (as the range
    coder's alphabet lo..hi does), floored at MIN_PROB; each symbol's bits times `weight` (broadcast) where
    one is given; without `reduce` each symbol's bits, not their sum."""
    with torch.no_grad():
        rounded = torch.round(y)
    upper = torch.where(rounded >= hi, torch.ones_like(y), normal_cdf((y + 0.5 - mean) / std))
    lower = torch.where(rounded <= lo, torch.zeros_like(y), normal_cdf((y - 0.5 - mean) / std))
    return _interval_bits(upper, lower, mask, weight, reduce)


def _interval_bits(
    upper: torch.Tensor,
    lower: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor | None,
    reduce: bool = True,
) -> torch.Tensor:
    """-sum log2 of the masses upper - lower (floored at MIN_PROB), each times `weight`, over `mask` (without
    `reduce`, each one's)."""
    bits = -torch.log2((upper - lower).clamp_min(MIN_PROB))
    if weight is not None:
        bits = bits * weight
    if mask is not None:
        bits = bits * mask
    return bits.sum() if reduce else bits


def laplace_cdf(x: torch.Tensor) -> torch.Tensor:
    """The standard Laplace CDF (location 0, scale 1)."""
    e = 0.5 * torch.exp(-x.abs())
    return torch.where(x < 0, e, 1 - e)


def laplace_bits(
    y: torch.Tensor,
    loc: torch.Tensor,
    scale: torch.Tensor,
    lo: torch.Tensor | int,
    hi: torch.Tensor | int,
    weight: torch.Tensor | None = None,
    reduce: bool = True,
) -> torch.Tensor:
    """gaussian_bits under Laplace distributions (location, scale) in place of Gaussians (model mode 4). An
    interval above the location is mirrored below it (the distribution is symmetric), where the CDF,
    1/2 exp(z), keeps its precision in float32: above, 1 - 1/2 exp(-z) rounds to 1 from about 17 scales on,
    and a heavy tail's far symbols would all be priced at the floor, without a gradient."""
    with torch.no_grad():
        rounded = torch.round(y)
        flip = y > loc
    a, b = (y - 0.5 - loc) / scale, (y + 0.5 - loc) / scale
    a, b = torch.where(flip, -b, a), torch.where(flip, -a, b)
    open_low = torch.where(flip, rounded >= hi, rounded <= lo)  # a folded tail, mirrored with its interval
    open_high = torch.where(flip, rounded <= lo, rounded >= hi)
    upper = torch.where(open_high, torch.ones_like(y), laplace_cdf(b))
    lower = torch.where(open_low, torch.zeros_like(y), laplace_cdf(a))
    return _interval_bits(upper, lower, None, weight, reduce)


def model_grid(t: CodedTensor) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds) of every element's Gaussian as stored (float32), broadcast to the tensor's shape."""
    if t.model_mode == MODEL_SCALAR:
        return np.broadcast_to(t.means[0], t.shape), np.broadcast_to(t.stds[0], t.shape)
    view = [1] * len(t.shape)
    view[t.model_axis] = t.shape[t.model_axis]
    return np.broadcast_to(t.means.reshape(view), t.shape), np.broadcast_to(t.stds.reshape(view), t.shape)
