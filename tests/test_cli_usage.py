"""The command line as a video engineer expects it: options checked before any work, outputs and standard
streams as x265 and ffmpeg take them, source crop and scale, chroma siting tags, threads, quiet runs."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from helpers import SAMPLE_FILES, make_format, random_planes, run_tool, tool

from mvcodec.device import set_threads
from mvcodec.errors import InputError
from mvcodec.fsutil import check_output_file
from mvcodec.io import RawWriter, Y4MWriter, open_source
from mvcodec.io.filters import SourceFilters
from mvcodec.io.formats import parse_crop
from mvcodec.io.raw import frame_bytes_of

CONFORMANCE = SAMPLE_FILES[0].parents[1] / "conformance" / "c01_8bit" / "stream.mvinr"


def _one_line(result, code=2):
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "option", [["-q", "9"], ["--preset", "ultrafast"], ["--arch", "nope"], ["--lr", "-1"], ["--loss", "mse"]]
)
def test_dry_run_rejects_what_the_real_run_rejects(option):
    line = _one_line(run_tool("mvenc", *SAMPLE_FILES[:2], "out.mvinr", "--dry-run", *option))
    assert line.startswith("mvenc: error: ")


def test_an_output_that_is_a_directory_is_refused_before_reading_anything(tmp_path):
    folder = tmp_path / "x.mvinr"
    folder.mkdir()
    for args in ([folder], ["-o", folder]):
        line = _one_line(run_tool("mvenc", *SAMPLE_FILES[:2], *args, "-f", "2", "--epochs", "1"))
        assert f"{folder}: the output is an existing directory" in line and "out.mvinr" in line
        assert ".part" not in line and ".ckpt" not in line
    assert list(folder.iterdir()) == []


def test_an_output_in_a_directory_that_cannot_be_written_names_the_output(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot be made"):
        check_output_file(blocker / "sub" / "o.mvinr")
    monkeypatch.setattr("os.access", lambda *a: False)  # a read-only directory (the tests may run as root)
    with pytest.raises(InputError, match=r"o\.mvinr: cannot write in .*permission denied.*output path"):
        check_output_file(tmp_path / "o.mvinr")


def test_an_output_without_the_mvinr_suffix_is_the_output(tmp_path):
    r = run_tool("mvenc", *SAMPLE_FILES[:2], tmp_path / "out.bin", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "views    2" in r.stdout and f"output   {tmp_path / 'out.bin'}" in r.stdout
    (tmp_path / "again.bin").write_bytes(CONFORMANCE.read_bytes())  # an earlier output: still the output
    r = run_tool("mvenc", *SAMPLE_FILES[:2], tmp_path / "again.bin", "--dry-run")
    assert r.returncode == 0 and "views    2" in r.stdout, r.stderr
    assert "cannot be '-'" in _one_line(run_tool("mvenc", *SAMPLE_FILES[:2], "-o", "-", "--dry-run"))
    line = _one_line(run_tool("mvenc", *SAMPLE_FILES[:2], tmp_path / "missing.yuv", "--dry-run"))
    assert "missing.yuv: no such file" in line and ".mvinr" in line


def test_a_missing_file_is_exit_code_2_in_every_tool(tmp_path):
    missing = tmp_path / "nothing.mvinr"
    assert "no such file" in _one_line(run_tool("mvenc", tmp_path / "nothing.yuv", "--dry-run", "-s", "64x36"))
    assert "no such file" in _one_line(run_tool("mvdec", missing, "--md5"))
    assert "no such file" in _one_line(run_tool("mvinfo", missing))


def _pipe(name, *args, data: bytes):
    return subprocess.run([tool(name), *map(str, args)], input=data, capture_output=True, timeout=300)


@pytest.mark.slow
def test_mvenc_reads_standard_input_raw_or_y4m(tmp_path):
    fmt = make_format(64, 36)
    frames = [random_planes(fmt, i) for i in range(6)]
    with RawWriter(tmp_path / "all.yuv", fmt) as w:
        for p in frames:
            w.write(p)
    r = _pipe("mvenc", "-", "--views", "2", "-s", "64x36", "--dry-run", data=(tmp_path / "all.yuv").read_bytes())
    assert r.returncode == 0, r.stderr
    assert b"views    2" in r.stdout and b"frames   3 per view" in r.stdout
    with Y4MWriter(tmp_path / "one.y4m", fmt, siting="center") as w:
        for p in frames:
            w.write(p)
    r = _pipe("mvenc", "-", "--dry-run", data=(tmp_path / "one.y4m").read_bytes())
    assert r.returncode == 0 and b"frames   6 per view" in r.stdout and b"sited center" in r.stdout, r.stderr
    r = _pipe("mvenc", "-", "--dry-run", data=b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    assert r.returncode == 2 and b"yuv4mpegpipe" in r.stderr
    r = _pipe("mvenc", "-", SAMPLE_FILES[0], "--dry-run", data=b"x")
    assert r.returncode == 2 and b"only input" in r.stderr
    assert _pipe("mvenc", "-", "--dry-run", data=b"").returncode == 2


@pytest.mark.slow
def test_mvdec_and_mvinfo_read_standard_input_and_stdout_takes_every_view(tmp_path):
    data = CONFORMANCE.read_bytes()
    info = _pipe("mvinfo", "-", "--json", data=data)
    assert info.returncode == 0, info.stderr
    views = json.loads(info.stdout)["views"]
    assert views >= 2
    assert run_tool("mvdec", CONFORMANCE, "-o", tmp_path / "files", "--no-progress").returncode == 0
    files = sorted((tmp_path / "files").iterdir(), key=lambda p: int(p.name[1 : p.name.index("_")]))
    piped = _pipe("mvdec", "-", "-o", "-", "--no-progress", data=data)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == b"".join(f.read_bytes() for f in files)  # the views one after another
    y4m = _pipe("mvdec", "-", "-o", "-", "--y4m", data=data)
    assert y4m.returncode == 2 and b"one view" in y4m.stderr


def test_crop_then_scale_as_the_source_is_read(tmp_path):
    fmt = make_format(64, 36)
    planes = random_planes(fmt, 3)
    with RawWriter(tmp_path / "a.yuv", fmt) as w:
        w.write(planes)
    cropped = open_source([tmp_path / "a.yuv"], size=(64, 36), filters=SourceFilters(parse_crop("32x16+8+4")))
    got = cropped.read(0, 0)
    assert (cropped.fmt.width, cropped.fmt.height) == (32, 16)
    assert np.array_equal(got.y, planes.y[4:20, 8:40]) and np.array_equal(got.u, planes.u[2:10, 4:20])
    both = open_source([tmp_path / "a.yuv"], size=(64, 36), filters=SourceFilters((32, 16, 8, 4), (16, 8)))
    small = both.read(0, 0)
    assert small.y.shape == (8, 16) and small.u.shape == (4, 8) and small.y.dtype == np.uint8
    assert abs(float(small.y.mean()) - float(got.y.mean())) < 8  # a low-pass filter keeps the mean, about
    r = run_tool(
        "mvenc",
        tmp_path / "a.yuv",
        "-s",
        "64x36",
        "--crop",
        "32x16+8+4",
        "--scale",
        "16x8",
        "--dry-run",
        "--stats",
        tmp_path / "s.json",
    )
    assert r.returncode == 0 and "size     16x8" in r.stdout and "crop     32x16+8+4" in r.stdout, r.stderr
    record = json.loads((tmp_path / "s.json").read_text())
    assert (record["width"], record["crop"], record["scale"]) == (16, "32x16+8+4", "16x8")


@pytest.mark.parametrize(
    "crop, needle",
    [("32x16+7+4", "even"), ("160x96+2+0", "outside"), ("32x16-1", "WIDTHxHEIGHT+X+Y")],
)
def test_bad_crops_are_one_line_errors(tmp_path, crop, needle):
    assert needle in _one_line(run_tool("mvenc", *SAMPLE_FILES[:1], "--crop", crop, "--dry-run"))


def test_a_scale_beyond_what_a_stream_holds_is_refused():
    assert "16384" in _one_line(run_tool("mvenc", *SAMPLE_FILES[:1], "--scale", "20000x100", "--dry-run"))


@pytest.mark.parametrize(
    "tag, siting",
    [
        ("", "center"),
        ("C420", "center"),
        ("C420jpeg", "center"),
        ("C420mpeg2", "left"),
        ("C420paldv", "top-left"),
        ("C420p10", "left"),
    ],
)
def test_y4m_chroma_siting_tags_are_read(tmp_path, tag, siting):
    fmt = make_format(64, 36, "yuv420p10le" if tag == "C420p10" else "yuv420p")
    head = f"YUV4MPEG2 W64 H36 F30:1 {tag}".strip() + "\n"
    (tmp_path / "a.y4m").write_bytes(head.encode() + b"FRAME\n" + frame_bytes_of(random_planes(fmt, 0), fmt))
    source = open_source([tmp_path / "a.y4m"])
    assert source.siting == siting and source.describe()["chroma_siting"] == siting


@pytest.mark.slow
def test_a_top_left_sited_y4m_round_trips_its_tag(tmp_path):
    fmt = make_format(64, 36, fps=Fraction(6))
    views = []
    for v in range(2):
        path = tmp_path / f"cam{v}.y4m"
        with Y4MWriter(path, fmt, siting="top-left") as w:
            for t in range(3):
                w.write(random_planes(fmt, 10 * v + t))
        views.append(path)
    out = tmp_path / "s.mvinr"
    args = ["--arch", "mv-mginr", "--preset", "fast", "--epochs", "1", "--prune-epochs", "0", "--qat-epochs", "1"]
    args += ["--params", "20k"]
    r = run_tool("mvenc", *views, out, *args, "--quiet", "--crop", "64x32+0+2", "--scale", "32x16")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # --quiet: nothing but errors
    info = json.loads(run_tool("mvinfo", out, "--json").stdout)
    assert info["color"]["siting"] == "top-left" and info["version"].startswith("1.1")
    assert (info["width"], info["height"]) == (32, 16)
    assert info["encoder_info"]["source_filters"] == {"crop": "64x32+0+2", "scale": "32x16"}
    assert run_tool("mvdec", out, "-o", tmp_path / "dec", "--y4m", "--quiet").returncode == 0
    assert (tmp_path / "dec" / "cam0.y4m").read_bytes().split(b"\n", 1)[0].endswith(b"C420paldv")
    # --no-info: the same stream without its enci chunk (as rd_bench measures it, x265 without its info SEI)
    bare = tmp_path / "bare.mvinr"
    r = run_tool("mvenc", *views, bare, *args, "--quiet", "--crop", "64x32+0+2", "--scale", "32x16", "--no-info")
    assert r.returncode == 0, r.stderr
    info_bare = json.loads(run_tool("mvinfo", bare, "--json").stdout)
    assert info_bare["encoder_info"] is None and "enci" not in [c["type"] for c in info_bare["chunks"]]
    assert bare.stat().st_size < out.stat().st_size


def test_threads_set_the_pools_and_are_checked():
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        set_threads(before)
    code = "\n".join(
        [
            "import sys",
            "from mvcodec.cli import mvdec_main",
            "sys.argv = ['mvdec', sys.argv[1], '--md5', '--threads', '1', '--quiet']",
            "try:",
            "    mvdec_main()",
            "except SystemExit as e:",
            "    assert e.code == 0, e.code",
            "assert 'cv2' not in sys.modules and 'av' not in sys.modules",
        ]
    )
    assert subprocess.run([sys.executable, "-c", code, str(CONFORMANCE)], capture_output=True).returncode == 0
    assert "--threads" in _one_line(run_tool("mvenc", *SAMPLE_FILES[:1], "--threads", "0", "--dry-run"))


def test_quiet_dry_run_prints_nothing():
    r = run_tool("mvenc", *SAMPLE_FILES[:2], "--dry-run", "--quiet")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_presets_are_listed_fastest_to_slowest_with_their_measured_times():
    from mvcodec.presets import DEFAULT_PRESETS, PRESETS, SAMPLE_BPP, SAMPLE_PSNR, SAMPLE_SECONDS

    assert list(SAMPLE_SECONDS) == list(DEFAULT_PRESETS) == list(SAMPLE_PSNR) == list(SAMPLE_BPP) == list(PRESETS)
    times = list(SAMPLE_SECONDS.values())
    assert times == sorted(times)
    text = " ".join(run_tool("mvenc", "--help").stdout.split())
    assert "fastest to slowest" in text and "fast (4 + 32; 58 s, 0.39 bpp, 36.7 dB)" in text
    assert "mv-mginr: fit + fine-tuning after pruning + QAT, fast 30 + 3 + 7" in text
    assert "mv-hinerv: fast 25 + 3 + 6, medium 50 + 6 + 12" in text
