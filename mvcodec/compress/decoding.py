"""Coded tensors back to float32 values: the decoding side of compression (the decoder imports only this).

value = float32(symbol) * step in float32 (round to nearest even), each element's step formed from the
stored steps; pruned elements are +0.0. This is exact on every IEEE-754 platform, so the parameter hash is.
"""

from __future__ import annotations

import numpy as np
import torch

from mvcodec.bitstream.tensor import CODING_FLOAT32, MASK_BERNOULLI, CodedTensor
from mvcodec.compress.gaussian import gaussian_bits, model_grid
from mvcodec.compress.range_coding import gaussian_decode, mask_bits, mask_decode
from mvcodec.compress.steps import dequantize, step_grid


def element_steps(t: CodedTensor) -> torch.Tensor:
    """The float32 step of every element of a quantised tensor (its shape)."""
    steps = torch.from_numpy(np.ascontiguousarray(t.steps, np.float32))
    return step_grid(t.step_mode, t.step_axis, steps, t.shape).expand(t.shape)


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


def values_of(t: CodedTensor, symbols: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """float32 values of the tensor from its kept symbols (C order); pruned elements are +0.0."""
    steps = element_steps(t)
    if mask is None:
        return dequantize(torch.from_numpy(symbols).reshape(t.shape), steps).numpy()
    out = torch.zeros(t.shape, dtype=torch.float32)
    keep = torch.from_numpy(mask)
    out[keep] = dequantize(torch.from_numpy(symbols), steps[keep])
    return out.numpy()


def decode_tensor(t: CodedTensor) -> np.ndarray:
    """The float32 values a coded tensor stands for."""
    if t.coding == CODING_FLOAT32:
        return t.values.reshape(t.shape)
    mask = decode_mask(t)
    return values_of(t, decode_symbols(t, mask), mask)


def ideal_bits(t: CodedTensor) -> float:
    """Ideal size in bits of the tensor's coded symbols and mask under its stored models (32 per float)."""
    if t.coding == CODING_FLOAT32:
        return 32.0 * t.numel
    mask = decode_mask(t)
    symbols = np.zeros(t.shape, np.float64)
    if mask is None:
        symbols[...] = decode_symbols(t, None).reshape(t.shape)
    else:
        symbols[mask] = decode_symbols(t, mask)
    means, stds = (torch.from_numpy(np.ascontiguousarray(a, np.float64)) for a in model_grid(t))
    keep = None if mask is None else torch.from_numpy(mask)
    bits = float(gaussian_bits(torch.from_numpy(symbols), means, stds, t.sym_min, t.sym_max, keep))
    return bits + (mask_bits(mask, t.p_keep) if mask is not None else 0.0)
