"""The sequence header (SEQH), segment header (SEGM), architecture (ARCH, ARCX), hash (PHSH) and info (enci)
chunks. The architectures' own fields are written and read by their registered modules (mvcodec/model)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction

from mvcodec.bitstream.syntax import ByteReader, ByteWriter
from mvcodec.color import ColorSpec
from mvcodec.errors import InvalidStream, UnknownCriticalChunk
from mvcodec.io.formats import PIX_FMTS, PixFmt, VideoFormat
from mvcodec.model.base import Shape
from mvcodec.model.registry import arch_of, by_id

MAX_VIEWS = 1024
MAX_FRAMES = 1 << 20
MAX_DIMENSION = 16384
MAX_PARAMS = 1 << 28  # 1 GiB of float32 parameters

# H.273 MatrixCoefficients and ChromaSampleLocType codes.
MATRIX_CODES = {"bt709": 1, "bt601": 6, "bt2020": 9}
MATRIX_NAMES = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020"}
SITING_CODES = {"left": 0, "center": 1, "top-left": 2}  # 2: format 1.1
SITING_NAMES = {v: k for k, v in SITING_CODES.items()}
PIX_FMT_BY_DEPTH = {p.bit_depth: p for p in PIX_FMTS.values()}
HASH_SHA256 = 1
MV_MGINR_ID = 0  # the architecture the ARCH chunk holds


def _check_view_name(r: ByteReader, name: str) -> None:
    bad = name in (".", "..") or any(c in name for c in "/\\:") or any(ord(c) < 32 or ord(c) == 127 for c in name)
    r.check(not bad, f"view name {name!r} is not usable as a file name")


@dataclass(frozen=True)
class SequenceHeader:
    """What the stream represents: views, frames, size, sample format, colour and frame rate."""

    view_names: tuple[str, ...]
    frames: int
    width: int
    height: int
    bit_depth: int
    color: ColorSpec
    fps: Fraction
    segments: int

    @property
    def views(self) -> int:
        return len(self.view_names)

    @property
    def pix_fmt(self) -> PixFmt:
        return PIX_FMT_BY_DEPTH[self.bit_depth]

    @property
    def fmt(self) -> VideoFormat:
        return VideoFormat(self.width, self.height, self.pix_fmt, self.fps)

    def to_bytes(self) -> bytes:
        w = ByteWriter()
        w.u16(self.views)
        w.u32(self.frames)
        w.u16(self.width)
        w.u16(self.height)
        w.u8(self.bit_depth)
        w.u8(1)  # chroma_format_idc: 4:2:0
        w.u8(MATRIX_CODES[self.color.matrix])
        w.u8(int(self.color.full_range))
        w.u8(SITING_CODES[self.color.chroma_siting])
        w.u8(0)  # reserved
        w.u32(self.fps.numerator)
        w.u32(self.fps.denominator)
        w.u32(self.segments)
        for name in self.view_names:
            data = name.encode("utf-8")
            w.u8(len(data))
            w.raw(data)
        return w.bytes()

    @classmethod
    def parse(cls, payload: bytes) -> SequenceHeader:
        r = ByteReader(payload, "SEQH")
        views, frames, width, height = r.u16(), r.u32(), r.u16(), r.u16()
        r.check(1 <= views <= MAX_VIEWS, f"views = {views}, must be 1 to {MAX_VIEWS}")
        r.check(1 <= frames <= MAX_FRAMES, f"frames = {frames}, must be 1 to {MAX_FRAMES}")
        for name, v in (("width", width), ("height", height)):
            r.check(2 <= v <= MAX_DIMENSION and v % 2 == 0, f"{name} = {v}, must be even, 2 to {MAX_DIMENSION}")
        bit_depth, chroma, matrix, full, siting, reserved = (r.u8() for _ in range(6))
        r.check(bit_depth in PIX_FMT_BY_DEPTH, f"bit depth {bit_depth} is not one of 8, 10, 12, 16")
        r.check(chroma == 1, f"chroma_format_idc {chroma} is not 1 (4:2:0)")
        r.check(matrix in MATRIX_NAMES, f"matrix_coefficients {matrix} is not 1, 5, 6 or 9")
        r.check(full in (0, 1), f"full_range {full} is not 0 or 1")
        r.check(siting in SITING_NAMES, f"chroma_sample_loc_type {siting} is not 0, 1 or 2")
        r.check(reserved == 0, "reserved byte is not 0")
        num, den, segments = r.u32(), r.u32(), r.u32()
        r.check(num > 0 and den > 0, f"frame rate {num}/{den} is not positive")
        r.check(1 <= segments <= frames, f"segments = {segments}, must be 1 to frames ({frames})")
        names = []
        for _ in range(views):
            n = r.u8()
            r.check(n > 0, "empty view name")
            name = r.text(n, "a view name")
            _check_view_name(r, name)
            names.append(name)
        r.check(len(set(names)) == len(names), "view names are not unique")
        r.end()
        color = ColorSpec(MATRIX_NAMES[matrix], bool(full), SITING_NAMES[siting])
        return cls(tuple(names), frames, width, height, bit_depth, color, Fraction(num, den), segments)


@dataclass(frozen=True)
class SegmentHeader:
    """A run of frames coded by one independent model."""

    index: int
    first_frame: int
    frames: int

    def to_bytes(self) -> bytes:
        w = ByteWriter()
        w.u32(self.index)
        w.u32(self.first_frame)
        w.u32(self.frames)
        return w.bytes()

    @classmethod
    def parse(cls, payload: bytes) -> SegmentHeader:
        r = ByteReader(payload, "SEGM")
        seg = cls(r.u32(), r.u32(), r.u32())
        r.end()
        return seg


def arch_chunk(cfg) -> tuple[str, bytes]:
    """The chunk type and payload of a segment's architecture: ARCH for MV-MGINR (id 0, format 1.0),
    ARCX (the u16 architecture id, then its config) for every other architecture (format 1.1)."""
    arch, w = arch_of(cfg), ByteWriter()
    if arch.id != MV_MGINR_ID:
        w.u16(arch.id)
    arch.config_bytes(cfg, w)
    return ("ARCH" if arch.id == MV_MGINR_ID else "ARCX"), w.bytes()


def implied_tensors(cfg) -> bool:
    """Whether a segment's tensors are written with their names and shapes implied by the layout, in one TNSL
    chunk by mvenc (or TNSC chunks; format 1.1, every architecture but MV-MGINR), rather than in TNSR chunks
    (format 1.0, MV-MGINR)."""
    return arch_of(cfg).id != MV_MGINR_ID


def parse_arch(ctype: str, payload: bytes, seq: SequenceHeader, seg: SegmentHeader):
    """The model configuration of an ARCH or ARCX payload, checked against the sequence and the segment;
    UnknownCriticalChunk (the stream needs a newer decoder) for an architecture id this decoder lacks."""
    r = ByteReader(payload, f"{ctype} of segment {seg.index}")
    arch = by_id(MV_MGINR_ID)
    if ctype == "ARCX":
        arch_id = r.u16()
        r.check(arch_id != MV_MGINR_ID, "architecture 0 (MV-MGINR) is coded in ARCH, not ARCX")
        arch = by_id(arch_id)
        if arch is None:
            raise UnknownCriticalChunk(
                f"chunk ARCX of segment {seg.index}: architecture id {arch_id} is not known to this decoder: "
                "the stream needs a newer decoder"
            )
    shape = Shape(seq.views, seg.frames, seq.height, seq.width)
    try:
        cfg = arch.parse_config(r, shape)
    except (ValueError, TypeError) as e:  # a config constructor's own check
        raise InvalidStream(f"chunk {r.ctype}: {e}") from None
    r.check(isinstance(cfg, arch.config_type), f"the {arch.name} module returned no {arch.config_type.__name__}")
    r.end()
    r.check(cfg.shape == shape, f"the {arch.name} config does not match the sequence and segment")
    params = arch.params(cfg)
    r.check(params <= MAX_PARAMS, f"{params} parameters, more than the limit of {MAX_PARAMS}")
    return cfg


def hash_bytes(digest: bytes) -> bytes:
    """The PHSH payload: hash type 1 (SHA-256) and the 32-byte digest."""
    return bytes([HASH_SHA256]) + digest


def parse_hash(payload: bytes) -> bytes:
    r = ByteReader(payload, "PHSH")
    r.check(r.u8() == HASH_SHA256, "hash type is not 1 (SHA-256)")
    digest = r.raw(32)
    r.end()
    return digest


def info_bytes(info: dict) -> bytes:
    """The enci payload: encoder information as UTF-8 JSON."""
    return json.dumps(info, sort_keys=True).encode("utf-8")


def parse_info(payload: bytes) -> dict | None:
    """Encoder information, or None where the ancillary chunk cannot be read (it is not needed to decode)."""
    try:
        info = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return info if isinstance(info, dict) else None
