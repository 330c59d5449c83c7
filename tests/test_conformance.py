"""Conformance: the frozen reference streams decode to their recorded hashes and outputs; negative streams
fail with their documented exit codes; random access equals a full decode."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_tool, tool

from mvcodec.bitstream import read_index, read_segment_tensors
from mvcodec.bitstream.tensor import (
    MASK_BERNOULLI,
    MODEL_ARM,
    MODEL_CONTEXT,
    MODEL_LAPLACE,
    MODEL_PER_AXIS,
    MODEL_PHASED,
    MODEL_PREDICTED,
    STEP_ROW_COLUMN,
    TABLE_BFLOAT16,
    TABLE_COMPACT,
)
from mvcodec.decoder import Decoder
from mvcodec.io.output import output_name
from mvcodec.io.raw import frame_bytes_of
from mvcodec.model.registry import arch_of

ROOT = Path(__file__).parent / "conformance"
STREAMS = sorted(p for p in ROOT.iterdir() if (p / "stream.mvinr").exists())
NEGATIVE = json.loads((ROOT / "negative" / "expected.json").read_text())


def test_there_are_conformance_streams():
    assert len(STREAMS) >= 12 and len(NEGATIVE) >= 7


@pytest.mark.parametrize(
    "name, arch_id, modes",
    [
        ("c11_pyramid", 1, {"view_grids.0": MODEL_CONTEXT, "frame_grids.1": MODEL_CONTEXT}),
        ("c12_pyramid_mc", 2, {"flows": MODEL_LAPLACE, "frame_grids.0": MODEL_CONTEXT}),
        ("c13_pyramid_mc_arm", 2, {"flows": MODEL_LAPLACE, "view_grids.0": MODEL_ARM, "frame_grids.0": MODEL_ARM}),
        (
            "c14_pyramid_mc_phased",
            2,
            {"flows": MODEL_LAPLACE, "view_grids.0": MODEL_PHASED, "frame_grids.0": MODEL_PHASED},
        ),
        (
            "c15_pyramid_mc_motion",
            2,
            {"flows": MODEL_PREDICTED, "view_grids.0": MODEL_PHASED, "frame_grids.0": MODEL_PHASED},
        ),
        (
            "c17_pyramid_mc_compact",
            2,
            {"flows": MODEL_PREDICTED, "view_grids.0": MODEL_PHASED, "frame_grids.0": MODEL_PHASED},
        ),
        (
            "c19_pyramid_mc_lean",
            2,
            {"flows": MODEL_PREDICTED, "view_grids.0": MODEL_PHASED, "frame_grids.0": MODEL_PHASED},
        ),
    ],
)
def test_the_registered_architectures_and_entropy_models_have_streams(name, arch_id, modes):
    with open(ROOT / name / "stream.mvinr", "rb") as f:
        index = read_index(f)
        tensors = {t.name: t for t in read_segment_tensors(f, index.segments[0])}
    data = (ROOT / name / "stream.mvinr").read_bytes()
    stored = int.from_bytes(data[data.index(b"ARCX") + 4 :][:2], "little")  # the payload's first field
    assert stored == arch_id == arch_of(index.segments[0].config).id and index.version == (1, 1)
    assert {k: tensors[k].model_mode for k in modes} == modes
    # section 7.7's tables (from experiment 39 on), or bfloat16 pairs
    table = TABLE_COMPACT if name.endswith(("compact", "lean")) else TABLE_BFLOAT16
    assert index.segments[0].lean == name.endswith("lean")  # a TNSL chunk (section 7.9)
    assert all(t.table_format == table for t in tensors.values() if t.model_mode in (MODEL_PHASED, MODEL_PREDICTED))
    assert all(tensors[k].row_period == index.segments[0].header.frames for k in modes if "view" not in k)
    if "flows" in modes:  # motion that moves: more than a pixel somewhere, and fractions of one
        with Decoder(ROOT / name / "stream.mvinr") as dec:
            cfg = dec.index.segments[0].config
            names = [p.name for p in arch_of(cfg).layout(cfg)]
            flows = dec.parameters(0)[names.index("flows")][1:]  # frame 0's is not used
        assert np.abs(flows).max() >= 4 and np.any(flows % 4 != 0)


def test_mv_hinerv_has_a_stream_coded_as_mvenc_codes_it():
    with open(ROOT / "c18_hinerv" / "stream.mvinr", "rb") as f:
        index = read_index(f)
        tensors = {t.name: t for t in read_segment_tensors(f, index.segments[0])}
    cfg = index.segments[0].config
    assert arch_of(cfg).id == 3 and index.version == (1, 1) and cfg.strides == (2, 2, 2) and cfg.local_levels == 2
    assert all(tensors[f"grids.{lv}"].model_mode == MODEL_PER_AXIS for lv in range(cfg.grid_levels))
    assert tensors["blocks.2.local.1"].model_mode == MODEL_PER_AXIS
    weight = tensors["blocks.0.pw1.weight"]
    assert weight.step_mode == STEP_ROW_COLUMN and weight.mask_mode == MASK_BERNOULLI


@pytest.mark.parametrize("folder", STREAMS, ids=lambda p: p.name)
def test_stream_decodes_to_its_parameter_hash_and_md5s(folder):
    expected = json.loads((folder / "expected.json").read_text())
    with Decoder(folder / "stream.mvinr", "cpu", "reference") as dec:
        assert [s.digest.hex() for s in dec.index.segments] == expected["param_hashes"]
        for k in range(len(dec.index.segments)):
            dec.parameters(k)  # checks the SHA-256 of the decoded parameters
        seq = dec.sequence
        assert (seq.views, seq.frames, seq.width, seq.height) == tuple(
            expected[k] for k in ("views", "frames", "width", "height")
        )
        md5 = [hashlib.md5() for _ in range(seq.views)]
        frames = list(dec.frames())
    for frame in frames:
        md5[frame.view].update(frame_bytes_of(frame.planes, seq.fmt))
    if {output_name(seq.view_names[v], seq.fmt): m.hexdigest() for v, m in enumerate(md5)} == expected["md5"]:
        return  # bit-exact with the reference path
    within_one_lsb(folder, frames)  # another platform's float arithmetic: at most 1 LSB from the reference


def within_one_lsb(folder: Path, frames) -> None:
    """Assert every decoded sample is within 1 of the reference path's output stored with the stream."""
    with np.load(folder / "reference_output.npz", allow_pickle=False) as ref:
        for frame in frames:
            for name, plane in zip("yuv", frame.planes, strict=True):
                diff = np.abs(plane.astype(np.int64) - ref[f"v{frame.view}_f{frame.frame}_{name}"].astype(np.int64))
                assert diff.max() <= 1, f"view {frame.view} frame {frame.frame} plane {name}: {diff.max()} LSB off"


