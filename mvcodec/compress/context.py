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

Model mode 5 (section 7.5) refines these 9 contexts with the symbol's decoded neighbours in its own row: a row's
positions fall into seven sub-lattices decoded in turn (SUBLATTICES: every fourth row and column first, then
the centres of those squares, ...), and a symbol outside the first has context k + 9 (1 + m), m the largest
min(|S|, 2) over four neighbours in earlier sub-lattices. A decoder decodes a sub-lattice of all the rows of a
row position at once: seven steps where a symbol-by-symbol causal context would take a wavefront per
diagonal, for most of the rate such a context saves (BENCHMARKS.md, issue 14, experiment 29).

Model mode 6 (section 7.6), for tensors without a coarser level, keeps mode 5's order, takes as contexts
b + 3 s (12: the previous row's activity b and the neighbours' class s), and codes each symbol under a
Laplace distribution located at its context's location plus a prediction: the median of the same four
neighbours' values (0 in the first sub-lattice). A motion field is smooth where things move, so a
neighbour's vector predicts a cell's far better than 0 does (BENCHMARKS.md, issue 14, experiment 31).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from mvcodec.bitstream.tensor import (
    MEAN_UNIT,
    MODEL_PHASED,
    MODEL_PREDICTED,
    NUM_CONTEXTS,
    PHASED_CONTEXTS,
    PHASED_MODES,
    PREDICTED_CONTEXTS,
    CodedTensor,
    compact_stds,
)
from mvcodec.compress.gaussian import MIN_STD

CLAMP = 2
assert (CLAMP + 1) ** 2 == NUM_CONTEXTS and NUM_CONTEXTS * (CLAMP + 2) == PHASED_CONTEXTS
assert (CLAMP + 1) * (CLAMP + 2) == PREDICTED_CONTEXTS

_DIAG2 = ((-2, -2), (-2, 2), (2, -2), (2, 2))
_AXIS2 = ((-2, 0), (0, -2), (0, 2), (2, 0))
_DIAG1 = ((-1, -1), (-1, 1), (1, -1), (1, 1))
_AXIS1 = ((-1, 0), (0, -1), (0, 1), (1, 0))
# model_mode 5: (row offset, column offset, stride, neighbours) of each sub-lattice in decoding order; every
# neighbour of a sub-lattice's element lies in an earlier sub-lattice (or outside the grid)
SUBLATTICES = (
    (0, 0, 4, ()),
    (2, 2, 4, _DIAG2),
    (0, 2, 4, _AXIS2),
    (2, 0, 4, _AXIS2),
    (1, 1, 2, _DIAG1),
    (0, 1, 2, _AXIS1),
    (1, 0, 2, _AXIS1),
)
REACH = 2


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


def padded_activity(s: torch.Tensor) -> torch.Tensor:
    """min(|s|, CLAMP) as uint8 with a border of REACH zeros around the last two axes (a neighbour outside the
    grid counts as 0, which never raises a largest activity)."""
    h, w = s.shape[-2:]
    out = torch.zeros((*s.shape[:-2], h + 2 * REACH, w + 2 * REACH), dtype=torch.uint8, device=s.device)
    out[..., REACH : REACH + h, REACH : REACH + w] = _level(s)
    return out


