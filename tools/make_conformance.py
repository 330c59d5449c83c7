"""Make the conformance streams in tests/conformance/ (run once per format version; the tests never re-encode).

Each positive stream exercises one feature; its directory holds stream.mvinr, md5.txt (per-view MD5 of the
raw output of the reference decoding path, in md5sum format, for `mvdec --check-md5`), expected.json
(the parameter hash of each segment and what the stream holds) and reference_output.npz (the reference
path's output planes, so that a platform whose float arithmetic differs can be held to 1 LSB). The
negative streams are damaged copies of the first one, each with the exit code mvdec must give.

    python tools/make_conformance.py tests/conformance
    python tools/make_conformance.py tests/conformance --only c11_pyramid   # one stream, the others kept
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import struct
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path
from unittest import mock

import click
import cv2
import numpy as np
import torch

from mvcodec.bitstream import (
    SegmentData,
    SegmentHeader,
    SequenceHeader,
    parameter_hash,
    read_index,
    write_stream,
)
from mvcodec.bitstream.stream import layout_of
from mvcodec.bitstream.syntax import FILE_HEADER_BYTES, SIGNATURE, chunk_bytes
from mvcodec.bitstream.tensor import (
    COMPACT_FLAG,
    MASK_BERNOULLI,
    MODEL_CONTEXT,
    MODEL_PER_AXIS,
    MODEL_PHASED,
    STEP_ROW_COLUMN,
    TABLE_COMPACT,
    CodedTensor,
    compact_table_bytes,
)
from mvcodec.color import ColorSpec
from mvcodec.compress.coding import float32_tensor, quantize_uniform, segment_message, symbol_range
from mvcodec.compress.decoding import decode_tensor, element_steps
from mvcodec.compress.gaussian import model_grid
from mvcodec.compress.qat import export_tensors
from mvcodec.compress.range_coding import gaussian_encode, mask_encode
from mvcodec.decoder import Decoder
from mvcodec.encoder.phases import TrainedSegment, run_phases
from mvcodec.encoder.plan import lambda_for_quality, plan_segments, segment_source
from mvcodec.encoder.recipe import Recipe, recipe
from mvcodec.io import RawWriter, VideoFormat, open_source, pix_fmt
from mvcodec.io.output import output_name
from mvcodec.io.raw import frame_bytes_of
from mvcodec.model import Shape, ablate
from mvcodec.model.registry import by_name

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data"
ARCH = by_name("mv-mginr")  # format 1.0 streams (the ARCH chunk); the ablations are MV-MGINR's


@dataclasses.dataclass
class Case:
    name: str
    description: str
    views: int = 2
    frames: int = 3
    width: int = 64
    height: int = 36
    pix_fmt: str = "yuv420p"
    params: int = 12_000
    segment_frames: int | None = None
    color: ColorSpec = ColorSpec()
    fps: Fraction = Fraction(30)
    view_names: tuple[str, ...] | None = None
    ablation: str | None = None
    coding: str = "pipeline"  # pipeline (mvenc's: pruning, learned bfloat16 steps, QAT), uniform8, tools
    arch: str = "mv-mginr"  # another registered architecture is trained and coded as mvenc does (pipeline)
    config: dict = dataclasses.field(default_factory=dict)  # its sizing's config with these fields replaced
    # class attributes of the architecture overridden while the stream is made (mvenc's coding of an earlier
    # version: e.g. phased_latents False for latent grids in model_mode 2, motion_phased False for motion in 4)
    arch_attrs: dict = dataclasses.field(default_factory=dict)
    tnsc: bool = True  # a format 1.1 segment's tensors in TNSC chunks (False: TNSR, as before experiment 39)
    lean: bool = False  # every segment's tensors in one TNSL chunk (section 7.9), as mvenc writes since exp. 43


COMPACT = "c17_pyramid_mc_compact"  # the negative streams' source of compact tables in TNSC chunks
LEAN = "c19_pyramid_mc_lean"  # and of a TNSL chunk
CASES = [
    Case(
        "c01_8bit",
        "8-bit, 2 views x 3 frames, 64x36; mvenc's coding: 40% pruning (Bernoulli masks), learned bfloat16 row x "
        "column / per-channel steps after QAT, per-channel Gaussians",
    ),
    Case("c02_10bit", "10-bit (yuv420p10le)", pix_fmt="yuv420p10le"),
    Case("c03_one_view", "a single view, 4 frames", views=1, frames=4),
    Case("c04_three_views", "an odd number of views (3)", views=3, frames=2),
    Case("c05_portrait", "non-16:9 portrait size 48x64", width=48, height=64, frames=2, params=24_000),
    Case("c06_two_segments", "5 frames in two segments (3 + 2)", frames=5, segment_frames=3, params=24_000),
    Case(
        "c07_coding_tools",
        "12-bit full-range BT.601 centre-sited, 30000/1001 fps, free view names, no integrated grid (c2 = 0); "
        "tensors coded with float32 biases, row x column steps, a Bernoulli pruning mask and per-axis Gaussians",
        pix_fmt="yuv420p12le",
        color=ColorSpec("bt601", True, "center"),
        fps=Fraction(30000, 1001),
        view_names=("cam left", "cam-right.2"),
        ablation="time_view_grid",
        coding="tools",
    ),
    Case("c08_16bit_no_time_view", "16-bit, no time/view grids (c1 = 0)", pix_fmt="yuv420p16le", ablation="time_view"),
    Case(
        "c10_uniform8",
        "8-bit uniform quantisation with a float32 step per channel and one Gaussian per tensor, no pruning",
        coding="uniform8",
    ),
    Case(
        "c11_pyramid",
        "MV-Pyramid (arch_id 1): 4 levels, 2 view channels and 1 view-and-frame channel a level from level 1, "
        "latents in model_mode 2 (contexts of the coarser level and the previous frame)",
        arch="mv-pyramid",
        config={"view_channels": 2, "frame_skip": 1},
        tnsc=False,  # TNSR chunks, as mvenc wrote them before experiment 39
    ),
    Case(
        "c12_pyramid_mc",
        "MV-Pyramid-MC (arch_id 2): 4 frames chained by 4x3 motion fields (model_mode 4), 10-bit",
        frames=4,
        pix_fmt="yuv420p10le",
        arch="mv-pyramid-mc",
        # its latent grids in model_mode 2, its motion in 4, as mvenc coded them before experiments 29 and 31
        arch_attrs={"phased_latents": False, "motion_phased": False},
        tnsc=False,  # TNSR chunks, as mvenc wrote them before experiment 39
    ),
    Case(
        "c13_pyramid_mc_arm",
        "MV-Pyramid-MC whose latent grids an entropy-model network of width 8 codes (model_mode 3), motion at "
        "the grid size of level 2",
        arch="mv-pyramid-mc",
        config={"arm_hidden": 8, "flow_level": 2},
        arch_attrs={"motion_phased": False},  # its motion in model_mode 4, as before experiment 31
        tnsc=False,  # TNSR chunks, as mvenc wrote them before experiment 39
    ),
    Case(
        "c14_pyramid_mc_phased",
        "MV-Pyramid-MC as mvenc codes it since BENCHMARKS.md's experiment 29: latent grids in model_mode 5 "
        "(contexts refined by decoded neighbours, seven sub-lattices), 3 frames, 4 views",
        frames=3,
        views=4,
        arch="mv-pyramid-mc",
        # its motion in model_mode 4, as before experiment 31; bfloat16 tables, as before experiment 39
        arch_attrs={"motion_phased": False, "compact_tables": False},
        tnsc=False,  # TNSR chunks, as mvenc wrote them before experiment 39
    ),
    Case(
        "c15_pyramid_mc_motion",
        "MV-Pyramid-MC as mvenc codes it since BENCHMARKS.md's experiment 31: motion fields in model_mode 6 "
        "(Laplace distributions located at the median of the decoded neighbours), 5 frames, 2 views at 128x72 "
        "(8x5 motion cells)",
        frames=5,
        width=128,
        height=72,
        params=48_000,
        arch="mv-pyramid-mc",
        arch_attrs={"compact_tables": False},  # bfloat16 tables, as before experiment 39
        tnsc=False,  # TNSR chunks, as mvenc wrote them before experiment 39
    ),
    Case(
        "c17_pyramid_mc_compact",
        "MV-Pyramid-MC as mvenc codes it since BENCHMARKS.md's experiment 39: tensors in TNSC chunks (names and "
        "shapes implied, section 7.8), the parameters of model_modes 5 and 6 in compact tables (section 7.7: "
        "contexts without symbols left out, 8-bit codes), 4 frames, 3 views at 96x54",
        frames=4,
        views=3,
        width=96,
        height=54,
        arch="mv-pyramid-mc",
    ),
    Case(
        "c18_hinerv",
        "MV-HiNeRV (arch_id 3): per-view base grids of 3 temporal levels, 3 blocks with per-view local grids "
        "(hierarchical encoding) and ConvNeXt layers, pruned conv weights with row x column steps, per-channel "
        "Gaussians; 3 views x 5 frames at 80x48, 8-bit, in TNSC chunks",
        views=3,
        frames=5,
        width=80,
        height=48,
        params=16_000,
        arch="mv-hinerv",
    ),
    Case(
        "c19_pyramid_mc_lean",
        "MV-Pyramid-MC as mvenc writes it since BENCHMARKS.md's experiment 43: the segment's tensors in one TNSL "
        "chunk (section 7.9: no counts the layout implies, varint fields, the symbols of every tensor in one "
        "range-coded message), compact tables, 4 frames, 3 views at 96x54",
        frames=4,
        views=3,
        width=96,
        height=54,
        arch="mv-pyramid-mc",
        lean=True,
    ),
    Case(
        "c20_coding_tools_lean",
        "c07's coding tools in TNSL chunks (section 7.9) in two segments (2 + 1 frames) of MV-MGINR: float32 "
        "biases (coding 0), row x column steps, Bernoulli pruning masks and per-axis Gaussians (model_axis "
        "stored), the masks and symbols of each segment in its one message",
        segment_frames=2,
        params=24_000,
        ablation="time_view_grid",
        coding="tools",
        lean=True,
    ),
]


def write_views(case: Case, folder: Path) -> list[Path]:
    """The bundled sample scaled (area filter) to the case's size and bit depth, as MIV-named files."""
    src = open_source(sorted(SAMPLE.glob("v*_texture_*.yuv")), frames=case.frames)
    fmt = VideoFormat(case.width, case.height, pix_fmt(case.pix_fmt), case.fps)
    scale = 2.0 ** (fmt.bit_depth - src.fmt.bit_depth)
    paths = []
    for v in range(case.views):
        path = folder / f"v{v}_texture_{case.width}x{case.height}_{case.pix_fmt}.yuv"
        with RawWriter(path, fmt) as w:
            for planes in src.frames(v):
                out = []
                for plane, (h, wd) in zip(planes, fmt.plane_shapes, strict=True):
                    small = cv2.resize(plane.astype(np.float32) * scale, (wd, h), interpolation=cv2.INTER_AREA)
                    out.append(np.clip(np.rint(small), 0, fmt.pix_fmt.max_value).astype(fmt.pix_fmt.dtype))
                w.write(type(planes)(*out))
        paths.append(path)
    src.close()
    return paths


