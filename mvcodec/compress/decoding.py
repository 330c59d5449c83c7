"""Coded tensors back to float32 values: the decoding side of compression (the decoder imports only this).

value = float32(symbol) * step in float32 (round to nearest even), each element's step formed from the
stored steps; pruned elements are +0.0. This is exact on every IEEE-754 platform, so the parameter hash is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mvcodec.bitstream.tensor import (
    CODING_FLOAT32,
    CONTEXT_MODES,
    LAPLACE_MODES,
    LATENT_MODES,
    MASK_BERNOULLI,
    MODEL_ARM,
    MODEL_LAPLACE,
    MODEL_PREDICTED,
    NO_REF,
    PHASED_MODES,
    CodedTensor,
)
from mvcodec.compress import arm
from mvcodec.compress.context import (
    SUBLATTICES,
    context_grid,
    contexts,
    padded_activity,
    padded_values,
    phased_contexts,
    predictions,
    previous_rows,
    record_sublattice,
    record_values,
    sublattice_contexts,
    sublattice_level,
    sublattice_prediction,
)
from mvcodec.compress.gaussian import gaussian_bits, laplace_bits, model_grid
from mvcodec.compress.range_coding import GaussianReader, SymbolReader, mask_bits
from mvcodec.compress.steps import dequantize, step_grid
from mvcodec.errors import InvalidStream


def element_steps(t: CodedTensor) -> torch.Tensor:
    """The float32 step of every element of a quantised tensor (its shape)."""
    steps = torch.from_numpy(np.ascontiguousarray(t.steps, np.float32))
    return step_grid(t.step_mode, t.step_axis, steps, t.shape).expand(t.shape)


def shared_message(tensors: list[CodedTensor]) -> np.ndarray | None:
    """The one message a TNSL segment's tensors share (spec section 7.9); None for tensors with words of their own."""
    return next((t.message for t in tensors if t.message is not None), None)


def own_message(words: np.ndarray | None) -> SymbolReader:
    """A reader of a tensor's own message (its words or mask_words); in a TNSL chunk there is none."""
    if words is None:
        raise ValueError("the tensor's symbols are in its segment's message: decode the segment")
    return SymbolReader(words)


def decode_mask(t: CodedTensor, source: SymbolReader | None = None) -> np.ndarray | None:
    """The kept-elements mask of the tensor (bool, its shape), or None where nothing is pruned; read from
    `source` (by default its own mask_words)."""
    if t.mask_mode != MASK_BERNOULLI:
        return None
    return (source or own_message(t.mask_words)).mask(t.numel, t.p_keep).reshape(t.shape)


def decode_symbols(
    t: CodedTensor,
    mask: np.ndarray | None,
    coarse: np.ndarray | None = None,
    layers: list | None = None,
    source: SymbolReader | None = None,
) -> np.ndarray:
    """The int32 symbols of the kept elements, in C order, read from `source` (by default the tensor's own
    words). A context-modelled tensor (model modes 2 to 6) needs the symbols of its coarser tensor (`coarse`,
    full shape) where it has one, and with a row period decodes position by position in its runs of rows
    (bitstream_spec.md sections 7.2, 7.3); mode 3 needs its network's `layers` (arm.layers_of)."""
    source = source or own_message(t.words)
    if t.model_mode == MODEL_ARM:
        reader = GaussianReader(source, t.sym_min, t.sym_max)
        return arm.decode_latent(reader.read, t.shape, coarse, t.row_period, layers).ravel()
    if t.model_mode in PHASED_MODES:
        return _decode_phased(t, coarse, source)
    if t.model_mode in CONTEXT_MODES:
        return _decode_in_context(t, coarse, source)
    means, stds = model_grid(t)
    if mask is not None:
        means, stds = means[mask], stds[mask]
    return source.symbols(t.sym_min, t.sym_max, means.ravel(), stds.ravel())


def _decode_in_context(t: CodedTensor, coarse: np.ndarray | None, source: SymbolReader) -> np.ndarray:
    c = None if coarse is None else torch.from_numpy(coarse)
    laplace = t.model_mode == MODEL_LAPLACE
    if not t.row_period:
        means, stds = context_grid(t, contexts(t.shape, c, None))
        return source.symbols(t.sym_min, t.sym_max, means.ravel(), stds.ravel(), laplace)
    reader = GaussianReader(source, t.sym_min, t.sym_max, laplace)
    period, runs = t.row_period, t.shape[0] // t.row_period
    out = torch.zeros((runs, period, *t.shape[1:]), dtype=torch.int32)  # (run, position in it, ...)
    coarse_runs = None if c is None else c.reshape(runs, period, *c.shape[1:])
    for r in range(period):  # every run's row r at once: their contexts come from row r - 1
        prev = out[:, r - 1] if r else torch.zeros_like(out[:, 0])
        ctx = contexts((runs, *t.shape[1:]), None if c is None else coarse_runs[:, r], prev)
        means, stds = context_grid(t, ctx)
        out[:, r] = torch.from_numpy(reader.read(means.ravel(), stds.ravel()).reshape(runs, *t.shape[1:]))
    return out.numpy().ravel()


