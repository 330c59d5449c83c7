"""The .mvinr container: chunk framing, headers, coded tensors, whole-stream reading and writing."""

from mvcodec.bitstream.headers import SegmentHeader, SequenceHeader
from mvcodec.bitstream.stream import (
    SegmentData,
    SegmentRef,
    StreamIndex,
    parameter_hash,
    read_index,
    read_segment_tensors,
    write_stream,
)
from mvcodec.bitstream.syntax import SIGNATURE, VERSION
from mvcodec.bitstream.tensor import CodedTensor

__all__ = [
    "SIGNATURE",
    "VERSION",
    "CodedTensor",
    "SegmentData",
    "SegmentHeader",
    "SegmentRef",
    "SequenceHeader",
    "StreamIndex",
    "parameter_hash",
    "read_index",
    "read_segment_tensors",
    "write_stream",
]