def tools_tensor(name: str, w: np.ndarray, prune: float) -> CodedTensor:
    """A tensor coded with row x column steps, a pruning mask (the smallest |w| dropped) and a Gaussian
    per output channel: the fields the compression issue fills, exercised here."""
    w = np.asarray(w, np.float32)
    rows = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 127
    rows = np.where(rows > 0, rows, 1).astype(np.float32)
    ratio = np.abs(w) / rows.reshape(-1, *[1] * (w.ndim - 1))
    cols = np.moveaxis(ratio, 1, 0).reshape(w.shape[1], -1).max(axis=1)
    cols = np.where(cols > 0, cols, 1).astype(np.float32)
    t = CodedTensor(name, w.shape, step_mode=STEP_ROW_COLUMN, steps=np.concatenate([rows, cols]))
    mask = np.abs(w) > np.quantile(np.abs(w), prune)
    t.mask_mode, t.p_keep = MASK_BERNOULLI, float(np.float32(mask.mean()))
    t.mask_words = mask_encode(mask, t.p_keep)
    symbols = np.clip(np.rint(w / element_steps(t).numpy()), -127, 127).astype(np.int32)
    kept = symbols[mask]
    t.sym_min, t.sym_max = symbol_range(kept)
    t.model_mode, t.model_axis = MODEL_PER_AXIS, 0
    t.means = np.zeros(w.shape[0], np.float32)
    t.stds = np.ones(w.shape[0], np.float32)
    for i in range(w.shape[0]):
        row = symbols[i][mask[i]]
        if row.size:
            t.means[i], t.stds[i] = row.mean(), max(row.std(), 0.1)
    means, stds = model_grid(t)
    t.words = gaussian_encode(kept, t.sym_min, t.sym_max, means[mask], stds[mask])
    return t