def _decode_phased(t: CodedTensor, coarse: np.ndarray | None, source: SymbolReader) -> np.ndarray:
    """Model modes 5 and 6 (sections 7.5, 7.6): row position by row position as mode 2, in each sub-lattice by
    sub-lattice, each with its spatial levels (mode 6: and its predictions) from the symbols of the
    sub-lattices before it."""
    predicted = t.model_mode == MODEL_PREDICTED
    reader = GaussianReader(source, t.sym_min, t.sym_max, laplace=predicted)
    n, ch, h, w = t.shape
    period = t.row_period or 1  # without a period every row is at position 0
    out = torch.zeros((n // period, period, ch, h, w), dtype=torch.int32)  # (run, position in it, ...)
    c = None if coarse is None else torch.from_numpy(coarse).reshape(n // period, period, *coarse.shape[1:])
    for r in range(period):
        base = contexts(out[:, r].shape, None if c is None else c[:, r], out[:, r - 1] if r else None)
        act = padded_activity(out[:, r])
        vals = padded_values(out[:, r]) if predicted else None
        for k, (oi, oj, stride, _) in enumerate(SUBLATTICES):
            level = sublattice_level(act, k)
            pred = sublattice_prediction(vals, k) if predicted else None
            ctx = sublattice_contexts(t.model_mode, base[..., oi::stride, oj::stride], level)
            means, stds = context_grid(t, ctx, pred)
            sym = torch.from_numpy(reader.read(means.ravel(), stds.ravel()).reshape(level.shape))
            out[:, r, :, oi::stride, oj::stride] = sym
            record_sublattice(act, k, sym)
            if predicted:
                record_values(vals, k, sym)
    return out.numpy().ravel()


def tensor_contexts(t: CodedTensor, symbols: np.ndarray, coarse: np.ndarray | None) -> np.ndarray:
    """The context of every element of a context-modelled tensor from its full symbols (the encoder's view)."""
    s = torch.from_numpy(np.ascontiguousarray(symbols).reshape(t.shape))
    c = None if coarse is None else torch.from_numpy(np.ascontiguousarray(coarse))
    ctx = contexts(t.shape, c, previous_rows(s, t.row_period))
    return (phased_contexts(ctx, s, t.model_mode) if t.model_mode in PHASED_MODES else ctx).numpy()


def tensor_predictions(t: CodedTensor, symbols: np.ndarray) -> np.ndarray | None:
    """Model mode 6's prediction of every element from its full symbols (the encoder's view); None for the
    other modes."""
    if t.model_mode != MODEL_PREDICTED:
        return None
    return predictions(torch.from_numpy(np.ascontiguousarray(symbols, np.int32).reshape(t.shape))).numpy()


def tensor_models(t: CodedTensor, symbols: np.ndarray, coarse: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds) of every element of a context-modelled tensor as stored (its shape), from its full symbols:
    the distribution of its context, at its prediction in model mode 6."""
    return context_grid(t, tensor_contexts(t, symbols, coarse), tensor_predictions(t, symbols))


def values_of(t: CodedTensor, symbols: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """float32 values of the tensor from its kept symbols (C order); pruned elements are +0.0."""
    steps = element_steps(t)
    if mask is None:
        return dequantize(torch.from_numpy(symbols).reshape(t.shape), steps).numpy()
    out = torch.zeros(t.shape, dtype=torch.float32)
    keep = torch.from_numpy(mask)
    out[keep] = dequantize(torch.from_numpy(symbols), steps[keep])
    return out.numpy()


@dataclass
class DecodedSegment:
    """A segment's tensors decoded, in stream order: float32 values; and, None for float32 tensors, the
    symbols (int32, the tensor's shape, pruned elements 0) and the kept-elements masks (None: unpruned)."""

    values: list[np.ndarray]
    symbols: list[np.ndarray | None]
    masks: list[np.ndarray | None]


def decode_segment(
    tensors: list[CodedTensor], source_of: Callable[[np.ndarray | None], SymbolReader] | None = None
) -> DecodedSegment:
    """Decode every tensor of a segment once, each with the symbols of the tensor its context refers to: each
    mask and each tensor's symbols from the reader `source_of` gives for its words (by default a reader of
    those words, or in a TNSL chunk the one reader of the segment's message, in tensor order)."""
    if source_of is None:
        message = shared_message(tensors)
        shared = None if message is None else SymbolReader(message)
        source_of = own_message if shared is None else lambda _: shared
    out = DecodedSegment([], [], [])
    for t in tensors:
        if t.coding == CODING_FLOAT32:
            out.values.append(t.values.reshape(t.shape))
            out.symbols.append(None)
            out.masks.append(None)
            continue
        mask = decode_mask(t, source_of(t.mask_words)) if t.mask_mode == MASK_BERNOULLI else None
        coarse = out.symbols[t.coarse_ref] if t.model_mode in LATENT_MODES and t.coarse_ref != NO_REF else None
        kept = decode_symbols(t, mask, coarse, arm_layers(t, out.values), source_of(t.words))
        full = np.zeros(t.shape, np.int32)
        if mask is None:
            full[...] = kept.reshape(t.shape)
        else:
            full[mask] = kept
        out.values.append(values_of(t, kept, mask))
        out.symbols.append(full)
        out.masks.append(mask)
    return out


def arm_layers(t: CodedTensor, values: list[np.ndarray]) -> list | None:
    """A model_mode 3 tensor's network from the segment's decoded values (InvalidStream if it cannot be
    evaluated exactly); None for the other modes."""
    if t.coding == CODING_FLOAT32 or t.model_mode != MODEL_ARM:
        return None
    return _network(t, values[t.arm_ref : t.arm_ref + 6])


def _network(t: CodedTensor, net: list[np.ndarray]) -> list:
    if (why := arm.check_weights(net)) is not None:
        raise InvalidStream(f"tensor {t.name}: {why}")
    return arm.layers_of(net)


def _values_of_symbols(t: CodedTensor, symbols: np.ndarray | None) -> np.ndarray:
    """A tensor's float32 values from its full-shape symbols (pruned elements are 0 there, and +0.0 here)."""
    return t.values.reshape(t.shape) if t.coding == CODING_FLOAT32 else values_of(t, symbols.ravel(), None)


def segment_symbols(tensors: list[CodedTensor]) -> list[np.ndarray | None]:
    """Every quantised tensor's symbols (int32, its shape; pruned elements 0) in stream order; None for
    float32 tensors."""
    return decode_segment(tensors).symbols


def decode_tensors(tensors: list[CodedTensor]) -> list[np.ndarray]:
    """The float32 values the coded tensors of a segment stand for, in stream order."""
    return decode_segment(tensors).values


def decode_tensor(t: CodedTensor) -> np.ndarray:
    """The float32 values a coded tensor stands for (one without references to other tensors)."""
    return decode_tensors([t])[0]


def ideal_bits(
    t: CodedTensor,
    symbols: np.ndarray | None = None,
    coarse: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    layers: list | None = None,
) -> float:
    """Ideal size in bits of the tensor's coded symbols and mask under its stored models (32 per float).
    `symbols` (full shape) and `mask` save decoding them again; a context-modelled tensor needs its symbols,
    and the symbols of its coarser tensor."""
    if t.coding == CODING_FLOAT32:
        return 32.0 * t.numel
    if mask is None:
        mask = decode_mask(t)
    if symbols is None:
        if (
            (t.model_mode in CONTEXT_MODES and t.coarse_ref != NO_REF)
            or t.model_mode == MODEL_ARM
            or t.message is not None
        ):
            raise ValueError(f"{t.name}: give its symbols (and those of the tensors it refers to)")
        symbols = segment_symbols([t])[0]
    if t.model_mode in LATENT_MODES and t.coarse_ref != NO_REF and coarse is None:
        raise ValueError(f"{t.name}: its context needs the symbols of tensor {t.coarse_ref}")
    if t.model_mode == MODEL_ARM:
        if layers is None:
            raise ValueError(f"{t.name}: its Gaussians need the network of tensor {t.arm_ref}")
        symbols, *grid = arm.coded_gaussians(symbols.reshape(t.shape), coarse, t.row_period, layers)
    elif t.model_mode in CONTEXT_MODES:
        grid = tensor_models(t, symbols, coarse)
    else:
        grid = model_grid(t)
    means, stds = (torch.from_numpy(np.ascontiguousarray(a, np.float64)) for a in grid)
    keep = None if mask is None else torch.from_numpy(mask)
    y = torch.from_numpy(symbols.astype(np.float64))
    if t.model_mode in LAPLACE_MODES:  # (never pruned)
        return float(laplace_bits(y, means, stds, t.sym_min, t.sym_max))
    bits = float(gaussian_bits(y, means, stds, t.sym_min, t.sym_max, keep))
    return bits + (mask_bits(mask, t.p_keep) if mask is not None else 0.0)


def segment_ideal_bits(
    tensors: list[CodedTensor], symbols: list[np.ndarray | None], masks: list[np.ndarray | None] | None = None
) -> list[float]:
    """ideal_bits of every tensor of a segment, given its symbols (and masks) as decode_segment gives them."""
    out = []
    for i, (t, sym) in enumerate(zip(tensors, symbols, strict=True)):
        ref = t.coarse_ref if t.coding != CODING_FLOAT32 and t.model_mode in LATENT_MODES else NO_REF
        mask = masks[i] if masks is not None else None
        layers = None
        if t.coding != CODING_FLOAT32 and t.model_mode == MODEL_ARM:  # the network's values from its symbols
            net = [_values_of_symbols(tensors[k], symbols[k]) for k in range(t.arm_ref, t.arm_ref + 6)]
            layers = _network(t, net)
        out.append(ideal_bits(t, sym, symbols[ref] if ref != NO_REF else None, mask, layers))
    return out
