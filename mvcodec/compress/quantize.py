"""Uniform scalar quantisation of parameter tensors, and turning a coded tensor back into float32 values.

Dequantisation is value = float32(symbol) * step, in float32 (round to nearest even), with the step of
each element taken from the stored float32 steps (one, one per index along an axis, or row x column);
pruned elements are +0.0. This is exact on every IEEE-754 platform, so the parameter hash is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mvcodec.bitstream.tensor import (
    CODING_FLOAT32,
    MASK_BERNOULLI,
    MAX_SYMBOL,
    MODEL_PER_AXIS,
    MODEL_SCALAR,
    STEP_PER_AXIS,
    STEP_SCALAR,
    STEPS_BFLOAT16,
    CodedTensor,
)
from mvcodec.compress.entropy import (
    gaussian_bits,
    gaussian_decode,
    gaussian_encode,
    mask_bits,
    mask_decode,
    mask_encode,
)

MIN_STD = 0.1  # a Gaussian narrower than this buys nothing for integer symbols


def _along(values: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """values (one per index along axis) broadcast to shape."""
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return np.broadcast_to(values.reshape(view), shape)


def step_grid(t: CodedTensor) -> np.ndarray:
    """The float32 step of every element of the tensor."""
    steps = t.steps.astype(np.float32)
    if t.step_mode == STEP_SCALAR:
        return np.broadcast_to(steps[0], t.shape)
    if t.step_mode == STEP_PER_AXIS:
        return _along(steps, t.shape, t.step_axis)
    rows, cols = steps[: t.shape[0]], steps[t.shape[0] :]
    return _along(rows, t.shape, 0) * _along(cols, t.shape, 1)  # float32 * float32, rounded to float32


def model_grid(t: CodedTensor) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds) of every element's Gaussian, as float32 arrays of the tensor's shape."""
    if t.model_mode == MODEL_SCALAR:
        return np.broadcast_to(t.means[0], t.shape), np.broadcast_to(t.stds[0], t.shape)
    return _along(t.means, t.shape, t.model_axis), _along(t.stds, t.shape, t.model_axis)


def decode_mask(t: CodedTensor) -> np.ndarray | None:
    """The kept-elements mask of the tensor (bool, its shape), or None where nothing is pruned."""
    if t.mask_mode != MASK_BERNOULLI:
        return None
    return mask_decode(t.mask_words, t.numel, t.p_keep).reshape(t.shape)


def decode_symbols(t: CodedTensor, mask: np.ndarray | None) -> np.ndarray:
    """The int32 symbols of the kept elements, in C order."""
    means, stds = model_grid(t)
    if mask is not None:
        means, stds = means[mask], stds[mask]
    return gaussian_decode(t.words, t.sym_min, t.sym_max, means.ravel(), stds.ravel())


