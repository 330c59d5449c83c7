"""Quantisation steps: value = symbol x step, with each element's step formed from the stored steps.

Step modes (bitstream_spec.md, section 7.1): one step for the tensor, one per index along an axis, or
row x column (step[i, j, ...] = row[i] * column[j], a float32 product). The same function forms the steps
of the learned quantiser in training and of the decoder, so both run on identical values.
"""

from __future__ import annotations

import torch

from mvcodec.bitstream.tensor import STEP_PER_AXIS, STEP_SCALAR


def along(v: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    """A vector shaped to broadcast along one axis of an ndim-d tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def step_grid(mode: int, axis: int, steps: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Every element's float32 step, broadcastable to shape: steps[0], steps along `axis`, or for row x
    column the row steps (shape[0] of them) times the column steps (shape[1])."""
    if mode == STEP_SCALAR:
        return steps[:1].reshape([1] * len(shape))
    if mode == STEP_PER_AXIS:
        return along(steps, len(shape), axis)
    return along(steps[: shape[0]], len(shape), 0) * along(steps[shape[0] :], len(shape), 1)


def dequantize(symbols: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """float32 values of integer symbols: float32(symbol) * step, rounded to nearest even."""
    return symbols.to(torch.float32) * steps