def test_the_one_lsb_tolerance_holds_and_bites():
    folder = STREAMS[1]
    with Decoder(folder / "stream.mvinr") as dec:
        frames = list(dec.frames())
    frames[0].planes.y[3, 5] += 1
    within_one_lsb(folder, frames)
    frames[0].planes.y[3, 5] += 1
    with pytest.raises(AssertionError, match="2 LSB off"):
        within_one_lsb(folder, frames)


@pytest.mark.parametrize("folder", [STREAMS[0], STREAMS[6]], ids=lambda p: p.name)
def test_mvdec_check_md5_passes_on_the_reference_streams(folder, tmp_path):
    r = run_tool("mvdec", folder / "stream.mvinr", "-o", tmp_path, "--check-md5", folder / "md5.txt", "--no-progress")
    assert r.returncode == 0, r.stderr
    expected = json.loads((folder / "expected.json").read_text())
    for name, digest in expected["md5"].items():
        assert hashlib.md5((tmp_path / name).read_bytes()).hexdigest() == digest


def test_mvdec_check_md5_fails_with_exit_code_10(tmp_path):
    folder = STREAMS[0]
    wrong = tmp_path / "md5.txt"
    wrong.write_text((folder / "md5.txt").read_text().replace("a", "b", 1).replace("1", "2", 1))
    r = run_tool("mvdec", folder / "stream.mvinr", "--check-md5", wrong, "--no-progress")
    assert r.returncode == 10 and "do not match" in r.stderr


