"""Bad input to mvenc: one line on stderr naming the file and the fix, exit code 2, no traceback."""

from __future__ import annotations

import pytest
from helpers import SAMPLE_FILES, make_format, random_planes, run_tool

from mvcodec.io import RawWriter, Y4MWriter


def _write(path, fmt, n=1):
    with (Y4MWriter if path.suffix == ".y4m" else RawWriter)(path, fmt) as w:
        for i in range(n):
            w.write(random_planes(fmt, i))
    return path


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and lines[0].startswith("mvenc: error: ")
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


def test_size_not_a_whole_number_of_frames(tmp_path):
    path = _write(tmp_path / "a.yuv", make_format(), 2)
    path.write_bytes(path.read_bytes()[:-7])
    assert_one_line_error(run_tool("mvenc", "--dry-run", path, "-s", "64x36"), path, "not a whole number", "-s/--size")


def test_view_with_fewer_frames_than_requested(tmp_path):
    fmt = make_format()
    a, b = _write(tmp_path / "a.yuv", fmt, 5), _write(tmp_path / "b.yuv", fmt, 3)
    r = run_tool("mvenc", "--dry-run", a, b, "-s", "64x36", "-f", "4")
    assert_one_line_error(r, b, "holds 3 frames", "-f/--frames")


def test_views_with_different_frame_counts_and_no_frame_option(tmp_path):
    fmt = make_format()
    a, b = _write(tmp_path / "a.yuv", fmt, 5), _write(tmp_path / "b.yuv", fmt, 3)
    assert_one_line_error(run_tool("mvenc", "--dry-run", a, b, "-s", "64x36"), "a.yuv: 5", "b.yuv: 3", "-f/--frames")


def test_views_of_different_sizes(tmp_path):
    a = _write(tmp_path / "v0.y4m", make_format(64, 36))
    b = _write(tmp_path / "v1.y4m", make_format(64, 38))
    assert_one_line_error(run_tool("mvenc", "--dry-run", a, b), b, "64x38", "64x36", "same size")


def _odd_frame(width, height):
    """One frame of zeros at an odd size, chroma rounded up as FFmpeg stores it."""
    return bytes(width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2))


@pytest.mark.parametrize("case", ["raw option", "miv name", "y4m header"])
def test_odd_width_or_height_names_crop_and_scale(tmp_path, case):
    if case == "raw option":
        path = tmp_path / "a.yuv"
        path.write_bytes(_odd_frame(65, 36))
        r = run_tool("mvenc", "--dry-run", path, "-s", "65x36")
        even = "64x36"
    elif case == "miv name":
        path = tmp_path / "v0_texture_64x35_yuv420p.yuv"
        path.write_bytes(_odd_frame(64, 35))
        r = run_tool("mvenc", "--dry-run", path)
        even = "64x34"
    else:
        path = tmp_path / "a.y4m"
        path.write_bytes(b"YUV4MPEG2 W64 H35 F30:1 C420\nFRAME\n" + _odd_frame(64, 35))
        r = run_tool("mvenc", "--dry-run", path)
        even = "64x34"
    assert_one_line_error(r, path, "odd", "even", f"--crop {even}+0+0", f"--scale {even}")
    assert "ffmpeg" not in r.stderr
    fixed = run_tool("mvenc", "--dry-run", *r.args[2:], "--crop", f"{even}+0+0")
    assert fixed.returncode == 0 and f"size     {even}" in fixed.stdout, fixed.stderr


@pytest.mark.parametrize("case", ["option", "miv name", "y4m"])
def test_unknown_pixel_format(tmp_path, case):
    if case == "option":
        r = run_tool("mvenc", "--dry-run", SAMPLE_FILES[0], "--pix-fmt", "yuv422p")
        needles = ["--pix-fmt", "yuv422p", "yuv420p10le"]
    elif case == "miv name":
        path = tmp_path / "v0_texture_64x36_yuv444p.yuv"
        path.write_bytes(bytes(64 * 36 * 3))
        r = run_tool("mvenc", "--dry-run", path)
        needles = [path, "yuv444p"]
    else:
        path = tmp_path / "a.y4m"
        path.write_bytes(b"YUV4MPEG2 W64 H36 F30:1 C444\nFRAME\n" + bytes(64 * 36 * 3))
        r = run_tool("mvenc", "--dry-run", path)
        needles = [path, "C444", "ffmpeg -pix_fmt"]
    assert_one_line_error(r, *needles)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope_texture_64x36_yuv420p.yuv"
    assert_one_line_error(run_tool("mvenc", "--dry-run", SAMPLE_FILES[0], missing), missing, "no such file")


def test_raw_file_without_size(tmp_path):
    path = _write(tmp_path / "a.yuv", make_format())
    assert_one_line_error(run_tool("mvenc", "--dry-run", path), path, "-s WxH")


def test_options_that_disagree_with_a_miv_name():
    r = run_tool("mvenc", "--dry-run", SAMPLE_FILES[0], "-s", "320x192")
    assert_one_line_error(r, SAMPLE_FILES[0], "160x96", "320x192")


def test_views_option_that_does_not_divide_a_stacked_file():
    assert_one_line_error(run_tool("mvenc", "--dry-run", SAMPLE_FILES[0], "--views", "3"), "--views 3")


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    assert_one_line_error(run_tool("mvenc", "--dry-run", path), path, "cannot read as video")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--fps", "abc"], "--fps"),
        (["-f", "x"], "--frames"),
        (["-f", "0"], "--frames"),
        (["--bogus"], "--bogus"),
        (["-s", "big"], "--size"),
    ],
)
def test_bad_option_values(args, needle):
    assert_one_line_error(run_tool("mvenc", "--dry-run", SAMPLE_FILES[0], *args), needle)


def test_help_and_version_exit_zero():
    r = run_tool("mvenc", "--help")
    assert r.returncode == 0 and "--dry-run" in r.stdout and "--input-res" in r.stdout
    assert run_tool("mvenc", "--version").returncode == 0
