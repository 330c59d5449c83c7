"""Coded tensors from integer symbols or float weights: the encoding side of compression.

Each parameter's coding follows its role in the architecture's layout (mvcodec/model/base.py): conv
weights get row x column steps and one Gaussian (the row and column steps already bring every row's symbols
to one scale, and a Gaussian per row would cost 64 bits for rows of a few dozen weights); grids and
embeddings a step and a Gaussian per channel (axis 1); biases one of each.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from mvcodec.bitstream.tensor import (
    CODING_FLOAT32,
    CONTEXT_MODES,
    LAPLACE_MODES,
    MASK_BERNOULLI,
    MAX_SYMBOL,
    MEAN_UNIT,
    MODEL_ARM,
    MODEL_CONTEXT,
    MODEL_LAPLACE,
    MODEL_PER_AXIS,
    MODEL_PHASED,
    MODEL_PREDICTED,
    MODEL_SCALAR,
    NO_REF,
    PHASED_MODES,
    STEP_PER_AXIS,
    STEP_ROW_COLUMN,
    STEP_SCALAR,
    STEPS_BFLOAT16,
    TABLE_BFLOAT16,
    TABLE_COMPACT,
    CodedTensor,
    compact_stds,
    context_count,
)
from mvcodec.compress import arm
from mvcodec.compress.context import (
    coding_order,
    context_grid,
    context_laplace_stats,
    context_stats,
    phased_order,
    stored_gaussians,
)
from mvcodec.compress.decoding import (
    decode_segment,
    element_steps,
    shared_message,
    tensor_contexts,
    tensor_predictions,
    values_of,
)
from mvcodec.compress.gaussian import gaussian_bits, group_stats, laplace_bits, model_grid
from mvcodec.compress.range_coding import MessageWriter, SymbolReader, gaussian_encode, mask_encode
from mvcodec.model.base import ParamSpec, Role


@dataclass(frozen=True)
class CodingPlan:
    """How a tensor is coded: its step mode and axis, its entropy-model mode and axis."""

    step_mode: int
    step_axis: int
    model_mode: int
    model_axis: int
    compact: bool = False  # model modes 5 and 6: the parameter pairs in the compact table (spec section 7.7)

    @property
    def group_axis(self) -> int | None:
        """The axis with a Gaussian per index (per context too in model mode 2), or None for one Gaussian."""
        return None if self.model_mode == MODEL_SCALAR else self.model_axis


@dataclass(frozen=True)
class LatentContext:
    """What model mode 2 codes a tensor with: the index of its coarser tensor in the segment (NO_REF) and
    that tensor's symbols, and the row period (0, or the frames of a view for rows that are frames)."""

    coarse_ref: int
    coarse_symbols: np.ndarray | None
    row_period: int
    arm_ref: int = NO_REF  # model mode 3: the index of its network's first tensor, and that network
    arm_layers: list | None = None


def plan_for(spec: ParamSpec) -> CodingPlan:
    """The coding of a parameter tensor, from its role."""
    if spec.role is Role.BIAS or spec.role is Role.ARM or len(spec.shape) == 1:
        return CodingPlan(STEP_SCALAR, 0, MODEL_SCALAR, 0)
    if spec.role is Role.CONV_WEIGHT:
        return CodingPlan(STEP_ROW_COLUMN, 0, MODEL_SCALAR, 0)
    if spec.role is Role.LATENT:
        if spec.arm:
            context = MODEL_ARM
        elif spec.laplace:
            context = MODEL_PREDICTED if spec.phased else MODEL_LAPLACE
        else:
            context = MODEL_PHASED if spec.phased else MODEL_CONTEXT
        mode = context if len(spec.shape) == 4 else MODEL_PER_AXIS
        return CodingPlan(STEP_SCALAR, 0, mode, 1, spec.compact and mode in PHASED_MODES)
    return CodingPlan(STEP_PER_AXIS, 1, MODEL_PER_AXIS, 1)


@dataclass
class ExportedTensor:
    tensor: CodedTensor
    values: np.ndarray  # the dequantised float32 values the decoder rebuilds


def symbol_range(symbols: np.ndarray) -> tuple[int, int]:
    """(lo, hi) of the coded alphabet: the symbols' extremes, widened to two symbols at least (lo < hi)."""
    lo = int(symbols.min()) if symbols.size else 0
    return lo, max(int(symbols.max()) if symbols.size else 0, lo + 1)