def training_recipe(coding: str, arch: str) -> Recipe:
    """MV-MGINR: the fit (8 epochs, no motion mask, seed 1), then for mvenc's coding pruning (2 epochs) and
    QAT (4). Another architecture: its fast preset cut to 2 + 6 epochs, its -q 4 lambda, seed 1."""
    if arch != ARCH.name:
        a = by_name(arch)
        return recipe("fast", arch=arch, epochs=2, qat_epochs=6, rate_lambda=lambda_for_quality(4, a), seed=1)
    rec = recipe(
        "fast", arch=ARCH.name, epochs=8, prune_epochs=2, qat_epochs=4, rate_lambda=8.0, motion_weight=0.0, seed=1
    )
    return rec if coding == "pipeline" else dataclasses.replace(rec, phases=rec.phases[:1])


def code_model(trained: TrainedSegment, coding: str) -> tuple[list[CodedTensor], bytes]:
    if coding == "pipeline":
        exported = export_tensors(trained.model)
        return [e.tensor for e in exported], parameter_hash([e.values for e in exported])
    state = trained.model.base.state_dict()
    tensors = []
    for spec in ARCH.layout(trained.model.cfg):
        name = spec.name
        w = state[name].detach().float().cpu().numpy()
        if coding == "tools" and w.ndim == 1:
            tensors.append(float32_tensor(name, w))
        elif coding == "tools" and name.endswith("conv.weight"):
            tensors.append(tools_tensor(name, w, prune=0.3))
        else:
            tensors.append(quantize_uniform(spec, w).tensor)
    return tensors, parameter_hash(decode_tensor(t) for t in tensors)


