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
    return SymbolReader(words).symbols(lo, hi, means, stds, laplace)


class SymbolReader:
    """Decodes one range-coded message in pieces, each under its own models: a tensor's mask, its symbols (the
    context modes' in batches), or, in a TNSL chunk, those of every tensor of a segment in turn."""

    def __init__(self, words: np.ndarray):
        self._decoder = RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))

    def symbols(self, lo: int, hi: int, means: np.ndarray, stds: np.ndarray, laplace: bool = False) -> np.ndarray:
        """len(means) int32 symbols in [lo, hi], each under its Gaussian (or `laplace`: Laplace distribution)."""
        if not len(means):
            return np.zeros(0, np.int32)
        m, s = _params(means, stds)
        return self._decoder.decode(_model(lo, hi, laplace), m, s)

    def mask(self, count: int, p_keep: float) -> np.ndarray:
        """count mask entries (bool, True = kept), each Bernoulli(p_keep)."""
        return self._decoder.decode(_bernoulli(p_keep), count).astype(bool)


class MessageWriter(SymbolReader):
    """Codes again into one message the pieces read from others: each piece is decoded from the message set by
    `reading` and encoded into this one under the same models, so that a SymbolReader of `words()` reads the
    same pieces in the same order (a segment's tensors into its TNSL message)."""

    def __init__(self) -> None:
        self._encoder = RangeEncoder()
        self._source: SymbolReader | None = None

    def reading(self, source: np.ndarray | SymbolReader) -> MessageWriter:
        """Read the next pieces from `source` (the words of a message, or a reader of one); returns self."""
        self._source = source if isinstance(source, SymbolReader) else SymbolReader(source)
        return self

    def symbols(self, lo: int, hi: int, means: np.ndarray, stds: np.ndarray, laplace: bool = False) -> np.ndarray:
        out = self._source.symbols(lo, hi, means, stds, laplace)
        if len(out):
            self._encoder.encode(out, _model(lo, hi, laplace), *_params(means, stds))
        return out

    def mask(self, count: int, p_keep: float) -> np.ndarray:
        out = self._source.mask(count, p_keep)
        self._encoder.encode(out.astype(np.int32), _bernoulli(p_keep))
        return out

    def words(self) -> np.ndarray:
        """The message so far (uint32 words)."""
        return self._encoder.get_compressed()


class GaussianReader:
    """The symbols of one tensor from a SymbolReader, in pieces each with its own Gaussians (model mode 2's
    rows) or Laplace distributions (mode 4's), on one alphabet."""

    def __init__(self, source: SymbolReader, lo: int, hi: int, laplace: bool = False):
        self._source, self._lo, self._hi, self._laplace = source, lo, hi, laplace

    def read(self, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
        """len(means) int32 symbols."""
        return self._source.symbols(self._lo, self._hi, means, stds, self._laplace)


def _bernoulli(p_keep: float):
    return Bernoulli(float(np.float32(p_keep)), perfect=False)


def mask_encode(mask: np.ndarray, p_keep: float) -> np.ndarray:
    """Range-coded words of a boolean mask (True = kept), each entry Bernoulli(p_keep)."""
    enc = RangeEncoder()
    enc.encode(np.ascontiguousarray(mask.ravel(), dtype=np.int32), _bernoulli(p_keep))
    return enc.get_compressed()


def mask_decode(words: np.ndarray, count: int, p_keep: float) -> np.ndarray:
    """count mask entries (bool, True = kept) decoded from range-coded words."""
    return SymbolReader(words).mask(count, p_keep)


def mask_bits(mask: np.ndarray, p_keep: float) -> float:
    """Ideal code length of a mask in bits under Bernoulli(p_keep)."""
    kept = int(mask.sum())
    p = float(np.float32(p_keep))
    return -(kept * np.log2(p) + (mask.size - kept) * np.log2(1 - p))
