"""Whole streams: writing the chunk sequence, and reading its structure with every rule of the spec checked.

Chunk order (bitstream_spec.md, "Stream structure"):

    SEQH, then per segment: SEGM (ARCH or ARCX) (TNSR or TNSC)... or one TNSL, PHSH, then MEND
    ancillary chunks (enci, unknown lower-case types) may appear anywhere after SEQH and before MEND.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from mvcodec.bitstream.headers import (
    SegmentHeader,
    SequenceHeader,
    arch_chunk,
    hash_bytes,
    implied_tensors,
    info_bytes,
    parse_arch,
    parse_hash,
    parse_info,
)
from mvcodec.bitstream.syntax import (
    ByteReader,
    ChunkRef,
    chunk_bytes,
    file_header,
    read_file_header,
    read_payload,
    scan_chunks,
)
from mvcodec.bitstream.tensor import (
    ARM_MAX_HIDDEN,
    CODING_FLOAT32,
    LATENT_MODES,
    MASK_NONE,
    MAX_ELEMENTS,
    MAX_NDIM,
    MODEL_ARM,
    NO_REF,
    CodedTensor,
    arm_layer_shapes,
)
from mvcodec.errors import InvalidStream, UnknownCriticalChunk
from mvcodec.model.base import ParamSpec
from mvcodec.model.registry import arch_of

KNOWN_CRITICAL = {"SEQH", "SEGM", "ARCH", "ARCX", "TNSR", "TNSC", "TNSL", "PHSH", "MEND"}
TENSOR_CHUNKS = ("TNSR", "TNSC")  # a tensor with its name and shape, or with those its position implies
LEAN_CHUNK = "TNSL"  # every tensor of a segment, their symbols in one message (section 7.9)


def layout_of(cfg) -> list[ParamSpec]:
    """The parameter tensors a segment's architecture has, in stream order."""
    return arch_of(cfg).layout(cfg)