def make_stream(case: Case, out: Path, work: Path) -> None:
    paths = write_views(case, work)
    source = open_source(paths, fps=case.fps)
    if case.view_names:
        source.view_names = list(case.view_names)
    rec = training_recipe(case.coding, case.arch)
    segments = []
    for k, (first, count) in enumerate(plan_segments(case.frames, case.segment_frames)):
        sub = segment_source(source, first, count)
        budget = round(case.params * count / case.frames)
        cfg = by_name(case.arch).size_for(Shape(case.views, count, case.height, case.width), budget)
        cfg = dataclasses.replace(cfg, **case.config)
        if case.ablation:
            cfg = ablate(cfg, case.ablation)
        with contextlib.ExitStack() as attrs:
            for name, value in case.arch_attrs.items():
                attrs.enter_context(mock.patch.object(type(by_name(case.arch)), name, value))
            trained = run_phases(sub, cfg, rec, torch.device("cpu"), prefix=None, progress=False, log=lambda *_: None)
            tensors, digest = code_model(trained, case.coding)
        message = segment_message(tensors) if case.lean else None
        segments.append(SegmentData(SegmentHeader(k, first, count), cfg, tensors, digest, message))
    seq = SequenceHeader(
        tuple(source.view_names),
        case.frames,
        case.width,
        case.height,
        source.fmt.bit_depth,
        case.color,
        case.fps,
        len(segments),
    )
    source.close()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "stream.mvinr", "wb") as f:
        info = {"encoder": "tools/make_conformance.py", "case": case.name}
        write_stream(f, seq, segments, info=info, implied=None if case.tnsc else False)
    record_expected(out, case.description)