def dequantize(t: CodedTensor, symbols: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """float32 values of the tensor from its kept symbols (pruned elements are 0)."""
    steps = step_grid(t)
    out = np.zeros(t.shape, np.float32)
    if mask is None:
        out[...] = symbols.reshape(t.shape).astype(np.float32) * steps
    else:
        out[mask] = symbols.astype(np.float32) * steps[mask]
    return out


def decode_tensor(t: CodedTensor) -> np.ndarray:
    """The float32 values a coded tensor stands for."""
    if t.coding == CODING_FLOAT32:
        return t.values.reshape(t.shape)
    mask = decode_mask(t)
    return dequantize(t, decode_symbols(t, mask), mask)


def ideal_bits(t: CodedTensor) -> float:
    """Ideal size in bits of the tensor's coded symbols and mask under its stored models (32 per float)."""
    if t.coding == CODING_FLOAT32:
        return 32.0 * t.numel
    mask = decode_mask(t)
    means, stds = model_grid(t)
    if mask is not None:
        means, stds = means[mask], stds[mask]
    bits = gaussian_bits(decode_symbols(t, mask), t.sym_min, t.sym_max, means.ravel(), stds.ravel())
    return bits + (mask_bits(mask, t.p_keep) if mask is not None else 0.0)


def is_conv_weight(name: str) -> bool:
    """Whether a parameter is a conv weight (a synthesis block's or the head's)."""
    return name.endswith("conv.weight") or name == "head.weight"


def channel_axis(name: str, shape: tuple[int, ...]) -> int | None:
    """Axis that gets its own step: output channels of conv weights, channels of grids and grid
    embeddings, none (one step) for biases."""
    if len(shape) == 1:
        return None
    return 0 if is_conv_weight(name) else 1


def symbol_range(symbols: np.ndarray) -> tuple[int, int]:
    """(lo, hi) of the coded alphabet: the symbols' extremes, widened to two symbols at least (lo < hi)."""
    lo = int(symbols.min()) if symbols.size else 0
    return lo, max(int(symbols.max()) if symbols.size else 0, lo + 1)


def quantize_uniform(
    name: str, w: np.ndarray, bits: int = 8, mask: np.ndarray | None = None, flat: bool = False
) -> ExportedTensor:
    """`w` quantised uniformly to signed `bits`-bit symbols with a float32 step per channel (max-abs
    scaling, as HiNeRV's code), pruned where `mask` is False, range-coded with one Gaussian of the
    symbols' statistics (or, flat, the stand-in for fixed-length coding: see code_symbols)."""
    w = np.asarray(w, np.float32)
    if mask is not None:
        w = np.where(mask, w, np.float32(0))
    levels = (1 << (bits - 1)) - 1
    axis = channel_axis(name, w.shape)
    if axis is None:
        peak = np.abs(w).max(keepdims=True).reshape(1)
    else:
        peak = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    steps = np.where(peak > 0, peak / levels, 1.0).astype(np.float32)
    plan = (STEP_SCALAR if axis is None else STEP_PER_AXIS, axis or 0, MODEL_SCALAR, 0)
    t = CodedTensor(name, tuple(w.shape), step_mode=plan[0], step_axis=plan[1], steps=steps)
    symbols = np.clip(np.rint(w / step_grid(t)), -levels, levels).astype(np.int32)
    return code_symbols(name, tuple(w.shape), symbols, steps, mask, plan, levels if flat else 0)


def group_stats(y: torch.Tensor, mask: torch.Tensor | None, axis: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (floored at MIN_STD) of the kept symbols of each group (index along
    `axis`, or the whole tensor), broadcastable to y."""
    w = torch.ones_like(y) if mask is None else mask.to(y.dtype)
    if axis is None:
        dims = tuple(range(y.ndim))
    else:
        dims = tuple(d for d in range(y.ndim) if d != axis)
    n = w.sum(dim=dims, keepdim=True).clamp_min(1)
    mean = (y * w).sum(dim=dims, keepdim=True) / n
    var = (((y - mean) ** 2) * w).sum(dim=dims, keepdim=True) / n
    return mean, torch.sqrt(var + 1e-12).clamp_min(MIN_STD)


@dataclass
class ExportedTensor:
    tensor: CodedTensor
    values: np.ndarray  # the dequantised float32 values the decoder rebuilds


def code_symbols(
    name: str,
    shape: tuple[int, ...],
    symbols: np.ndarray,
    steps: np.ndarray,
    mask: np.ndarray | None,
    plan: tuple[int, int, int, int],
    flat_levels: int = 0,
) -> ExportedTensor:
    """Code integer symbols (full tensor, C order; pruned positions ignored) with the stored steps, as
    `plan` says (step mode, step axis, model mode, model axis): the mask Bernoulli-coded with its kept
    fraction as probability, the kept symbols with Gaussians of their statistics. flat_levels L > 0: the
    alphabet is all of -L..L under one centred Gaussian as wide as a uniform distribution over it (std
    (2L + 1) / sqrt(12)): log2(2L + 1) + 0.25 bits per symbol whatever the symbols are, the stand-in for
    fixed-length coding (the ladder's "no entropy coding")."""
    step_mode, step_axis, model_mode, model_axis = plan
    t = CodedTensor(name, shape, step_mode=step_mode, step_axis=step_axis, steps=steps.astype(np.float32))
    if not (np.ascontiguousarray(t.steps).view(np.uint32) & 0xFFFF).any():
        t.step_format = STEPS_BFLOAT16
    symbols = np.clip(symbols.reshape(shape), -MAX_SYMBOL, MAX_SYMBOL).astype(np.int32)
    if mask is not None and not mask.all():
        keep = float(mask.mean())
        t.mask_mode, t.p_keep = MASK_BERNOULLI, float(np.float32(min(max(keep, 1e-6), 1 - 1e-6)))
        t.mask_words = mask_encode(mask, t.p_keep)
        kept = symbols[mask]
    else:
        mask = None
        kept = symbols.ravel()
    t.sym_min, t.sym_max = symbol_range(kept)
    if flat_levels:
        t.sym_min, t.sym_max = -flat_levels, flat_levels
        t.model_mode, t.model_axis = MODEL_SCALAR, 0
        t.means = np.zeros(1, np.float32)
        t.stds = np.array([(2 * flat_levels + 1) / 12**0.5], np.float32)
    else:
        t.model_mode, t.model_axis = model_mode, model_axis
        y = torch.from_numpy(symbols.astype(np.float64))
        m = None if mask is None else torch.from_numpy(mask)
        mean, std = group_stats(y, m, model_axis if model_mode == MODEL_PER_AXIS else None)
        t.means = mean.flatten().numpy().astype(np.float32)
        t.stds = std.flatten().numpy().astype(np.float32)
    means, stds = model_grid(t)
    if mask is not None:
        means, stds = means[mask], stds[mask]
    t.words = gaussian_encode(kept, t.sym_min, t.sym_max, means.ravel(), stds.ravel())
    return ExportedTensor(t, dequantize(t, kept, mask))


def float32_tensor(name: str, w: np.ndarray) -> CodedTensor:
    """A tensor stored as plain float32 values (no quantisation)."""
    w = np.asarray(w, np.float32)
    return CodedTensor(name, tuple(w.shape), coding=CODING_FLOAT32, values=w.ravel().copy())