def sublattice_level(act: torch.Tensor, k: int) -> torch.Tensor:
    """The spatial level (uint8) of every element of sub-lattice k from the padded activity `act`
    (padded_activity) of the symbols of its earlier sub-lattices: 0 in sub-lattice 0, else 1 + the largest
    activity of its neighbours."""
    oi, oj, stride, around = SUBLATTICES[k]
    h, w = act.shape[-2] - 2 * REACH, act.shape[-1] - 2 * REACH
    hk, wk = max(-(-(h - oi) // stride), 0), max(-(-(w - oj) // stride), 0)
    if not around or not hk or not wk:
        return torch.zeros((*act.shape[:-2], hk, wk), dtype=torch.uint8, device=act.device)
    m = None
    for di, dj in around:
        i0, j0 = REACH + oi + di, REACH + oj + dj
        a = act[..., i0 : i0 + stride * (hk - 1) + 1 : stride, j0 : j0 + stride * (wk - 1) + 1 : stride]
        m = a.clone() if m is None else torch.maximum(m, a, out=m)
    return m.add_(1)


def record_sublattice(act: torch.Tensor, k: int, sym: torch.Tensor) -> None:
    """Write the activity of sub-lattice k's decoded symbols `sym` (its elements' shape) into the padded
    activity `act` (padded_activity), for the sub-lattices after it."""
    oi, oj, stride, _ = SUBLATTICES[k]
    act[..., REACH + oi :: stride, REACH + oj :: stride][..., : sym.shape[-2], : sym.shape[-1]] = _level(sym)


def padded_values(s: torch.Tensor) -> torch.Tensor:
    """s with a border of REACH zeros around the last two axes (a neighbour outside the grid predicts 0)."""
    h, w = s.shape[-2:]
    out = torch.zeros((*s.shape[:-2], h + 2 * REACH, w + 2 * REACH), dtype=s.dtype, device=s.device)
    out[..., REACH : REACH + h, REACH : REACH + w] = s
    return out


def sublattice_prediction(vals: torch.Tensor, k: int) -> torch.Tensor:
    """Model mode 6's prediction (vals' dtype) of every element of sub-lattice k from the padded values `vals`
    (padded_values) of its earlier sub-lattices: 0 in sub-lattice 0, else the median of its four neighbours,
    the mean of the middle two truncated toward zero (their sum less the largest and the smallest, halved)."""
    oi, oj, stride, around = SUBLATTICES[k]
    h, w = vals.shape[-2] - 2 * REACH, vals.shape[-1] - 2 * REACH
    hk, wk = max(-(-(h - oi) // stride), 0), max(-(-(w - oj) // stride), 0)
    if not around or not hk or not wk:
        return torch.zeros((*vals.shape[:-2], hk, wk), dtype=vals.dtype, device=vals.device)
    parts = []
    for di, dj in around:
        i0, j0 = REACH + oi + di, REACH + oj + dj
        parts.append(vals[..., i0 : i0 + stride * (hk - 1) + 1 : stride, j0 : j0 + stride * (wk - 1) + 1 : stride])
    v = torch.stack(parts)
    middle = v.sum(dim=0, dtype=vals.dtype) - v.amax(dim=0) - v.amin(dim=0)
    return torch.div(middle, 2, rounding_mode="trunc")


def record_values(vals: torch.Tensor, k: int, sym: torch.Tensor) -> None:
    """Write sub-lattice k's decoded symbols `sym` into the padded values `vals` (padded_values)."""
    oi, oj, stride, _ = SUBLATTICES[k]
    vals[..., REACH + oi :: stride, REACH + oj :: stride][..., : sym.shape[-2], : sym.shape[-1]] = sym


def predictions(s: torch.Tensor) -> torch.Tensor:
    """Model mode 6's prediction (s's dtype and shape) of every element of s (..., H, W), all of its symbols
    known (the encoder's and training's view): what the decoder finds at each sub-lattice's turn."""
    vals = padded_values(s)
    out = torch.empty_like(s)
    for k, (oi, oj, stride, _) in enumerate(SUBLATTICES):
        out[..., oi::stride, oj::stride] = sublattice_prediction(vals, k)
    return out


def spatial_levels(s: torch.Tensor) -> torch.Tensor:
    """The spatial level (uint8, s's shape) of every element of s (..., H, W), all of its symbols known (the
    encoder's and training's view): what the decoder finds at each sub-lattice's turn."""
    act = padded_activity(s)
    out = torch.empty(s.shape, dtype=torch.uint8, device=s.device)
    for k, (oi, oj, stride, _) in enumerate(SUBLATTICES):
        out[..., oi::stride, oj::stride] = sublattice_level(act, k)
    return out


def sublattice_contexts(mode: int, ctx: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Model mode 5's or 6's contexts (ctx's dtype) from mode 2's `ctx` and the spatial levels of the same
    elements: mode 5's ctx + 9 level; mode 6's (no coarser tensor: ctx is 3 b) b + 3 level."""
    level = level.to(ctx.dtype)
    if mode == MODEL_PREDICTED:
        return ctx // (CLAMP + 1) + (CLAMP + 1) * level
    return ctx + NUM_CONTEXTS * level


def phased_contexts(ctx: torch.Tensor, s: torch.Tensor, mode: int = MODEL_PHASED) -> torch.Tensor:
    """Model mode 5's (or 6's) contexts (ctx's dtype) from mode 2's `ctx` and the symbols s of the same
    elements."""
    return sublattice_contexts(mode, ctx, spatial_levels(s))


def phased_order(shape: tuple[int, ...], period: int) -> np.ndarray:
    """The flat (C order) indices of a mode 5 tensor's elements in coding order: row position by row
    position (all rows at position 0 without a period), in each sub-lattice by sub-lattice, in each C order
    over (row, channel, i, j)."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    positions = [np.arange(shape[0])] if not period else [np.arange(r, shape[0], period) for r in range(period)]
    return np.concatenate(
        [index[rows][:, :, oi::st, oj::st].ravel() for rows in positions for oi, oj, st, _ in SUBLATTICES]
    )


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
    its rounded values) both come from here; `count` contexts (mode 2's 9, mode 5's 36, or an analysis's)."""
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


def stored_gaussians(
    mode: int, mean: torch.Tensor, std: torch.Tensor, compact: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (means, stds) as a tensor of model `mode` stores them: modes 5 and 6's rounded to the nearest
    bfloat16 (ties to even; the nearest to a std of at least 0.1 is at least 0.1), or with `compact` to the
    nearest values of the compact table (compact_gaussians); the others' as they are."""
    if mode not in PHASED_MODES:
        return mean, std
    if compact:
        return compact_gaussians(mean, std)
    return mean.to(torch.bfloat16).float(), std.to(torch.bfloat16).float()


@functools.lru_cache(maxsize=1)
def _compact_bounds() -> tuple[torch.Tensor, torch.Tensor]:
    """The compact table's stds (float32) and the geometric midpoints between neighbours (float64)."""
    table = torch.from_numpy(compact_stds().copy())
    t = table.double()
    return table, torch.sqrt(t[:-1] * t[1:])


def compact_gaussians(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (means, stds) rounded as the encoder stores them in a compact table (spec section 7.7): a mean
    to the nearest multiple of 1/16 (ties to even) where that is within +-127/16, else to the nearest
    bfloat16; a std (at least 0.1) to the nearest of the table's 255 in ratio (the lower at a tie), or to the
    nearest bfloat16 above the largest."""
    table, bounds = (v.to(std.device) for v in _compact_bounds())
    scaled = torch.round(mean.float() * MEAN_UNIT)
    # (+ 0.0: a mean that rounds to -0 is stored, and decoded, as +0)
    mean = torch.where(scaled.abs() <= 127, scaled / MEAN_UNIT + 0.0, mean.to(torch.bfloat16).float())
    std = std.float()
    code = torch.searchsorted(bounds, std.double()).clamp_max(len(table) - 1)
    std = torch.where(std > table[-1], std.to(torch.bfloat16).float(), table[code])
    return mean, std


def gaussians(n: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (means, stds) of groups of n elements with these means and variances (float64): the std
    floored at MIN_STD, and std 1 where a group is empty."""
    std = torch.sqrt(var + 1e-12).clamp_min(MIN_STD)
    return mean.float(), torch.where(n > 0, std, torch.ones_like(std)).float()


def context_grid(
    t: CodedTensor, ctx: torch.Tensor | np.ndarray, pred: torch.Tensor | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds) of each element's Gaussian as stored (float32), from its context: Gaussian
    ctx * C + c for channel c; model mode 6's Laplace locations plus each element's prediction `pred`
    (predictions), added in float32."""
    ctx = np.asarray(ctx)
    channels = t.shape[1]
    index = ctx * channels + np.arange(channels).reshape(1, channels, 1, 1)
    means, stds = t.means[index], t.stds[index]
    if t.model_mode == MODEL_PREDICTED:
        if pred is None:
            raise ValueError(f"{t.name}: model mode 6's locations need the symbols' predictions")
        means = means + np.asarray(pred, dtype=np.float32)
    return means, stds
