"""The latents' autoregressive entropy model (model_mode 3, bitstream_spec.md section 7.3): a small MLP
predicts each symbol's Gaussian (mean, std) from symbols a decoder already has, as Cool-Chic's and C3's do.

A latent tensor S (N, C, H, W) is coded row position by row position (the frames of a view in turn), and in
each in wavefronts: element (i, j) belongs to wavefront t = 3 i + j, and every element of a wavefront has all
of its CAUSAL neighbours in earlier ones, so a decoder works on a wavefront of every row at once. The MLP's
inputs at element (n, c, i, j), each clamped to [-INPUT_CLAMP, INPUT_CLAMP]:
  0-11  S[n, c, i + di, j + dj] for (di, dj) in CAUSAL (0 outside the tensor);
  12    P[n, c, i // 2, j // 2], P the coarser tensor's symbols (0 without one);
  13    S[n - 1, c, i, j], the previous frame's symbol (0 for the first row of a run, or without runs).
Its layers are h = clamp(floor(256 (W x + b)) / 256, 0, ACT_MAX) twice, then (m, l) = W x + b;
mean = clamp(m, -MEAN_MAX, MEAN_MAX), std = max(pow2(clamp(l, LOG2_STD_MIN, LOG2_STD_MAX)), MIN_STD),
pow2(x) = 2^floor(x) (1 + x - floor(x)). Weights and biases are multiples of 2^-8 of magnitude at most
WEIGHT_MAX (checked on the decoded values), so float64 evaluates all of it exactly in any order of
summation: every conforming decoder gets bit-identical Gaussians. Training runs the same network in float32
with straight-through floors, its first layer as a masked 5x5 convolution.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mvcodec.bitstream.tensor import ARM_INPUTS, ARM_MAX_HIDDEN, arm_layer_shapes
from mvcodec.compress.gaussian import MIN_STD

CAUSAL = (
    (-1, 0),
    (0, -1),
    (-1, -1),
    (-1, 1),
    (-2, 0),
    (0, -2),
    (-2, -1),
    (-2, 1),
    (-1, -2),
    (-1, 2),
    (-2, -2),
    (-2, 2),
)
WAVE = 3  # element (i, j) is in wavefront WAVE * i + j; each CAUSAL neighbour is in an earlier one
assert all(WAVE * di + dj < 0 for di, dj in CAUSAL)
INPUTS = ARM_INPUTS
assert INPUTS == len(CAUSAL) + 2
INPUT_CLAMP = 64.0
ACT_UNIT = 256.0  # hidden activations are multiples of 1/256
ACT_MAX = 1024.0
MEAN_MAX = 1024.0
LOG2_STD_MIN, LOG2_STD_MAX = -4.0, 12.0
WEIGHT_UNIT = 256.0  # weights and biases: multiples of 1/256 (the fixed step 2^-8 of their symbols)
WEIGHT_MAX = 128.0
MAX_HIDDEN = ARM_MAX_HIDDEN
PAD = 2  # the neighbours' reach
layer_shapes = arm_layer_shapes


def check_weights(values: list[np.ndarray]) -> str | None:
    """Why decoded network tensors cannot be evaluated exactly (None if they can): every value a multiple of
    2^-8 of magnitude at most WEIGHT_MAX."""
    for v in values:
        scaled = np.asarray(v, np.float64) * WEIGHT_UNIT
        if not (np.all(np.abs(v) <= WEIGHT_MAX) and np.all(scaled == np.round(scaled))):
            return f"an entropy-model weight is not a multiple of 2^-8 within +-{WEIGHT_MAX:g}"
    return None


def layers_of(values: list[np.ndarray]) -> list[torch.Tensor]:
    """The six decoded network tensors as float64 tensors for the exact path."""
    return [torch.from_numpy(np.asarray(v, np.float64)) for v in values]


def _floor(x: torch.Tensor, exact: bool) -> torch.Tensor:
    return torch.floor(x) if exact else x + (torch.floor(x) - x).detach()


def pow2(x: torch.Tensor, exact: bool) -> torch.Tensor:
    """2^floor(x) (1 + x - floor(x)): 2^x to within 6%, exact in binary floating point."""
    e = torch.floor(x).detach()
    return torch.ldexp(1 + (x - e), e.to(torch.int32)) if exact else (1 + (x - e)) * torch.exp2(e)


def _head(h: torch.Tensor, layers: list[torch.Tensor], exact: bool, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """From the first layer's pre-activations (`axis` the units' axis) to (mean, std)."""
    h = h.movedim(axis, -1)
    h = (_floor(h * ACT_UNIT, exact) / ACT_UNIT).clamp(0.0, ACT_MAX)
    h = h @ layers[2].T + layers[3]
    h = (_floor(h * ACT_UNIT, exact) / ACT_UNIT).clamp(0.0, ACT_MAX)
    out = h @ layers[4].T + layers[5]
    mean = out[..., 0].clamp(-MEAN_MAX, MEAN_MAX)
    std = pow2(out[..., 1].clamp(LOG2_STD_MIN, LOG2_STD_MAX), exact).clamp_min(MIN_STD)
    return mean, std


def gaussians(x: torch.Tensor, layers: list[torch.Tensor], exact: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of each input row x (..., INPUTS), clamped here, through the network (W0, b0, ..., b2)."""
    x = x.clamp(-INPUT_CLAMP, INPUT_CLAMP)
    return _head(x @ layers[0].T + layers[1], layers, exact, -1)