def record_expected(out: Path, description: str) -> None:
    """md5.txt and expected.json of a stream, from the reference path of the decoder."""
    with Decoder(out / "stream.mvinr", "cpu", "reference") as dec:
        seq = dec.sequence
        md5 = [hashlib.md5() for _ in range(seq.views)]
        planes: dict[str, np.ndarray] = {}
        for frame in dec.frames():
            md5[frame.view].update(frame_bytes_of(frame.planes, seq.fmt))
            for name, plane in zip("yuv", frame.planes, strict=True):
                planes[f"v{frame.view}_f{frame.frame}_{name}"] = plane
        sums = {output_name(seq.view_names[v], seq.fmt): m.hexdigest() for v, m in enumerate(md5)}
        hashes = [s.digest.hex() for s in dec.index.segments]
        expected = {
            "description": description,
            "version": "{}.{}".format(*dec.index.version),
            "views": seq.views,
            "frames": seq.frames,
            "width": seq.width,
            "height": seq.height,
            "pix_fmt": seq.pix_fmt.name,
            "bytes": dec.index.size,
            "param_hashes": hashes,
            "md5": sums,
        }
    np.savez_compressed(out / "reference_output.npz", **planes)  # for the 1-LSB comparison off the reference path
    (out / "md5.txt").write_text("".join(f"{d}  {n}\n" for n, d in sums.items()))
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"{out.name}: {expected['bytes']} bytes, {seq.views} views x {seq.frames} frames, {description}")


def _chunks(data: bytes) -> list[tuple[int, str, int]]:
    """(offset, type, payload length) of each chunk of a valid stream."""
    out, pos = [], FILE_HEADER_BYTES
    while pos < len(data):
        length = struct.unpack_from("<I", data, pos)[0]
        out.append((pos, data[pos + 4 : pos + 8].decode(), length))
        pos += 12 + length
    return out


def _refit(data: bytes, offset: int, new_payload: bytes) -> bytes:
    """The stream with the chunk at `offset` given a new payload and a correct CRC."""
    length = struct.unpack_from("<I", data, offset)[0]
    ctype = data[offset + 4 : offset + 8].decode()
    return data[:offset] + chunk_bytes(ctype, new_payload) + data[offset + 12 + length :]


def compact_cases(valid: Path) -> dict[str, tuple[bytes, int, str]]:
    """Damaged copies of a stream with compact tables (section 7.7) in TNSC chunks: its first model_mode 5
    tensor of one channel (36 pairs, so 4 padding bits in the presence bitmap) with a padding bit set, with
    bit 7 on model_mode 2 (0x82), and cut inside its table (each chunk's CRC fixed)."""
    data = valid.read_bytes()
    with open(valid, "rb") as f:
        seg = read_index(f).segments[0]
    chunks = [c for c in _chunks(data) if c[1] == "TNSC"]
    for (offset, _, length), spec in zip(chunks, layout_of(seg.config), strict=True):
        payload = data[offset + 8 : offset + 8 + length]
        t = CodedTensor.parse(payload, (spec.name, tuple(spec.shape)))
        if t.table_format == TABLE_COMPACT and t.model_mode == MODEL_PHASED and t.shape[1] == 1:
            break
    table = compact_table_bytes(t.means, t.stds)
    # model_mode, then model_axis, coarse_ref, row_period, model_count, the table, word_count, words
    mode_at = len(payload) - (1 + 1 + 2 + 4 + 4 + len(table) + 4 + 4 * len(t.words))
    assert payload[mode_at] == COMPACT_FLAG | MODEL_PHASED
    bitmap_at = mode_at + 12
    padded = bytearray(payload)
    padded[bitmap_at + 4] |= 0x80  # pair 39 of 36
    flagged = bytearray(payload)
    flagged[mode_at] = COMPACT_FLAG | MODEL_CONTEXT
    return {
        "compact_presence_past_count": (_refit(data, offset, bytes(padded)), 8, "presence bit set past"),
        "compact_flag_on_mode_2": (_refit(data, offset, bytes(flagged)), 7, "entropy model mode 130"),
        "compact_table_cut": (_refit(data, offset, payload[: bitmap_at + 3]), 8, "pairs do not fit"),
    }


