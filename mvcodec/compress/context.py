"""Context selection for latent grids (entropy model mode 2): which of NUM_CONTEXTS Gaussians codes a symbol,
chosen from symbols the decoder already has, with integer operations only (bit-exact everywhere).

For an element (n, c, i, j) of a tensor S of shape (N, C, H, W):
- a = the largest min(|P[n, c, i' // 2, j' // 2]|, 2) over the 3x3 neighbourhood (i', j') of (i, j) that
  lies inside H x W, where P is the coarser tensor (shape (N, C, ceil(H / 2), ceil(W / 2))); 0 without one;
- b = the largest min(|S[n - 1, c, i', j']|, 2) over the same neighbourhood, where rows come in runs of
  row_period (a view's frames) and n is not the first of its run; 0 otherwise;
- context = a + 3 b, in 0..8.
Where the coarse grid and the previous frame are quiet the symbol is almost surely 0 and costs next to
nothing; where they move, a wider Gaussian pays for it (BENCHMARKS.md, issue 14, experiment 8).

The same function serves the decoder (on int32 symbols, row by row), the encoder (on the whole tensor) and
training (on rounded float values, a batch's rows).
"""

from __future__ import annotations

import numpy as np
import torch

from mvcodec.bitstream.tensor import NUM_CONTEXTS, CodedTensor
from mvcodec.compress.gaussian import MIN_STD

CLAMP = 2
assert (CLAMP + 1) ** 2 == NUM_CONTEXTS


def _spread(a: torch.Tensor) -> torch.Tensor:
    """The largest value over each element's 3x3 neighbourhood inside the last two axes (uint8, a >= 0: a
    border needs no padding value), as two separable passes of shifted maxima."""
    m = a.clone()
    torch.maximum(m[..., 1:, :], a[..., :-1, :], out=m[..., 1:, :])
    torch.maximum(m[..., :-1, :], a[..., 1:, :], out=m[..., :-1, :])
    r = m.clone()
    torch.maximum(r[..., 1:], m[..., :-1], out=r[..., 1:])
    torch.maximum(r[..., :-1], m[..., 1:], out=r[..., :-1])
    return r


def _level(s: torch.Tensor) -> torch.Tensor:
    """min(|s|, CLAMP) as uint8."""
    return s.abs().clamp(max=CLAMP).to(torch.uint8)


def contexts(
    shape: tuple[int, ...],
    coarse: torch.Tensor | None,
    prev: torch.Tensor | None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.long,
) -> torch.Tensor:
    """Contexts of `dtype` (shape (N, C, H, W), on `device`, else on the inputs' or the CPU) from the coarser
    tensor's rows and the previous rows (each None or of N rows; a row without a previous one is all zero
    in `prev`). Computed in uint8 (5x faster than float pooling at 320x180)."""
    h, w = shape[-2:]
    device = device or next((s.device for s in (coarse, prev) if s is not None), torch.device("cpu"))
    ctx = torch.zeros(shape, dtype=torch.uint8, device=device)
    if coarse is not None:
        c = _level(coarse)
        n, ch, hc, wc = c.shape
        up = c[:, :, :, None, :, None].expand(n, ch, hc, 2, wc, 2).reshape(n, ch, 2 * hc, 2 * wc)[..., :h, :w]
        ctx += _spread(up)
    if prev is not None:
        ctx += (CLAMP + 1) * _spread(_level(prev))
    return ctx.to(dtype)


def previous_rows(s: torch.Tensor, period: int) -> torch.Tensor | None:
    """Row n - 1 of s for each row n (zeros where n is the first of its run of `period`), None for period 0."""
    if not period:
        return None
    prev = torch.zeros_like(s)
    prev[1:] = s[:-1]
    prev[::period] = 0
    return prev


def coding_order(shape: tuple[int, ...], period: int) -> np.ndarray | None:
    """The rows of a context-coded tensor in the order their symbols are coded (section 7.2): runs of
    `period` rows position by position, every run's row r before any run's row r + 1; None for C order."""
    if not period:
        return None
    return np.arange(shape[0]).reshape(-1, period).T.ravel()


def _context_means(
    y: torch.Tensor, ctx: torch.Tensor, channels: int, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """y flattened in float64, each element's group (context * C + channel), and each group's element count
    and mean (float64; 0 where empty)."""
    group = (ctx * channels + torch.arange(channels, device=y.device).view(1, -1, 1, 1)).flatten()
    size = count * channels
    y = y.detach().flatten().double()
    n = torch.bincount(group, minlength=size).double()
    return y, group, n, torch.bincount(group, y, minlength=size) / n.clamp_min(1)


def context_stats(
    y: torch.Tensor, ctx: torch.Tensor, channels: int, count: int = NUM_CONTEXTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (means, stds) of model mode 2, index context * C + channel: the mean and standard deviation
    (floored at MIN_STD) of y in each context and channel, in float64; mean 0 and std 1 where a context has
    no element. The encoder's stored Gaussians (y: the symbols) and training's for a latent priced whole (y:
    its rounded values) both come from here; `count` contexts (mode 2's 9 unless an analysis tries others)."""
    y, group, n, mean = _context_means(y, ctx, channels, count)
    var = torch.bincount(group, (y - mean[group]) ** 2, minlength=len(n)) / n.clamp_min(1)
    return gaussians(n, mean, var)


def context_laplace_stats(
    y: torch.Tensor, ctx: torch.Tensor, channels: int, count: int = NUM_CONTEXTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (locations, scales) of model mode 4, index context * C + channel: the mean of y in each context
    and channel and the mean absolute deviation from it (floored at MIN_STD), in float64; location 0 and
    scale 1 where a context has no element. The encoder's stored Laplace distributions (y: the symbols) and
    training's (y: the rounded values) both come from here."""
    y, group, n, mean = _context_means(y, ctx, channels, count)
    dev = torch.bincount(group, (y - mean[group]).abs(), minlength=len(n)) / n.clamp_min(1)
    scale = torch.where(n > 0, dev.clamp_min(MIN_STD), torch.ones_like(dev))
    return mean.float(), scale.float()


def gaussians(n: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (means, stds) of groups of n elements with these means and variances (float64): the std
    floored at MIN_STD, and std 1 where a group is empty."""
    std = torch.sqrt(var + 1e-12).clamp_min(MIN_STD)
    return mean.float(), torch.where(n > 0, std, torch.ones_like(std)).float()


def context_grid(t: CodedTensor, ctx: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds) of each element's Gaussian as stored (float32), from its context: Gaussian
    ctx * C + c for channel c."""
    ctx = np.asarray(ctx)
    channels = t.shape[1]
    index = ctx * channels + np.arange(channels).reshape(1, channels, 1, 1)
    return t.means[index], t.stds[index]