def code_symbols(
    spec: ParamSpec,
    symbols: np.ndarray,
    steps: np.ndarray,
    mask: np.ndarray | None,
    plan: CodingPlan,
    flat_levels: int = 0,
    context: LatentContext | None = None,
) -> ExportedTensor:
    """Code integer symbols (full tensor, C order; pruned positions ignored) with the stored steps as
    `plan` says: the mask Bernoulli-coded with its kept fraction as probability, the kept symbols with
    Gaussians of their statistics. flat_levels L > 0: the alphabet is all of -L..L under one centred
    Gaussian as wide as a uniform distribution over it (std (2L + 1) / sqrt(12)): log2(2L + 1) + 0.25 bits
    per symbol whatever the symbols are, the stand-in for fixed-length coding (the ladder's "no entropy
    coding"). Model mode 2 (plan) needs `context`: a Gaussian per context and channel, of the statistics of
    the symbols in it."""
    shape = spec.shape
    t = CodedTensor(
        spec.name, shape, step_mode=plan.step_mode, step_axis=plan.step_axis, steps=steps.astype(np.float32)
    )
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
    elif plan.model_mode in CONTEXT_MODES:
        if mask is not None or context is None:
            raise ValueError(f"{spec.name}: model mode {plan.model_mode} needs its context and no pruning")
        if plan.model_mode == MODEL_PREDICTED and context.coarse_ref != NO_REF:
            raise ValueError(f"{spec.name}: model mode 6 codes a tensor without a coarser one")
        t.model_mode, t.model_axis = plan.model_mode, 1
        t.coarse_ref, t.row_period = context.coarse_ref, context.row_period
        ctx = tensor_contexts(t, symbols, context.coarse_symbols)
        pred = tensor_predictions(t, symbols)  # (mode 6: its distributions fitted to the symbols less these)
        stats = context_laplace_stats if plan.model_mode in LAPLACE_MODES else context_stats
        y = torch.from_numpy(symbols.astype(np.float64) - (0 if pred is None else pred))
        mean, std = stats(y, torch.from_numpy(ctx), shape[1], context_count(plan.model_mode))
        mean, std = stored_gaussians(plan.model_mode, mean, std, plan.compact)  # (modes 5, 6: rounded)
        t.means, t.stds = mean.numpy(), std.numpy()
        t.table_format = TABLE_COMPACT if plan.compact else TABLE_BFLOAT16
        if plan.compact:
            t.means, t.stds = without_costly_pairs(t, symbols, ctx, pred)
    elif plan.model_mode == MODEL_ARM:
        if mask is not None or context is None or context.arm_layers is None:
            raise ValueError(f"{spec.name}: model mode 3 needs its context, its network and no pruning")
        t.model_mode, t.model_axis = MODEL_ARM, 1
        t.coarse_ref, t.row_period, t.arm_ref = context.coarse_ref, context.row_period, context.arm_ref
        t.means, t.stds = np.zeros(0, np.float32), np.zeros(0, np.float32)
    else:
        t.model_mode, t.model_axis = plan.model_mode, plan.model_axis
        y = torch.from_numpy(symbols.astype(np.float64))
        m = None if mask is None else torch.from_numpy(mask)
        mean, std = group_stats(y, m, plan.group_axis)
        t.means = mean.flatten().numpy().astype(np.float32)
        t.stds = std.flatten().numpy().astype(np.float32)
    coded = kept
    if t.model_mode == MODEL_ARM:
        coded, means, stds = arm.coded_gaussians(symbols, context.coarse_symbols, t.row_period, context.arm_layers)
    elif t.model_mode in CONTEXT_MODES:
        means, stds = context_grid(t, ctx, pred)
        if t.model_mode in PHASED_MODES:  # the decoder's order (spec sections 7.5, 7.6)
            order = phased_order(shape, t.row_period)
            coded, means, stds = symbols.ravel()[order], means.ravel()[order], stds.ravel()[order]
        elif (order := coding_order(shape, t.row_period)) is not None:  # the decoder's order (spec section 7.2)
            coded, means, stds = symbols[order].ravel(), means[order], stds[order]
    else:
        means, stds = model_grid(t)
    if mask is not None:
        means, stds = means[mask], stds[mask]
    laplace = t.model_mode in LAPLACE_MODES
    t.words = gaussian_encode(coded, t.sym_min, t.sym_max, means.ravel(), stds.ravel(), laplace)
    return ExportedTensor(t, values_of(t, kept, mask))