def lean_cases(valid: Path) -> dict[str, tuple[bytes, int, str]]:
    """Damaged copies of a stream with a TNSL chunk (section 7.9): a reserved bit of its first entry's flags
    set, its first entry's sym_min in a varint longer than it need be, its message cut by a byte, and a TNSC
    chunk after it (each chunk's CRC fixed)."""
    data = valid.read_bytes()
    offset, _, length = next(c for c in _chunks(data) if c[1] == "TNSL")
    payload = data[offset + 8 : offset + 8 + length]
    with open(valid, "rb") as f:
        seg = read_index(f).segments[0]
    spec = layout_of(seg.config)[0]
    assert payload[0] == 1 and payload[1] & 0xB == 0  # a quantised first entry: one step, no mask
    at = 2 + (2 if payload[1] & 4 else 4)  # sym_min: after coding, the flags and the step
    assert payload[at] < 0x80 and spec.name.startswith("view_grids")
    flagged = bytearray(payload)
    flagged[1] |= 0x10
    long_varint = payload[:at] + bytes([payload[at] | 0x80, 0]) + payload[at + 1 :]
    after = offset + 12 + length
    return {
        "lean_reserved_flag": (_refit(data, offset, bytes(flagged)), 8, "set a reserved bit"),
        "lean_long_varint": (_refit(data, offset, long_varint), 8, "not in its shortest form"),
        "lean_message_cut": (_refit(data, offset, payload[:-1]), 8, "not whole 32-bit words"),
        "lean_then_tnsc": (data[:after] + chunk_bytes("TNSC", b"\x01") + data[after:], 8, "after the segment's TNSL"),
    }