@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_negative_stream_gives_its_exit_code_and_one_line(name):
    case = NEGATIVE[name]
    for cmd in ("mvdec", "mvinfo"):
        args = ["--md5", "--no-progress"] if cmd == "mvdec" else []
        r = run_tool(cmd, ROOT / "negative" / f"{name}.mvinr", *args)
        assert r.returncode == case["exit_code"], (cmd, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and case["message"] in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_random_access_equals_the_same_frames_of_a_full_decode(tmp_path):
    folder = ROOT / "c06_two_segments"  # frames 0-2 and 3-4 in two segments
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_tool("mvdec", folder / "stream.mvinr", "-o", full, "--no-progress").returncode == 0
    r = run_tool("mvdec", folder / "stream.mvinr", "-o", part, "--views", "1", "--frames", "2-3", "--no-progress")
    assert r.returncode == 0, r.stderr
    name = "v1_texture_64x36_yuv420p.yuv"
    frame_bytes = 64 * 36 * 3 // 2
    assert sorted(p.name for p in part.iterdir()) == [name]
    assert (part / name).read_bytes() == (full / name).read_bytes()[2 * frame_bytes : 4 * frame_bytes]


def test_stdout_output_of_y4m_is_one_view_and_pipes(tmp_path):
    folder = STREAMS[0]
    out = subprocess.run(
        [tool("mvdec"), folder / "stream.mvinr", "-o", "-", "--views", "0", "--y4m", "--no-progress"],
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"YUV4MPEG2 W64 H36 F30:1") and out.stdout.count(b"FRAME\n") == 3
    two = run_tool("mvdec", folder / "stream.mvinr", "-o", "-", "--y4m", "--no-progress")
    assert two.returncode == 2 and "one view" in two.stderr  # raw takes them all: tests/test_cli_usage.py


def test_mvinfo_json_has_the_documented_keys():
    r = run_tool("mvinfo", STREAMS[0] / "stream.mvinr", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    keys = "version views frames width height pix_fmt fps bytes bpp kbps params param_hash coded_bits ideal_bits chunks"
    assert set(keys.split()) <= set(info)
    expected = json.loads((STREAMS[0] / "expected.json").read_text())
    assert info["version"] == "1.0" and info["param_hash"] == expected["param_hashes"][0]
    assert info["bytes"] == expected["bytes"] == sum(c["bytes"] for c in info["chunks"]) + 12
    assert abs(info["coded_bits"] / info["ideal_bits"] - 1) < 0.01


def test_bad_decoder_options_are_one_line_errors():
    stream = STREAMS[0] / "stream.mvinr"
    for args, text in (
        (["--frames", "2-9", "--md5"], "outside 0-2"),
        (["--views", "x", "--md5"], "cannot read"),
        ([], "no output given"),
    ):
        r = run_tool("mvdec", stream, *args)
        assert r.returncode == 2 and text in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_decoder_imports_no_training_code_no_opencv_and_no_pyav():
    code = (
        "import sys, mvcodec.cli, mvcodec.decoder, mvcodec.info; "
        "bad = [m for m in sys.modules if m.startswith(('mvcodec.train', 'mvcodec.encoder', 'cv2', 'av')) "
        "or m in ('mvcodec.compress.qat', 'mvcodec.compress.pruning', 'mvcodec.compress.coding', "
        "'mvcodec.model.sizing')]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_fast_path_equals_reference_on_cpu():
    with Decoder(STREAMS[0] / "stream.mvinr", "cpu", "fast") as fast, Decoder(STREAMS[0] / "stream.mvinr") as ref:
        assert not fast.fast  # half precision is a CUDA path; on the CPU "fast" is the reference path
        for a, b in zip(fast.frames(), ref.frames(), strict=True):
            assert all(np.array_equal(x, y) for x, y in zip(a.planes, b.planes, strict=True))