def without_costly_pairs(
    t: CodedTensor, symbols: np.ndarray, ctx: np.ndarray, pred: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """A compact table's (means, stds) with the pairs left out (mean 0, std 1: spec section 7.7) whose symbols
    (`ctx` their contexts, `pred` model mode 6's predictions) take fewer bits under (0, 1) than under the pair
    plus the pair's own bits in the table (16, and 16 more for each escaped value)."""
    means, stds = t.means.copy(), t.stds.copy()
    channels = t.shape[1]
    group = (np.asarray(ctx) * channels + np.arange(channels).reshape(1, channels, 1, 1)).ravel()
    y = torch.from_numpy(symbols.astype(np.float64).ravel())
    bits = laplace_bits if t.model_mode in LAPLACE_MODES else gaussian_bits
    offset = 0.0 if pred is None else np.asarray(pred, np.float32).ravel()

    def per_group(m: np.ndarray, s: np.ndarray) -> np.ndarray:
        loc = torch.from_numpy(np.asarray(m[group] + offset, np.float64))
        scale = torch.from_numpy(np.asarray(s[group], np.float64))
        each = bits(y, loc, scale, t.sym_min, t.sym_max, reduce=False).numpy()
        return np.bincount(group, each, minlength=len(means))

    stored = per_group(means, stds)
    default = per_group(np.zeros_like(means), np.ones_like(stds))
    present = ~((means == 0) & (stds == 1))
    escapes = (~_compact_mean(means)).astype(int) + (stds > compact_stds()[-1])
    drop = present & (default <= stored + 16 + 16 * escapes)
    means[drop], stds[drop] = 0, 1
    return means, stds


def _compact_mean(means: np.ndarray) -> np.ndarray:
    """Whether each mean has a compact code (a multiple of 1/16 within +-127/16: spec section 7.7)."""
    scaled = means * MEAN_UNIT
    return (scaled == np.round(scaled)) & (np.abs(scaled) <= 127)


def quantize_uniform(
    spec: ParamSpec, w: np.ndarray, bits: int = 8, mask: np.ndarray | None = None, flat: bool = False
) -> ExportedTensor:
    """`w` quantised uniformly to signed `bits`-bit symbols with a float32 step per channel (max-abs
    scaling, as HiNeRV's code; output channels of conv weights, axis 1 of grids, one step for biases),
    pruned where `mask` is False, range-coded with one Gaussian of the symbols' statistics (or, flat, the
    stand-in for fixed-length coding: see code_symbols)."""
    w = np.asarray(w, np.float32)
    if mask is not None:
        w = np.where(mask, w, np.float32(0))
    levels = (1 << (bits - 1)) - 1
    axis = None if w.ndim == 1 else 0 if spec.role is Role.CONV_WEIGHT else 1
    if axis is None:
        peak = np.abs(w).max(keepdims=True).reshape(1)
    else:
        peak = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    steps = np.where(peak > 0, peak / levels, 1.0).astype(np.float32)
    plan = CodingPlan(STEP_SCALAR if axis is None else STEP_PER_AXIS, axis or 0, MODEL_SCALAR, 0)
    t = CodedTensor(spec.name, tuple(w.shape), step_mode=plan.step_mode, step_axis=plan.step_axis, steps=steps)
    symbols = np.clip(np.rint(w / element_steps(t).numpy()), -levels, levels).astype(np.int32)
    return code_symbols(spec, symbols, steps, mask, plan, levels if flat else 0)


def float32_tensor(name: str, w: np.ndarray) -> CodedTensor:
    """A tensor stored as plain float32 values (no quantisation)."""
    w = np.asarray(w, np.float32)
    return CodedTensor(name, tuple(w.shape), coding=CODING_FLOAT32, values=w.ravel().copy())


def segment_message(tensors: list[CodedTensor]) -> np.ndarray:
    """The one range-coded message of a segment's TNSL chunk (bitstream_spec.md section 7.9): every quantised
    tensor's mask, then its symbols, in tensor order, under the models its own words are coded with (tensors
    read from a TNSL chunk: theirs)."""
    shared = shared_message(tensors)
    if shared is not None:
        return shared
    writer = MessageWriter()
    decode_segment(tensors, writer.reading)
    return writer.words()


def split_message(tensors: list[CodedTensor]) -> list[CodedTensor]:
    """The tensors of a TNSL segment with words (and mask words) of their own in place of the shared message
    (the inverse of segment_message): each mask and each tensor's symbols coded again alone."""
    message = shared_message(tensors)
    if message is None:
        return tensors
    shared, pieces = SymbolReader(message), []

    def source_of(_words):
        pieces.append(MessageWriter().reading(shared))
        return pieces[-1]

    decode_segment(tensors, source_of)
    out, it = [], iter(pieces)
    for t in tensors:
        if t.coding == CODING_FLOAT32:
            out.append(replace(t, message=None))
            continue
        mask_words = next(it).words() if t.mask_mode == MASK_BERNOULLI else None
        out.append(replace(t, mask_words=mask_words, words=next(it).words(), message=None))
    return out