def parameter_hash(arrays: Iterable[np.ndarray]) -> bytes:
    """SHA-256 over the tensors' float32 values, little-endian, C order, concatenated in stream order."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return h.digest()


@dataclass
class SegmentData:
    """A segment as the encoder writes it."""

    header: SegmentHeader
    config: object  # a registered architecture's config
    tensors: list[CodedTensor]
    digest: bytes
    # the tensors' symbols (and masks) in one range-coded message: the segment's tensors go in one TNSL chunk
    # (section 7.9) rather than a chunk each (None)
    message: np.ndarray | None = None


def lean_payload(tensors: Sequence[CodedTensor], message: np.ndarray) -> bytes:
    """A TNSL payload: each tensor's fields without the counts the layout implies, then the segment's one
    range-coded message (section 7.9)."""
    return b"".join(t.lean_bytes() for t in tensors) + np.ascontiguousarray(message, "<u4").tobytes()


def write_stream(
    f: BinaryIO,
    seq: SequenceHeader,
    segments: Sequence[SegmentData],
    info: dict | None = None,
    implied: bool | None = None,
) -> int:
    """Write a complete stream; returns its size in bytes. The version is the lowest that has every chunk
    used: 1.0 where every segment is MV-MGINR (ARCH) in TNSR chunks and chroma is sited left or centre, 1.1
    with an ARCX or TNSL chunk or top-left chroma. A segment with a `message` goes in one TNSL chunk; the
    tensors of the other ARCX segments go in TNSC chunks (their names and shapes implied by the layout, which
    they must follow in both), the others' in TNSR; `implied` False writes every tensor of a segment without a
    message as TNSR (as mvenc did before BENCHMARKS.md's experiment 39)."""
    archs = [arch_chunk(seg.config) for seg in segments]
    newer = (
        any(ctype == "ARCX" for ctype, _ in archs)
        or any(seg.message is not None for seg in segments)
        or seq.color.chroma_siting == "top-left"
    )
    version = (1, 1) if newer else (1, 0)
    parts = [file_header(version), chunk_bytes("SEQH", seq.to_bytes())]
    if info is not None:
        parts.append(chunk_bytes("enci", info_bytes(info)))
    for seg, (ctype, payload) in zip(segments, archs, strict=True):
        parts.append(chunk_bytes("SEGM", seg.header.to_bytes()))
        parts.append(chunk_bytes(ctype, payload))
        tnsc = implied_tensors(seg.config) and implied is not False
        lean = seg.message is not None
        if (tnsc or lean) and [(t.name, tuple(t.shape)) for t in seg.tensors] != [
            (p.name, tuple(p.shape)) for p in layout_of(seg.config)
        ]:  # a reader takes each tensor's name and shape from its place
            raise ValueError(f"segment {seg.header.index}: the tensors are not those of the layout, in its order")
        if lean:
            parts.append(chunk_bytes(LEAN_CHUNK, lean_payload(seg.tensors, seg.message)))
        else:
            parts += [chunk_bytes("TNSC" if tnsc else "TNSR", t.to_bytes(tnsc)) for t in seg.tensors]
        parts.append(chunk_bytes("PHSH", hash_bytes(seg.digest)))
    parts.append(chunk_bytes("MEND", b""))
    data = b"".join(parts)
    f.write(data)
    return len(data)


@dataclass
class SegmentRef:
    """A segment as read: its header, model configuration, tensor chunks (payloads not yet read: one a
    tensor, or its one TNSL chunk) and hash."""

    header: SegmentHeader
    config: object
    tensors: list[ChunkRef] = field(default_factory=list)
    digest: bytes = b""

    @property
    def lean(self) -> bool:
        """Whether the segment's tensors are in one TNSL chunk."""
        return bool(self.tensors) and self.tensors[0].type == LEAN_CHUNK

    @property
    def frames(self) -> range:
        return range(self.header.first_frame, self.header.first_frame + self.header.frames)


@dataclass
class StreamIndex:
    """The structure of a stream: version, sequence header, segments, every chunk, encoder info."""

    version: tuple[int, int]
    size: int
    sequence: SequenceHeader
    segments: list[SegmentRef]
    chunks: list[ChunkRef]
    info: dict | None = None

    def segment_of(self, frame: int) -> int:
        """Index of the segment holding a frame."""
        for i, seg in enumerate(self.segments):
            if frame in seg.frames:
                return i
        raise IndexError(frame)


def read_index(f: BinaryIO) -> StreamIndex:
    """Read and check a stream's structure; tensor payloads are left for decoding (their CRC is checked then)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    version = read_file_header(f)
    chunks: list[ChunkRef] = []
    seq: SequenceHeader | None = None
    segments: list[SegmentRef] = []
    info = None
    state = "start"  # start -> (segment: arch -> tensors) -> between -> end
    for ref in scan_chunks(f, size):
        chunks.append(ref)
        if ref.type == "MEND":
            if state not in ("between",):
                raise InvalidStream(f"end chunk at byte {ref.offset - 8} comes before the stream is complete")
            if ref.length:
                raise InvalidStream("end chunk MEND has a payload")
            read_payload(f, ref)  # its CRC
            break
        if not ref.critical:
            if state == "start":
                raise InvalidStream(f"chunk {ref.type} comes before the sequence header SEQH")
            if ref.type == "enci":
                _expect(not any(c.type == "enci" for c in chunks[:-1]), ref, "a second encoder information chunk")
                info = parse_info(read_payload(f, ref))
            continue
        if ref.type not in KNOWN_CRITICAL:
            raise UnknownCriticalChunk(
                f"unknown critical chunk {ref.type!r} at byte {ref.offset - 8}: the stream needs a newer decoder"
            )
        if state == "start":
            if ref.type != "SEQH":
                raise InvalidStream(f"stream starts with chunk {ref.type}, not the sequence header SEQH")
            seq = SequenceHeader.parse(read_payload(f, ref))
            state = "between"
        elif ref.type == "SEGM":
            _expect(state == "between", ref, "a segment header inside a segment")
            head = SegmentHeader.parse(read_payload(f, ref))
            first = segments[-1].frames.stop if segments else 0
            _expect(head.index == len(segments), ref, f"segment index {head.index}, expected {len(segments)}")
            _expect(head.first_frame == first, ref, f"segment starts at frame {head.first_frame}, expected {first}")
            _expect(1 <= head.frames <= seq.frames - first, ref, f"segment of {head.frames} frames")
            _expect(len(segments) < seq.segments, ref, f"more segments than the {seq.segments} announced")
            segments.append(SegmentRef(head, None))  # type: ignore[arg-type]
            state = "arch"
        elif ref.type in ("ARCH", "ARCX"):
            _expect(state == "arch", ref, "an architecture chunk outside its place after SEGM")
            segments[-1].config = parse_arch(ref.type, read_payload(f, ref), seq, segments[-1].header)
            state = "tensors"
        elif ref.type in TENSOR_CHUNKS:
            _expect(state == "tensors", ref, "a tensor chunk outside a segment")
            seg = segments[-1]
            _expect(not seg.lean, ref, "a tensor chunk after the segment's TNSL chunk")
            _expect(len(seg.tensors) < len(layout_of(seg.config)), ref, "more tensors than the model has")
            seg.tensors.append(ref)
        elif ref.type == LEAN_CHUNK:
            _expect(state == "tensors", ref, "a TNSL chunk outside a segment")
            seg = segments[-1]
            _expect(not seg.tensors, ref, "a second TNSL chunk, or one after tensor chunks, in a segment")
            seg.tensors.append(ref)
        elif ref.type == "PHSH":
            _expect(state == "tensors", ref, "a parameter hash outside a segment")
            seg = segments[-1]
            n = len(layout_of(seg.config))
            _expect(
                seg.lean or len(seg.tensors) == n, ref, f"segment has {len(seg.tensors)} tensors, its model has {n}"
            )
            seg.digest = parse_hash(read_payload(f, ref))
            state = "between"
        else:
            _expect(False, ref, f"a second {ref.type} chunk")
    if len(segments) != seq.segments or segments[-1].frames.stop != seq.frames:
        raise InvalidStream(f"the segments do not cover the {seq.frames} frames in {seq.segments} segments")
    end = chunks[-1].offset + chunks[-1].length + 4
    if end != size:
        raise InvalidStream(f"{size - end} bytes of trailing data after the end chunk")
    return StreamIndex(version, size, seq, segments, chunks, info)


def _expect(ok: bool, ref: ChunkRef, message: str) -> None:
    if not ok:
        raise InvalidStream(f"chunk {ref.type} at byte {ref.offset - 8}: {message}")


def check_arm_tensors(tensors: list[CodedTensor], t: CodedTensor, i: int, segment: int) -> None:
    """A model_mode 3 tensor's network: six earlier tensors of the shapes section 7.3 gives."""
    a = t.arm_ref
    hidden = tensors[a].shape[0] if a + 5 < i else 0
    if not (1 <= hidden <= ARM_MAX_HIDDEN and [x.shape for x in tensors[a : a + 6]] == arm_layer_shapes(hidden)):
        raise InvalidStream(
            f"segment {segment}: tensor {t.name}'s entropy model refers to tensor {a}, which does not start six "
            "earlier tensors shaped as an entropy-model network"
        )


def read_segment_tensors(f: BinaryIO, seg: SegmentRef) -> list[CodedTensor]:
    """The coded tensors of a segment, each checked against the name and shape the model gives it."""
    out = _read_lean(f, seg) if seg.lean else _read_chunks(f, seg)
    _check_references(out, seg)
    return out


def _read_lean(f: BinaryIO, seg: SegmentRef) -> list[CodedTensor]:
    """A TNSL chunk's tensors (section 7.9), each holding the segment's message."""
    r = ByteReader(read_payload(f, seg.tensors[0]), LEAN_CHUNK)
    out = []
    for spec in layout_of(seg.config):
        r.ctype = LEAN_CHUNK
        shape = tuple(spec.shape)
        r.check(1 <= len(shape) <= MAX_NDIM and math.prod(shape) <= MAX_ELEMENTS, f"shape {shape} is out of range")
        out.append(CodedTensor.read_fields(r, spec.name, shape, lean=True))
    r.ctype = LEAN_CHUNK
    r.check(r.remaining % 4 == 0, f"the message's {r.remaining} bytes are not whole 32-bit words")
    message = r.array("<u4", r.remaining // 4)
    for t in out:
        t.message = message
    return out


def _read_chunks(f: BinaryIO, seg: SegmentRef) -> list[CodedTensor]:
    """The tensors of a segment's TNSR and TNSC chunks."""
    out = []
    for ref, spec in zip(seg.tensors, layout_of(seg.config), strict=True):
        implied = (spec.name, tuple(spec.shape)) if ref.type == "TNSC" else None
        t = CodedTensor.parse(read_payload(f, ref), implied)
        if t.name != spec.name or t.shape != spec.shape:
            raise InvalidStream(
                f"segment {seg.header.index}: tensor {t.name} {list(t.shape)} "
                f"where the model has {spec.name} {list(spec.shape)}"
            )
        out.append(t)
    return out


def _check_references(out: list[CodedTensor], seg: SegmentRef) -> None:
    """Each tensor's references (its entropy model's network, its coarser tensor) are to tensors that can be."""
    for i, t in enumerate(out):
        if t.coding != CODING_FLOAT32 and t.model_mode == MODEL_ARM:
            check_arm_tensors(out, t, i, seg.header.index)
            if t.row_period not in (0, seg.config.frames):  # its decoding time grows with the positions
                raise InvalidStream(
                    f"segment {seg.header.index}: tensor {t.name} has row period {t.row_period}, "
                    f"where model_mode 3 allows 0 or the segment's {seg.config.frames} frames"
                )
        if t.coding != CODING_FLOAT32 and t.model_mode in LATENT_MODES and t.coarse_ref != NO_REF:
            c = out[t.coarse_ref] if t.coarse_ref < i else None
            h, w = t.shape[2:]
            if (
                c is None
                or c.coding == CODING_FLOAT32
                or c.mask_mode != MASK_NONE
                or c.shape != (*t.shape[:2], -(-h // 2), -(-w // 2))
            ):
                raise InvalidStream(
                    f"segment {seg.header.index}: tensor {t.name}'s context refers to tensor {t.coarse_ref}, "
                    "which is not an earlier unpruned quantised tensor of half its size"
                )