def make_negatives(valid: Path, out: Path, compact: Path, lean: Path) -> None:
    """Damaged copies of a valid stream, each with the exit code and message mvdec must give (and of
    `compact`, a stream with compact tables in TNSC chunks: compact_cases; of `lean`, one with a TNSL chunk:
    lean_cases)."""
    data = valid.read_bytes()
    chunks = _chunks(data)
    seqh = next(c for c in chunks if c[1] == "SEQH")
    tnsr = [c for c in chunks if c[1] == "TNSR"]
    after_seqh = seqh[0] + 12 + seqh[2]
    big = max(tnsr, key=lambda c: c[2])
    flip = big[0] + 8 + big[2] - 3  # inside the range-coded words of the largest tensor
    seq_payload = bytearray(data[seqh[0] + 8 : seqh[0] + 8 + seqh[2]])
    seq_payload[10] = 9  # bit depth 9
    words = bytearray(data[big[0] + 8 : big[0] + 8 + big[2]])
    words[-3] ^= 0x55
    future = CodedTensor.parse(data[tnsr[0][0] + 8 : tnsr[0][0] + 8 + tnsr[0][2]])
    future.model_mode = 9  # an entropy model of a later format
    # the cases of bitstream_spec.md section 15.1, where two rules could apply and one decides
    enci = next(c for c in chunks if c[1] == "enci")
    after_enci = enci[0] + 12 + enci[2]
    bad_crc_xtra = bytearray(chunk_bytes("XTRA", b"\x00" * 4))
    bad_crc_xtra[-1] ^= 0xFF
    bad_crc_zzzz = bytearray(chunk_bytes("zzzz", b"skip me"))
    bad_crc_zzzz[-1] ^= 0xFF
    cut = bytearray(data[: big[0] + 8 + big[2] // 2])  # ends inside the largest tensor, whose length is then 2^31
    struct.pack_into("<I", cut, big[0], 1 << 31)
    rows = next(c for c in tnsr if CodedTensor.parse(data[c[0] + 8 : c[0] + 8 + c[2]]).step_mode == STEP_ROW_COLUMN)
    axis = CodedTensor.parse(data[rows[0] + 8 : rows[0] + 8 + rows[2]])
    axis.step_axis = 1  # a "write 0" field (used by step_mode 1 alone) that is not 0
    cases = {
        "bad_crc": (data[:flip] + bytes([data[flip] ^ 0x01]) + data[flip + 1 :], 6, "CRC mismatch"),
        "truncated": (data[: len(data) * 3 // 5], 5, "truncated"),
        "unknown_critical": (data[:after_seqh] + chunk_bytes("XTRA", b"\x00" * 4) + data[after_seqh:], 7, "XTRA"),
        "unknown_major": (SIGNATURE + struct.pack("<HH", 9, 0) + data[FILE_HEADER_BYTES:], 4, "version 9.0"),
        "text_mode": (data.replace(b"\r\n", b"\n"), 3, "text mode"),
        "bad_field": (_refit(data, seqh[0], bytes(seq_payload)), 8, "bit depth 9"),
        "hash_mismatch": (_refit(data, big[0], bytes(words)), 9, "SHA-256"),
        "unknown_model_mode": (_refit(data, tnsr[0][0], future.to_bytes()), 7, "entropy model mode 9"),
        "short_signature": (SIGNATURE[:5], 5, "ends inside its signature"),
        "unknown_critical_bad_crc": (data[:after_seqh] + bytes(bad_crc_xtra) + data[after_seqh:], 7, "XTRA"),
        "huge_length_truncated": (bytes(cut), 8, "length 2147483648 is out of range"),
        "nonletter_type": (data[: tnsr[0][0] + 4] + b"TN5R" + data[tnsr[0][0] + 8 :], 8, "not 4 ASCII letters"),
        "second_enci": (data[:after_enci] + data[enci[0] : after_enci] + data[after_enci:], 8, "second encoder"),
        "nonzero_write0_field": (_refit(data, rows[0], axis.to_bytes()), 8, "step axis 1 is not 0"),
        "end_chunk_bad_crc": (data[:-1] + bytes([data[-1] ^ 0xFF]), 6, "chunk MEND"),
        **compact_cases(compact),
        **lean_cases(lean),
    }
    out.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (stream, code, message) in cases.items():
        (out / f"{name}.mvinr").write_bytes(stream)
        expected[name] = {"exit_code": code, "message": message}
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    # an unknown ancillary chunk must be skipped: a positive stream with the valid stream's outputs
    ok = out.parent / "c09_unknown_ancillary"
    ok.mkdir(exist_ok=True)
    (ok / "stream.mvinr").write_bytes(data[:after_seqh] + chunk_bytes("zzzz", b"skip me") + data[after_seqh:])
    record_expected(ok, "c01 with an unknown ancillary chunk 'zzzz' after SEQH (decoders skip it)")
    ok = out.parent / "c16_damaged_ancillary"  # skipped unread: its CRC is not checked (section 15.1)
    ok.mkdir(exist_ok=True)
    (ok / "stream.mvinr").write_bytes(data[:after_seqh] + bytes(bad_crc_zzzz) + data[after_seqh:])
    record_expected(ok, "c01 with an unknown ancillary chunk 'zzzz' whose CRC is wrong (decoders skip it unread)")
    assert zlib.crc32(b"") == 0


@click.command()
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--only",
    help="Comma-separated case names: write these alone, leaving the other streams as they are ('negative': the "
    "damaged copies of c01).",
)
def main(dst: Path, only: str | None) -> None:
    if only == "negative":  # the damaged copies of c01 alone
        make_negatives(*_negative_sources(dst))
        return
    if only:
        names = only.split(",")
        unknown = set(names) - {c.name for c in CASES}
        if unknown:
            raise click.BadParameter(f"unknown cases {sorted(unknown)}", param_hint="--only")
        for case in CASES:
            if case.name in names:
                shutil.rmtree(dst / case.name, ignore_errors=True)
                with tempfile.TemporaryDirectory() as tmp:
                    make_stream(case, dst / case.name, Path(tmp))
        return
    if dst.exists():
        shutil.rmtree(dst)
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            make_stream(case, dst / case.name, Path(tmp))
    make_negatives(*_negative_sources(dst))


def _negative_sources(dst: Path) -> tuple[Path, Path, Path, Path]:
    """make_negatives' streams: c01, the folder of the damaged copies, and the compact and lean sources."""
    return (
        dst / CASES[0].name / "stream.mvinr",
        dst / "negative",
        dst / COMPACT / "stream.mvinr",
        dst / LEAN / "stream.mvinr",
    )


if __name__ == "__main__":
    main()
