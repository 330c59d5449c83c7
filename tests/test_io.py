"""Raw YUV, Y4M and PyAV-container reading and writing."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest
from helpers import make_format, random_planes, write_video

from mvcodec.errors import InputError
from mvcodec.io import RawReader, RawWriter, Y4MReader, Y4MWriter, open_source
from mvcodec.io.container import ContainerReader


def assert_same_frames(a, b):
    assert len(a) == len(b)
    for fa, fb in zip(a, b, strict=True):
        for pa, pb in zip(fa, fb, strict=True):
            assert pa.dtype == pb.dtype and pa.shape == pb.shape
            np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize("name", ["yuv420p", "yuv420p10le", "yuv420p12le", "yuv420p16le"])
def test_raw_write_then_read_is_bit_exact(tmp_path, name):
    fmt = make_format(name=name)
    frames = [random_planes(fmt, s) for s in range(3)]
    path = tmp_path / "x.yuv"
    with RawWriter(path, fmt) as w:
        for f in frames:
            w.write(f)
    assert path.stat().st_size == 3 * fmt.frame_bytes
    r = RawReader(path, fmt)
    assert r.num_frames == 3
    assert_same_frames(frames, [r.read(t) for t in range(3)])


def test_raw_samples_are_little_endian_on_disk(tmp_path):
    fmt = make_format(name="yuv420p10le")
    frame = random_planes(fmt, 0)
    path = tmp_path / "x.yuv"
    with RawWriter(path, fmt) as w:
        w.write(frame)
    first = path.read_bytes()[:2]
    assert int.from_bytes(first, "little") == frame.y[0, 0]


@pytest.mark.parametrize("name", ["yuv420p", "yuv420p10le", "yuv420p16le"])
def test_y4m_write_then_read_is_bit_exact_with_rate_and_aspect(tmp_path, name):
    fmt = make_format(name=name, fps=Fraction(30000, 1001))
    frames = [random_planes(fmt, s) for s in range(4)]
    path = tmp_path / "x.y4m"
    with Y4MWriter(path, fmt, aspect=Fraction(4, 3)) as w:
        for f in frames:
            w.write(f)
    r = Y4MReader(path)
    assert r.fmt == fmt and r.aspect == Fraction(4, 3) and r.num_frames == 4
    assert_same_frames(frames, [r.read(t) for t in range(4)])


@pytest.mark.parametrize(
    "name, siting, tag",
    [
        ("yuv420p", "left", b" C420mpeg2\n"),
        ("yuv420p", "center", b" C420jpeg\n"),
        ("yuv420p", "top-left", b" C420paldv\n"),
        ("yuv420p10le", "center", b" C420p10\n"),  # no siting tag above 8 bits
    ],
)
def test_y4m_header_tags_are_ffmpegs_spelling_of_the_siting(tmp_path, name, siting, tag):
    path = tmp_path / f"{name}.y4m"
    Y4MWriter(path, make_format(name=name), siting=siting).close()
    assert path.read_bytes().startswith(b"YUV4MPEG2 W64 H36 F30:1 Ip A1:1") and path.read_bytes().endswith(tag)


def test_y4m_reader_accepts_chroma_variants_and_frame_parameters(tmp_path):
    fmt = make_format()
    frame = random_planes(fmt, 1)
    data = b"".join(p.tobytes() for p in frame)
    path = tmp_path / "x.y4m"
    path.write_bytes(b"YUV4MPEG2 W64 H36 F25:1 Ip A0:0 C420mpeg2 XYSCSS=420MPEG2\n" + b"FRAME Ixyz\n" + data)
    r = Y4MReader(path)
    assert r.fmt.fps == 25 and r.fmt.pix_fmt.name == "yuv420p" and r.aspect is None
    assert_same_frames([frame], [r.read(0)])


def test_y4m_truncated_frame_is_an_input_error(tmp_path):
    fmt = make_format()
    path = tmp_path / "x.y4m"
    with Y4MWriter(path, fmt) as w:
        w.write(random_planes(fmt, 0))
        w.write(random_planes(fmt, 1))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match="frame 1 is truncated"):
        Y4MReader(path)


def _pyav_write(path, frames, fmt, muxer):
    # FFmpeg's Y4M muxer writes >8-bit only with strict=-1 (C420p10 is an extension of the format).
    with av.open(str(path), "w", format=muxer, container_options={"strict": "-1"}) as c:
        s = c.add_stream("rawvideo", rate=fmt.fps)
        s.width, s.height, s.pix_fmt = fmt.width, fmt.height, fmt.pix_fmt.name
        for f in frames:
            frame = av.VideoFrame.from_ndarray(
                np.concatenate([f.y, f.u.reshape(-1, fmt.width), f.v.reshape(-1, fmt.width)]), format=fmt.pix_fmt.name
            )
            c.mux(s.encode(frame))
        c.mux(s.encode())


def test_10bit_raw_and_y4m_written_by_pyav_read_identically(tmp_path):
    fmt = make_format(name="yuv420p10le")
    frames = [random_planes(fmt, s) for s in range(3)]
    _pyav_write(tmp_path / "x.yuv", frames, fmt, "rawvideo")
    _pyav_write(tmp_path / "x.y4m", frames, fmt, "yuv4mpegpipe")
    raw = RawReader(tmp_path / "x.yuv", fmt)
    y4m = Y4MReader(tmp_path / "x.y4m")
    assert y4m.fmt == fmt
    assert_same_frames(frames, [raw.read(t) for t in range(3)])
    assert_same_frames(frames, [y4m.read(t) for t in range(3)])


@pytest.mark.parametrize(
    "name,codec,suffix,options",
    [
        ("yuv420p", "libx264", ".mp4", {"qp": "0"}),
        ("yuv420p10le", "libx264", ".mp4", {"qp": "0"}),
        ("yuv420p10le", "ffv1", ".mkv", {}),
        ("yuv420p16le", "ffv1", ".mkv", {}),
    ],
)
def test_lossless_container_reads_back_exactly_in_any_order(tmp_path, name, codec, suffix, options):
    fmt = make_format(name=name)
    frames = [random_planes(fmt, s) for s in range(5)]
    path = tmp_path / f"x{suffix}"
    write_video(path, frames, fmt, codec, options)
    r = ContainerReader(path)
    assert r.num_frames == 5 and r.fmt == fmt
    assert_same_frames(frames, [r.read(t) for t in (0, 1, 2, 3, 4)])
    assert_same_frames([frames[4], frames[1], frames[3]], [r.read(t) for t in (4, 1, 3)])
    r.close()


def test_container_converts_to_the_requested_depth(tmp_path):
    fmt8 = make_format(name="yuv420p")
    frames = [random_planes(fmt8, 0)]
    write_video(tmp_path / "x.mkv", frames, fmt8, "ffv1")
    r = ContainerReader(tmp_path / "x.mkv", make_format(name="yuv420p10le").pix_fmt)
    y = r.read(0).y
    assert y.dtype == np.uint16 and y.max() > 255  # rescaled by libswscale, not merely widened
    np.testing.assert_allclose(y / 4.0, frames[0].y, atol=1)


def test_stacked_raw_views_are_memory_mapped_not_loaded(tmp_path):
    # 25 views x 100 frames of 1080p 10-bit (15.5 GB) as a sparse file: reading a frame must not load it.
    fmt = make_format(1920, 1080, "yuv420p10le")
    path = tmp_path / "big_1920x1080.yuv"
    with open(path, "wb") as f:
        f.truncate(25 * 100 * fmt.frame_bytes)
    tracemalloc.start()
    src = open_source([path], size=(1920, 1080), pix_fmt_name="yuv420p10le", views=25)
    planes = src.read(24, 99)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert src.num_views == 25 and src.num_frames == 100 and planes.y.shape == (1080, 1920)
    assert peak < 4 * fmt.frame_bytes
