"""Range coding with constriction: integer symbols under quantised Gaussians (or Laplace distributions:
`laplace`, the means then their locations and the stds their scales), and Bernoulli pruning masks.

Both sides build the models from the float32 values stored in the stream (widened exactly to float64),
so encoder and decoder use bit-identical probabilities.
"""

from __future__ import annotations

import constriction
import numpy as np

QuantizedGaussian = constriction.stream.model.QuantizedGaussian
QuantizedLaplace = constriction.stream.model.QuantizedLaplace
Bernoulli = constriction.stream.model.Bernoulli
RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder


def _params(means: np.ndarray, stds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(means, np.float32).astype(np.float64), np.asarray(stds, np.float32).astype(np.float64)


def _model(lo: int, hi: int, laplace: bool):
    return (QuantizedLaplace if laplace else QuantizedGaussian)(lo, hi)


def gaussian_encode(
    symbols: np.ndarray, lo: int, hi: int, means: np.ndarray, stds: np.ndarray, laplace: bool = False
) -> np.ndarray:
    """Range-coded words (uint32) of int symbols in [lo, hi], each with its own Gaussian (mean, std), or with
    `laplace` its own Laplace distribution (location, scale)."""
    enc = RangeEncoder()
    if len(symbols):
        m, s = _params(means, stds)
        enc.encode(np.ascontiguousarray(symbols, dtype=np.int32), _model(lo, hi, laplace), m, s)
    return enc.get_compressed()


def gaussian_decode(
    words: np.ndarray, lo: int, hi: int, means: np.ndarray, stds: np.ndarray, laplace: bool = False
) -> np.ndarray:
    """len(means) int32 symbols decoded from range-coded words (the inverse of gaussian_encode)."""
    if not len(means):
        return np.zeros(0, np.int32)
    m, s = _params(means, stds)
    return RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32)).decode(_model(lo, hi, laplace), m, s)


class GaussianReader:
    """Decodes a range-coded symbol stream in pieces, each with its own Gaussians (model mode 2's rows) or
    Laplace distributions (mode 4's)."""

    def __init__(self, words: np.ndarray, lo: int, hi: int, laplace: bool = False):
        self._decoder = RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
        self._model = _model(lo, hi, laplace)

    def read(self, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
        """len(means) int32 symbols."""
        if not len(means):
            return np.zeros(0, np.int32)
        m, s = _params(means, stds)
        return self._decoder.decode(self._model, m, s)


def mask_encode(mask: np.ndarray, p_keep: float) -> np.ndarray:
    """Range-coded words of a boolean mask (True = kept), each entry Bernoulli(p_keep)."""
    enc = RangeEncoder()
    enc.encode(np.ascontiguousarray(mask.ravel(), dtype=np.int32), Bernoulli(float(np.float32(p_keep)), perfect=False))
    return enc.get_compressed()


def mask_decode(words: np.ndarray, count: int, p_keep: float) -> np.ndarray:
    """count mask entries (bool, True = kept) decoded from range-coded words."""
    dec = RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
    return dec.decode(Bernoulli(float(np.float32(p_keep)), perfect=False), count).astype(bool)


def mask_bits(mask: np.ndarray, p_keep: float) -> float:
    """Ideal code length of a mask in bits under Bernoulli(p_keep)."""
    kept = int(mask.sum())
    p = float(np.float32(p_keep))
    return -(kept * np.log2(p) + (mask.size - kept) * np.log2(1 - p))