def all_gaussians(
    s: torch.Tensor, coarse: torch.Tensor | None, prev: torch.Tensor | None, layers: list[torch.Tensor], exact: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of every element of s (N, C, H, W) from all of it (the encoder's and training's view):
    the first layer as a 5x5 convolution whose taps are the CAUSAL neighbours, plus the coarse and previous
    terms (float64 with exact=True, as the decoder's path gives bit for bit)."""
    n, c, h, w = s.shape
    w0 = layers[0]
    units = w0.shape[0]
    kernel = torch.zeros(units, 1, 2 * PAD + 1, 2 * PAD + 1, dtype=w0.dtype, device=w0.device)
    for k, (di, dj) in enumerate(CAUSAL):
        kernel[:, 0, PAD + di, PAD + dj] = w0[:, k]
    flat = s.reshape(n * c, 1, h, w).clamp(-INPUT_CLAMP, INPUT_CLAMP)
    pre = F.conv2d(flat, kernel, layers[1], padding=PAD).reshape(n, c, units, h, w)
    if coarse is not None:
        up = coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[..., :h, :w]
        pre = pre + up.clamp(-INPUT_CLAMP, INPUT_CLAMP).unsqueeze(2) * w0[:, -2].view(1, 1, -1, 1, 1)
    if prev is not None:
        pre = pre + prev.clamp(-INPUT_CLAMP, INPUT_CLAMP).unsqueeze(2) * w0[:, -1].view(1, 1, -1, 1, 1)
    return _head(pre, layers, exact, 2)


def _row_order(n: int, row_period: int) -> list[np.ndarray]:
    """The rows of each row position, in coding order: all rows at once without a period, else position by
    position, each position's rows in increasing order."""
    if not row_period:
        return [np.arange(n)]
    return [np.arange(r, n, row_period) for r in range(row_period)]


def wavefronts(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(i, j) of the elements of each wavefront t = WAVE i + j in increasing t, each in increasing i."""
    out = []
    for t in range(WAVE * (h - 1) + w):
        i = np.arange(max(0, -(-(t - w + 1) // WAVE)), min(h - 1, t // WAVE) + 1)
        out.append((i, t - WAVE * i))
    return out


def coded_gaussians(
    symbols: np.ndarray, coarse: np.ndarray | None, row_period: int, layers: list[torch.Tensor]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The encoder's view of a model_mode 3 tensor (all symbols known): (symbols, means, stds), each flat in
    coding order (row position by row position; in each, wavefront by wavefront; in each, C order over the
    rows, channels and the wavefront's elements)."""
    s = torch.from_numpy(np.asarray(symbols, np.float64))
    n, c, h, w = s.shape
    prev = None
    if row_period:
        prev = torch.zeros_like(s)
        prev[1:] = s[:-1]
        prev[::row_period] = 0
    cz = None if coarse is None else torch.from_numpy(np.asarray(coarse, np.float64))
    mean, std = all_gaussians(s, cz, prev, layers, exact=True)
    flat_pos = np.concatenate([i * w + j for i, j in wavefronts(h, w)])  # positions in wavefront order
    starts = np.cumsum([0] + [len(i) for i, _ in wavefronts(h, w)])
    parts = []
    for rows in _row_order(n, row_period):
        block = [a[rows].reshape(len(rows) * c, h * w)[:, flat_pos].numpy() for a in (s, mean, std)]
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            parts.append([x[:, a:b].ravel() for x in block])
    sym, means, stds = (np.concatenate([p[k] for p in parts]) for k in range(3))
    return sym.astype(np.int32), means, stds


def decode_latent(
    read, shape: tuple[int, ...], coarse: np.ndarray | None, row_period: int, layers: list[torch.Tensor]
) -> np.ndarray:
    """A model_mode 3 tensor's int32 symbols (its shape) from `read(means, stds)`, which decodes that many
    symbols from the tensor's words: in coded_gaussians' order, one call per wavefront of a row position."""
    n, c, h, w = shape
    out = torch.zeros((n, c, h + PAD, w + 2 * PAD), dtype=torch.float64)  # zero border above and to the sides
    cz = None if coarse is None else torch.from_numpy(np.asarray(coarse, np.float64))
    up = None if cz is None else cz.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[..., :h, :w]
    waves = wavefronts(h, w)
    for rows in _row_order(n, row_period):
        rows_t = torch.from_numpy(rows)
        cur = out[rows_t]  # (r, c, h + PAD, w + 2 PAD)
        prev = None
        if row_period:
            prev = torch.where(
                torch.from_numpy(rows % row_period != 0).view(-1, 1, 1, 1),
                out[torch.from_numpy(np.maximum(rows - 1, 0))][:, :, PAD:, PAD : PAD + w],
                torch.zeros(()),
            )
        for i, j in waves:
            ii, jj = torch.from_numpy(i), torch.from_numpy(j)
            cols = [cur[:, :, PAD + ii + di, PAD + jj + dj] for di, dj in CAUSAL]  # (r, c, k) each
            cols.append(up[rows_t][:, :, ii, jj] if up is not None else torch.zeros_like(cols[0]))
            cols.append(prev[:, :, ii, jj] if prev is not None else torch.zeros_like(cols[0]))
            mean, std = gaussians(torch.stack(cols, dim=-1), layers)
            sym = read(mean.numpy().ravel(), std.numpy().ravel())
            cur[:, :, PAD + ii, PAD + jj] = torch.from_numpy(sym.astype(np.float64)).view(len(rows), c, -1)
        out[rows_t] = cur
    return out[:, :, PAD:, PAD : PAD + w].numpy().astype(np.int32)
