"""The coded-tensor chunk (TNSR): shape, quantisation steps, pruning mask, entropy model, range-coded words."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mvcodec.bitstream.syntax import ByteReader, ByteWriter
from mvcodec.errors import UnknownCriticalChunk

MAX_NDIM = 6
MAX_ELEMENTS = 1 << 28
MAX_SYMBOL = 1 << 20
STEP_RANGE = (2.0**-40, 2.0**40)
MEAN_LIMIT = 2.0**21
STD_RANGE = (2.0**-16, 2.0**21)

CODING_FLOAT32, CODING_QUANTISED = 0, 1
STEP_SCALAR, STEP_PER_AXIS, STEP_ROW_COLUMN = 0, 1, 2
MASK_NONE, MASK_BERNOULLI = 0, 1
MODEL_SCALAR, MODEL_PER_AXIS, MODEL_CONTEXT, MODEL_ARM, MODEL_LAPLACE, MODEL_PHASED, MODEL_PREDICTED = range(7)
MODEL_MODES = (MODEL_SCALAR, MODEL_PER_AXIS, MODEL_CONTEXT, MODEL_ARM, MODEL_LAPLACE, MODEL_PHASED, MODEL_PREDICTED)
# the latent-grid modes: a coarse_ref and a row_period (mode 4: mode 2's contexts, each a Laplace; mode 5: mode
# 2's contexts refined by the decoded neighbours in the same row, decoded in phases; mode 6: mode 5's order and
# contexts, each a Laplace located at the median of the decoded neighbours)
LATENT_MODES = (MODEL_CONTEXT, MODEL_ARM, MODEL_LAPLACE, MODEL_PHASED, MODEL_PREDICTED)
# a distribution per context and channel (7.2)
CONTEXT_MODES = (MODEL_CONTEXT, MODEL_LAPLACE, MODEL_PHASED, MODEL_PREDICTED)
PHASED_MODES = (MODEL_PHASED, MODEL_PREDICTED)  # decoded in sub-lattices, their models stored as bfloat16
LAPLACE_MODES = (MODEL_LAPLACE, MODEL_PREDICTED)  # Laplace distributions (location, scale) in place of Gaussians
NUM_CONTEXTS = 9  # model_mode 2: Gaussians per channel, one per context (mvcodec/compress/context.py)
PHASED_CONTEXTS = 36  # model_mode 5: mode 2's 9, times 4 neighbour classes (s in 0..3, section 7.5)
PREDICTED_CONTEXTS = 12  # model_mode 6: the previous row's 3 classes, times the 4 neighbour classes (section 7.6)
NO_REF = 0xFFFF  # model_mode 2: no coarser tensor
STEPS_FLOAT32, STEPS_BFLOAT16 = 0, 1
# how modes 5 and 6 store their pairs: bfloat16 pairs, or the compact table of section 7.7 (bit 7 of model_mode)
TABLE_BFLOAT16, TABLE_COMPACT = 0, 1
COMPACT_FLAG = 0x80
MEAN_UNIT = 16  # a compact mean code a is the mean a / 16
MEAN_ESCAPE, STD_ESCAPE = -128, 255  # codes whose mean (std) follows as a bfloat16
ARM_INPUTS, ARM_OUTPUTS, ARM_MAX_HIDDEN = 14, 2, 32  # model_mode 3's network (section 7.3)


def context_count(mode: int) -> int:
    """The contexts of a context mode (2, 4, 5 or 6): Gaussians (Laplace distributions) per channel."""
    return {MODEL_PHASED: PHASED_CONTEXTS, MODEL_PREDICTED: PREDICTED_CONTEXTS}.get(mode, NUM_CONTEXTS)


def arm_layer_shapes(hidden: int) -> list[tuple[int, ...]]:
    """The shapes of model_mode 3's six network tensors (weight, bias of each of three layers), in order."""
    i, o = ARM_INPUTS, ARM_OUTPUTS
    return [(hidden, i), (hidden,), (hidden, hidden), (hidden,), (o, hidden), (o,)]


def bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """The upper 16 bits of float32 values that bfloat16 represents exactly (ValueError otherwise)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
    if (bits & 0xFFFF).any():
        raise ValueError("values stored as bfloat16 are not bfloat16 values")
    return (bits >> 16).astype(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


@functools.cache
def compact_stds() -> np.ndarray:
    """The 255 standard deviations (Laplace scales) of compact std codes 0..254 (section 7.7): binary32 0.1
    times (16 + b mod 16) 2^(b div 16 - 4), one binary32 product each, rising from 0.1 to 6144 (computed once,
    read-only)."""
    b = np.arange(STD_ESCAPE)
    table = np.float32(0.1) * ((16 + b % 16) * np.exp2(b // 16 - 4)).astype(np.float32)
    table.setflags(write=False)
    return table


def compact_table_bytes(means: np.ndarray, stds: np.ndarray) -> bytes:
    """Section 7.7's table of (mean, std) pairs: a presence bitmap (a pair (0, 1) is left out), then the
    present pairs' mean codes, std codes, escaped means and escaped stds. ValueError for a value the table
    cannot hold (a mean neither a multiple of 1/16 in +-127/16 nor a bfloat16, a std neither a code's nor a
    bfloat16)."""
    means, stds = np.asarray(means, np.float32), np.asarray(stds, np.float32)
    present = ~((means == 0) & (stds == 1))
    m, s = means[present], stds[present]
    scaled = m * MEAN_UNIT
    coded = (scaled == np.round(scaled)) & (np.abs(scaled) <= 127)
    mean_codes = np.where(coded, scaled, MEAN_ESCAPE).astype(np.int8)
    table = compact_stds()
    at = np.minimum(np.searchsorted(table, s), len(table) - 1)
    found = table[at] == s
    std_codes = np.where(found, at, STD_ESCAPE).astype(np.uint8)
    parts = [
        np.packbits(present, bitorder="little").tobytes(),
        mean_codes.tobytes(),
        std_codes.tobytes(),
        bfloat16_bits(m[~coded]).astype("<u2").tobytes(),
        bfloat16_bits(s[~found]).astype("<u2").tobytes(),
    ]
    return b"".join(parts)


def read_compact_table(r: ByteReader, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds), float32, of a section 7.7 table of n pairs."""
    bitmap = np.frombuffer(r.raw((n + 7) // 8), np.uint8)
    present = np.unpackbits(bitmap, count=n, bitorder="little").astype(bool)
    r.check(not np.unpackbits(bitmap, bitorder="little")[n:].any(), "a presence bit set past the table's pairs")
    k = int(present.sum())
    mean_codes, std_codes = r.array("<i1", k), r.array("<u1", k)
    means, stds = np.zeros(n, np.float32), np.ones(n, np.float32)
    m = mean_codes.astype(np.float32) / MEAN_UNIT
    escaped = mean_codes == MEAN_ESCAPE
    m[escaped] = from_bfloat16_bits(r.array("<u2", int(escaped.sum())))
    table = compact_stds()
    s = table[np.minimum(std_codes, STD_ESCAPE - 1)]
    escaped = std_codes == STD_ESCAPE
    s[escaped] = from_bfloat16_bits(r.array("<u2", int(escaped.sum())))
    means[present], stds[present] = m, s
    return means, stds


@dataclass
class CodedTensor:
    """One parameter tensor as stored: either float32 values, or quantised symbols and their coding."""

    name: str
    shape: tuple[int, ...]
    coding: int = CODING_QUANTISED
    values: np.ndarray | None = None  # coding 0: float32 values in C order
    step_mode: int = STEP_SCALAR
    step_axis: int = 0
    step_format: int = STEPS_FLOAT32  # how the steps are stored: float32, or bfloat16 (their upper 16 bits)
    steps: np.ndarray | None = None  # float32; step_mode 2: the row steps then the column steps
    mask_mode: int = MASK_NONE
    p_keep: float = 1.0  # float32 probability that a weight is kept (mask_mode 1)
    mask_words: np.ndarray | None = None  # uint32 range-coded mask (mask_mode 1)
    sym_min: int = 0
    sym_max: int = 0
    model_mode: int = MODEL_SCALAR
    model_axis: int = 0
    coarse_ref: int = NO_REF  # model_mode 2: index in the segment of the coarser tensor whose symbols are context
    row_period: int = 0  # model_mode 2: rows n with n % row_period != 0 have row n - 1 as context (0: none do)
    arm_ref: int = NO_REF  # model_mode 3: index in the segment of the first of the entropy model's six tensors
    means: np.ndarray | None = None  # float32 Gaussian means, one per model
    stds: np.ndarray | None = None  # float32 Gaussian standard deviations (model_modes 5, 6: bfloat16 values)
    table_format: int = TABLE_BFLOAT16  # model_modes 5, 6: bfloat16 pairs, or the compact table (section 7.7)
    words: np.ndarray | None = None  # uint32 range-coded symbols (None in a TNSL chunk: they are in `message`)
    # TNSL (section 7.9): the segment's one range-coded message, shared by its tensors, which holds this
    # tensor's mask and symbols after those of the tensors before it
    message: np.ndarray | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def group_count(self, mode: int, axis: int) -> int:
        """Number of steps (or Gaussians of model modes 0 and 1) a mode implies: 1, shape[axis], or rows +
        columns."""
        if mode == STEP_SCALAR:
            return 1
        if mode == STEP_PER_AXIS:
            return self.shape[axis]
        return self.shape[0] + self.shape[1]

    def model_count(self) -> int:
        """Number of Gaussians the entropy model mode implies."""
        if self.model_mode in CONTEXT_MODES:
            return context_count(self.model_mode) * self.shape[self.model_axis]
        if self.model_mode == MODEL_ARM:
            return 0
        return self.group_count(self.model_mode, self.model_axis)

    def to_bytes(self, implied: bool = False) -> bytes:
        """The TNSR payload, or with `implied` the TNSC payload: without the name and shape, which are those
        section 10 gives the tensor's position (section 7.8)."""
        w = ByteWriter()
        if not implied:
            name = self.name.encode("ascii")
            w.u8(len(name))
            w.raw(name)
            w.u8(len(self.shape))
            for d in self.shape:
                w.u32(d)
        self.write_fields(w)
        return w.bytes()

    def lean_bytes(self) -> bytes:
        """The tensor's fields in a TNSL payload (section 7.9): those of a TNSC without the counts the layout
        implies, and without its words, which go into the segment's one message."""
        w = ByteWriter()
        self.write_fields(w, lean=True)
        return w.bytes()

    def write_fields(self, w: ByteWriter, lean: bool = False) -> None:
        """The fields from `coding` on (read_fields). ValueError for a tensor whose symbols are in its segment's
        message (in a TNSC or TNSR: split_message first), and in a TNSL for a field it leaves out that differs
        from the value a reader implies."""
        if lean:
            self._check_implied()
        elif self.coding != CODING_FLOAT32 and (
            self.words is None or (self.mask_mode == MASK_BERNOULLI and self.mask_words is None)
        ):
            raise ValueError(f"{self.name}: its symbols are in its segment's message (split_message first)")
        w.u8(self.coding)
        if self.coding == CODING_FLOAT32:
            w.array(self.values, "<f4")
            return
        if lean:
            w.u8(self.step_mode | self.step_format << 2 | self.mask_mode << 3)
            if self.step_mode == STEP_PER_AXIS:
                w.u8(self.step_axis)
        else:
            w.u8(self.step_mode)
            w.u8(self.step_axis)
            w.u8(self.step_format)
            w.u32(len(self.steps))
        if self.step_format == STEPS_BFLOAT16:
            w.array(bfloat16_bits(self.steps), "<u2")
        else:
            w.array(self.steps, "<f4")
        if not lean:
            w.u8(self.mask_mode)
        if self.mask_mode == MASK_BERNOULLI:
            w.array(np.float32(self.p_keep), "<f4")
            if not lean:
                w.u32(len(self.mask_words))
                w.array(self.mask_words, "<u4")
        if lean:
            w.vs(self.sym_min)
            w.vs(self.sym_max)
        else:
            w.i32(self.sym_min)
            w.i32(self.sym_max)
        compact = self.table_format == TABLE_COMPACT
        if compact and self.model_mode not in PHASED_MODES:
            raise ValueError(f"{self.name}: a compact table in model mode {self.model_mode}")
        w.u8(self.model_mode | (COMPACT_FLAG if compact else 0))
        if not lean or self.model_mode == MODEL_PER_AXIS:
            w.u8(self.model_axis)
        if self.model_mode in LATENT_MODES:
            if lean:
                w.vu(0 if self.coarse_ref == NO_REF else self.coarse_ref + 1)
                w.vu(self.row_period)
            else:
                w.u16(self.coarse_ref)
                w.u32(self.row_period)
        if self.model_mode == MODEL_ARM:
            (w.vu if lean else w.u16)(self.arm_ref)
        if not lean:
            w.u32(len(self.means))
        if compact:  # section 7.7
            w.raw(compact_table_bytes(self.means, self.stds))
        elif self.model_mode in PHASED_MODES:  # bfloat16 (sections 7.5, 7.6)
            w.array(bfloat16_bits(self.means), "<u2")
            w.array(bfloat16_bits(self.stds), "<u2")
        else:
            w.array(self.means, "<f4")
            w.array(self.stds, "<f4")
        if not lean:
            w.u32(len(self.words))
            w.array(self.words, "<u4")

    def _check_implied(self) -> None:
        """ValueError where a field a TNSL entry leaves out is not the value its reader implies (section 7.9)."""
        if self.coding == CODING_FLOAT32:
            return
        implied_model_axis = {MODEL_SCALAR: 0, MODEL_PER_AXIS: self.model_axis}.get(self.model_mode, 1)
        if (
            self.step_mode not in (STEP_SCALAR, STEP_PER_AXIS, STEP_ROW_COLUMN)
            or self.step_format not in (STEPS_FLOAT32, STEPS_BFLOAT16)
            or self.mask_mode not in (MASK_NONE, MASK_BERNOULLI)
            or (self.step_mode != STEP_PER_AXIS and self.step_axis != 0)
            or self.model_axis != implied_model_axis
            or len(self.steps) != self.group_count(self.step_mode, self.step_axis)
            or len(self.means) != self.model_count()
        ):
            raise ValueError(f"{self.name}: a field a TNSL entry leaves out is not the value its reader implies")

    @classmethod
    def parse(cls, payload: bytes, implied: tuple[str, tuple[int, ...]] | None = None) -> CodedTensor:
        """Parse and validate a TNSR payload, or given the `implied` (name, shape) of its position a TNSC
        payload, which has neither (every count against what is left and the limits)."""
        if implied is None:
            r = ByteReader(payload, "TNSR")
            name = r.raw(r.u8())
            r.check(
                name.isascii() and name.replace(b".", b"").replace(b"_", b"").isalnum(), f"bad tensor name {name!r}"
            )
            ndim = r.u8()
            r.check(1 <= ndim <= MAX_NDIM, f"{ndim} dimensions, must be 1 to {MAX_NDIM}")
            shape = tuple(r.u32() for _ in range(ndim))
            r.check(all(d >= 1 for d in shape) and math.prod(shape) <= MAX_ELEMENTS, f"shape {shape} is out of range")
            name = name.decode("ascii")
        else:
            r = ByteReader(payload, "TNSC")
            name, shape = implied
            ndim = len(shape)
            r.check(1 <= ndim <= MAX_NDIM and math.prod(shape) <= MAX_ELEMENTS, f"shape {shape} is out of range")
        t = cls.read_fields(r, name, shape)
        r.end()
        return t

    @classmethod
    def read_fields(cls, r: ByteReader, name: str, shape: tuple[int, ...], lean: bool = False) -> CodedTensor:
        """The fields from `coding` on of a TNSR or TNSC payload, or with `lean` of one tensor of a TNSL
        payload (section 7.9: no counts the layout implies, no words), each checked; `r` is left after them,
        its errors naming the tensor."""
        ndim = len(shape)
        t = cls(name, shape, coding=r.u8())
        r.ctype = f"{r.ctype} {t.name}"
        if t.coding == CODING_FLOAT32:
            t.values = r.array("<f4", t.numel)
            r.check(bool(np.isfinite(t.values).all()), "values are not all finite")
            return t
        r.check(t.coding == CODING_QUANTISED, f"coding {t.coding} is not 0 or 1")
        if lean:
            flags = r.u8()
            r.check(flags < 16, f"tensor flags 0x{flags:02x} set a reserved bit")
            t.step_mode, t.step_format, t.mask_mode = flags & 3, flags >> 2 & 1, flags >> 3 & 1
            t.step_axis = r.u8() if t.step_mode == STEP_PER_AXIS else 0
        else:
            t.step_mode, t.step_axis = r.u8(), r.u8()
        r.check(t.step_mode in (STEP_SCALAR, STEP_PER_AXIS, STEP_ROW_COLUMN), f"step mode {t.step_mode}")
        r.check(t.step_axis < ndim, f"step axis {t.step_axis} of a {ndim}-d tensor")
        r.check(t.step_mode != STEP_ROW_COLUMN or ndim >= 2, "row/column steps on a 1-d tensor")
        r.check(
            t.step_mode == STEP_PER_AXIS or t.step_axis == 0,
            f"step axis {t.step_axis} is not 0 in step mode {t.step_mode}",
        )
        if not lean:
            t.step_format = r.u8()
        r.check(t.step_format in (STEPS_FLOAT32, STEPS_BFLOAT16), f"step format {t.step_format}")
        n = t.group_count(t.step_mode, t.step_axis)
        if not lean:
            count = r.u32()
            r.check(count == n, f"{count} steps where the mode implies another count")
        t.steps = from_bfloat16_bits(r.array("<u2", n)) if t.step_format else r.array("<f4", n)
        r.check(bool(((t.steps >= STEP_RANGE[0]) & (t.steps <= STEP_RANGE[1])).all()), "a step is out of range")
        if not lean:
            t.mask_mode = r.u8()
        r.check(t.mask_mode in (MASK_NONE, MASK_BERNOULLI), f"mask mode {t.mask_mode}")
        if t.mask_mode == MASK_BERNOULLI:
            t.p_keep = float(r.array("<f4", 1)[0])
            r.check(0.0 < t.p_keep < 1.0, f"mask probability {t.p_keep} is not in (0, 1)")
            if not lean:
                t.mask_words = r.array("<u4", r.u32())
        t.sym_min, t.sym_max = (r.vs(), r.vs()) if lean else (r.i32(), r.i32())
        r.check(-MAX_SYMBOL <= t.sym_min < t.sym_max <= MAX_SYMBOL, f"symbol range {t.sym_min}..{t.sym_max}")
        mode = r.u8()
        t.model_mode = mode & ~COMPACT_FLAG if (mode & ~COMPACT_FLAG) in PHASED_MODES else mode
        if t.model_mode not in MODEL_MODES:
            raise UnknownCriticalChunk(
                f"chunk {r.ctype}: entropy model mode {mode} is not known to this decoder: the stream needs a newer "
                f"decoder (model_mode byte 0x{mode:02x})"
            )
        t.table_format = TABLE_COMPACT if mode != t.model_mode else TABLE_BFLOAT16
        if not lean:
            t.model_axis = r.u8()
        elif t.model_mode == MODEL_PER_AXIS:
            t.model_axis = r.u8()
        else:  # implied: 0 for one model, 1 (the channels) for the latent modes
            t.model_axis = 0 if t.model_mode == MODEL_SCALAR else 1
        r.check(t.model_axis < ndim, f"entropy model axis {t.model_axis} of a {ndim}-d tensor")
        r.check(
            t.model_mode != MODEL_SCALAR or t.model_axis == 0, f"entropy model axis {t.model_axis} is not 0 in mode 0"
        )
        if t.model_mode in LATENT_MODES:
            r.check(ndim == 4 and t.model_axis == 1, "context model on other than a 4-d tensor by axis 1")
            r.check(t.mask_mode == MASK_NONE, "context model on a pruned tensor")
            if lean:
                ref = r.vu()
                r.check(ref <= NO_REF, f"coarse reference {ref} is out of range")
                t.coarse_ref, t.row_period = (ref - 1 if ref else NO_REF), r.vu()
            else:
                t.coarse_ref, t.row_period = r.u16(), r.u32()
            r.check(t.row_period == 0 or shape[0] % t.row_period == 0, f"row period {t.row_period} of {shape[0]} rows")
            r.check(t.model_mode != MODEL_PREDICTED or t.coarse_ref == NO_REF, "model mode 6 with a coarser tensor")
        if t.model_mode == MODEL_ARM:
            t.arm_ref = r.vu() if lean else r.u16()
            r.check(t.arm_ref < NO_REF, "an autoregressive model without its network")
        n = t.model_count()
        if not lean:
            count = r.u32()
            r.check(count == n, f"{count} model parameter pairs where the mode implies another count")
        if t.table_format == TABLE_COMPACT:
            r.check(n <= 8 * r.remaining, f"{n} model parameter pairs do not fit in the {r.remaining} bytes left")
            t.means, t.stds = read_compact_table(r, n)
        elif t.model_mode in PHASED_MODES:
            t.means, t.stds = (from_bfloat16_bits(r.array("<u2", n)) for _ in range(2))
        else:
            t.means, t.stds = r.array("<f4", n), r.array("<f4", n)
        r.check(bool((np.abs(t.means) <= MEAN_LIMIT).all()), "a model mean (or Laplace location) is out of range")
        r.check(
            bool(((t.stds >= STD_RANGE[0]) & (t.stds <= STD_RANGE[1])).all()),
            "a model std (or Laplace scale) is out of range",
        )
        if not lean:
            t.words = r.array("<u4", r.u32())
        return t
