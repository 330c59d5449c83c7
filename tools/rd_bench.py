"""Rate-distortion benchmark: mvcodec against x265 and SVT-AV1 on the same multi-view source, one run.

    python tools/rd_bench.py ../shared/data/caliscope/post_optimization --scale 320x180 -f 16 \\
        -q 2,3,4,5 --json bench/rd.json --plot bench/rd.png

Any source mvenc accepts (one file per view, a directory, MIV-named raw, Y4M, containers) is read with
mvcodec's reader, cut to the first --frames frames and scaled with libswscale (bicubic) to --scale. That
reference is written as MIV-named raw YUV 4:2:0 and every codec works from it:
  - mvcodec: `mvenc --no-info` at each -q (or --bpp) point with the --preset a user picks, then `mvdec`
    (its output is what is measured); size is the whole .mvinr file, written without its informative
    enci chunk;
  - x265 simulcast: each view its own HEVC stream (libx265 in PyAV's FFmpeg), for each --x265-presets
    preset and --crf value, with `info=0` (no informative SEI: x265's default writes 2.3 kB of its version
    and options into every stream, which at 160x96 was most of a low-rate stream's size); size is the sum
    of the elementary streams (no container);
  - x265 multi-view: all views in one HEVC stream, view after view in time, so inter prediction can
    reference the neighbouring view at the view boundaries;
  - SVT-AV1 simulcast (libsvtav1), --svt-crf ladder at --svt-preset, decoded with libdav1d.
Quality is measured the same way for everyone on the decoded YUV 4:2:0: PSNR-Y, PSNR-YUV (6:1:1) and SSIM
(Y) per frame, averaged over the frames of a view, then over views (as mvenc reports). Rate is bits per
pixel (bytes x 8 / (views x frames x width x height)) and kbps over all views at the source frame rate.

Speed and memory: encode time is the wall time of the whole encode (mvenc: the process, including its
self-check decode; anchors: the encoder calls); decode fps is decoded frames (all views) per second of
decoding only, in-process (mvcodec's Decoder; FFmpeg's decoders through PyAV); decoder peak memory is the
peak RSS of a separate process that decodes the whole stream (mvdec itself; a PyAV script for the anchors).

Writes a JSON record (--json) and an RD plot (--plot, needs matplotlib: pip install -e '.[bench]').
BD-rate and BD-PSNR of mvcodec against each anchor come from tools/bdrate.py (PCHIP and cubic).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import click
import torch
from bdrate import bd_psnr, bd_rate, overlap

from mvcodec.decoder import Decoder
from mvcodec.device import pick_device
from mvcodec.errors import InputError
from mvcodec.fsutil import write_json
from mvcodec.io import RawWriter, VideoFormat, open_source
from mvcodec.io.container import frame_planes, planes_frame
from mvcodec.io.filters import SourceFilters
from mvcodec.io.formats import Planes, parse_size
from mvcodec.metrics import bits_per_pixel, frame_quality, kbps, mean_quality

# Decodes an elementary stream (argv[1]) with an FFmpeg decoder (argv[2]) in its own process, to measure the
# anchors' decoder memory as mvdec's is measured.
ANCHOR_DECODER = """
import sys, av
ctx = av.CodecContext.create(sys.argv[2], 'r')
for p in ctx.parse(open(sys.argv[1], 'rb').read()) + ctx.parse(None):
    ctx.decode(p)
ctx.decode(None)
"""

# Runs argv[2:] and writes its peak RSS (KiB on Linux) to argv[1]. The benchmark's own process is large
# (torch, the reference frames), and Linux carries a parent's peak RSS across fork and exec into the child's
# ru_maxrss; a small launcher in between makes the figure the tool's own.
LAUNCHER = """
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
"""


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def run_measured(cmd: list[str], quiet: bool) -> tuple[float, float]:
    """Run a command; its wall seconds and its peak RSS in MiB."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t0 = time.monotonic()
        rc = subprocess.call(  # the tool's own output goes to stderr, with the progress
            [sys.executable, "-c", LAUNCHER, rss.name, *cmd],
            stdout=subprocess.DEVNULL if quiet else sys.stderr,
            stderr=subprocess.DEVNULL if quiet else None,
        )
        seconds = time.monotonic() - t0
        if rc != 0:
            raise click.ClickException(f"{Path(cmd[0]).name} failed (exit {rc}): {' '.join(cmd)}")
        peak = int(rss.read())
    return seconds, peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


class Reference:
    """The source cut and scaled, in memory and as MIV-named raw files every encoder reads."""

    def __init__(self, inputs, work: Path, frames: int, scale: str | None, source_opts: dict):
        source = open_source(list(inputs), frames=frames, **source_opts)
        f = source.fmt
        width, height = parse_size(scale) if scale else (f.width, f.height)
        self.fmt = VideoFormat(width, height, f.pix_fmt, f.fps)
        self.views: list[list[Planes]] = []
        self.paths: list[Path] = []
        for v in range(source.num_views):
            frames_v = [self._scale(p, f) for p in source.frames(v)]
            path = work / f"v{v}_texture_{width}x{height}_{f.pix_fmt.name}.yuv"
            with RawWriter(path, self.fmt) as w:
                for p in frames_v:
                    w.write(p)
            self.views.append(frames_v)
            self.paths.append(path)
        source.close()
        self.num_views, self.num_frames = len(self.views), len(self.views[0])

    def _scale(self, planes: Planes, f: VideoFormat) -> Planes:
        """mvenc's --scale (libswscale's bicubic)."""
        return SourceFilters(scale=(self.fmt.width, self.fmt.height)).apply(planes, self.fmt)

    def rate(self, size: int) -> dict:
        f = self.fmt
        return {
            "bytes": size,
            "bpp": bits_per_pixel(size, self.num_views, self.num_frames, f.width, f.height),
            "kbps": kbps(size, self.num_frames, float(f.fps)),
        }

    def quality(self, decoded: list[list[Planes]]) -> dict:
        if [len(d) for d in decoded] != [self.num_frames] * self.num_views:
            raise click.ClickException(f"decoded {[len(d) for d in decoded]} frames per view, not {self.num_frames}")
        per_view = [
            mean_quality([frame_quality(r, d, self.fmt.bit_depth) for r, d in zip(ref, dec, strict=True)])
            for ref, dec in zip(self.views, decoded, strict=True)
        ]
        return mean_quality(per_view)


def av_encode(frames: list[Planes], fmt: VideoFormat, codec: str, options: dict) -> tuple[bytes, float]:
    """One elementary stream of `frames` and the seconds the encoder took."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = fmt.width, fmt.height, fmt.pix_fmt.name
    ctx.time_base = Fraction(1) / Fraction(fmt.fps)
    ctx.framerate = Fraction(fmt.fps)
    ctx.options = options
    avframes = []
    for i, planes in enumerate(frames):
        fr = planes_frame(planes, fmt.pix_fmt)
        fr.pts = i
        avframes.append(fr)
    t0 = time.perf_counter()
    packets = [p for fr in avframes for p in ctx.encode(fr)] + list(ctx.encode(None))
    seconds = time.perf_counter() - t0
    return b"".join(bytes(p) for p in packets), seconds


def av_decode(data: bytes, decoder: str, fmt: VideoFormat) -> tuple[list[Planes], float]:
    ctx = av.CodecContext.create(decoder, "r")
    t0 = time.perf_counter()
    frames = [fr for p in ctx.parse(data) + ctx.parse(None) for fr in ctx.decode(p)] + list(ctx.decode(None))
    seconds = time.perf_counter() - t0
    return [frame_planes(fr, fmt.pix_fmt) for fr in frames], seconds


def anchor_point(ref: Reference, work: Path, label: str, codec: str, decoder: str, options: dict, mode: str) -> dict:
    """Encode all views (simulcast: one stream per view; multiview: one stream, views one after another)."""
    streams = list(ref.views) if mode == "simulcast" else [[p for v in ref.views for p in v]]
    size, enc_s, dec_s, rss, decoded = 0, 0.0, 0.0, 0.0, []
    for k, frames in enumerate(streams):
        data, seconds = av_encode(frames, ref.fmt, codec, options)
        size, enc_s = size + len(data), enc_s + seconds
        planes, seconds = av_decode(data, decoder, ref.fmt)
        dec_s += seconds
        decoded.append(planes)
        path = work / f"{label}.{k}.bin"
        path.write_bytes(data)
        rss = max(rss, run_measured([sys.executable, "-c", ANCHOR_DECODER, str(path), decoder], quiet=False)[1])
        path.unlink()
    if mode != "simulcast":
        t = ref.num_frames
        decoded = [decoded[0][v * t : (v + 1) * t] for v in range(ref.num_views)]
    return {
        **ref.rate(size),
        **ref.quality(decoded),
        "encode_seconds": enc_s,
        "decode_fps": ref.num_views * ref.num_frames / dec_s,
        "decoder_peak_mib": rss,
    }


def mvcodec_point(
    ref: Reference, work: Path, point: str, preset: str, device: str, extra: list[str], quiet: bool
) -> dict:
    kind, value = point.split(":")
    out = work / f"mvcodec_{kind}{value}.mvinr"
    stats = work / f"mvcodec_{kind}{value}.json"
    rate_opt = ["-q", value] if kind == "q" else ["--bpp", value]
    cmd = [tool("mvenc"), *map(str, ref.paths), str(out), *rate_opt, "--preset", preset, "--device", device]
    # the rates of the streams alone: mvenc without its enci chunk, x265 without its info SEI (2.3 kB a stream)
    cmd += ["--fps", str(ref.fmt.fps), "--no-info", *extra]
    enc_s, _ = run_measured([*cmd, "--stats", str(stats), *(["--no-progress"] if quiet else [])], quiet)
    decoded_dir = work / f"mvcodec_{kind}{value}"
    _, rss = run_measured([tool("mvdec"), str(out), "-o", str(decoded_dir), "--no-progress"], quiet=True)
    decoded_src = open_source(sorted(decoded_dir.iterdir()))
    decoded = [list(decoded_src.frames(v)) for v in range(decoded_src.num_views)]
    decoded_src.close()
    with Decoder(out, pick_device(device)) as dec:
        t0 = time.perf_counter()
        n = sum(1 for _ in dec.frames())
        dec_s = time.perf_counter() - t0
    record = json.loads(stats.read_text())
    shutil.rmtree(decoded_dir)
    return {
        **ref.rate(out.stat().st_size),
        **ref.quality(decoded),
        "encode_seconds": enc_s,
        "decode_fps": n / dec_s,
        "decoder_peak_mib": rss,
        "params": record["params"],
        "macs_per_pixel": record.get("macs_per_pixel"),
        "train_seconds": record["train_seconds"],
    }


def psnr_gap(anchor_psnr, test_psnr) -> float | None:
    """Where the curves do not overlap in PSNR (BD-rate undefined): the anchor's worst PSNR minus the test's
    best (positive: every anchor point beats every test point), or the anchor's best minus the test's worst
    (negative: the test is better everywhere); None where they overlap."""
    if min(anchor_psnr) > max(test_psnr):
        return min(anchor_psnr) - max(test_psnr)
    if max(anchor_psnr) < min(test_psnr):
        return max(anchor_psnr) - min(test_psnr)
    return None


def bd_figure(fn, *curves, method: str = "pchip") -> tuple[float | None, str | None]:
    """fn (bd_rate or bd_psnr) of the two curves, or None and the reason where it is undefined."""
    try:
        return fn(*curves, method), None
    except ValueError as e:
        return None, str(e)


def bd_table(runs: dict, metric: str) -> dict:
    """BD-rate and BD-PSNR of mvcodec against every anchor, by both interpolations; None where undefined."""
    test = runs["mvcodec"]["points"]
    if len(test) < 2:
        return {}
    tr, tp = [p["bpp"] for p in test], [p[metric] for p in test]
    out = {}
    for name, run in runs.items():
        if name == "mvcodec":
            continue
        ar, ap = [p["bpp"] for p in run["points"]], [p[metric] for p in run["points"]]
        row = {"psnr_overlap": overlap(ap, tp), "psnr_gap": psnr_gap(ap, tp)}
        for method in ("pchip", "cubic"):
            for key, fn in (("bd_rate", bd_rate), ("bd_psnr", bd_psnr)):
                row[f"{key}_{method}"], why = bd_figure(fn, ar, ap, tr, tp, method=method)
                if why:
                    row[f"{key}_{method}_why"] = why
        out[name] = row
    return out


def source_name(record: dict) -> str:
    """A directory input's name, or the folder of the per-view files."""
    inputs = [Path(i.rstrip("/")) for i in record["source"]["inputs"]]
    return inputs[0].name if len(inputs) == 1 else inputs[0].parent.name


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise click.ClickException("--plot needs matplotlib: pip install -e '.[bench]'") from None
    return plt


def plot(record: dict, path: Path) -> None:
    plt = pyplot()
    from matplotlib.ticker import FormatStrFormatter

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, run in record["runs"].items():
        pts = run["points"]
        style = {"marker": "o", "linewidth": 2.2} if name == "mvcodec" else {"marker": ".", "linestyle": "--"}
        for ax, metric in zip(axes, ("psnr_yuv", "ssim"), strict=True):
            ax.plot([p["bpp"] for p in pts], [p[metric] for p in pts], label=run["label"], **style)
    src = record["source"]
    title = f"{source_name(record)}: {src['views']} views x {src['frames']} frames, {src['size']}"
    for ax, ylabel in zip(axes, ("YUV PSNR, 6:1:1 (dB)", "SSIM (Y)"), strict=True):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("bits per pixel (all views)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True)
@click.option("-s", "--size", help="Frame size of raw inputs (as mvenc -s).")
@click.option("--pix-fmt", help="Pixel format of raw inputs (as mvenc --pix-fmt).")
@click.option("--views", type=int, help="Views stacked in one raw file (as mvenc --views).")
@click.option("-f", "--frames", type=int, default=16, show_default=True, help="Frames per view.")
@click.option("--scale", metavar="WxH", help="Scale every view to this size (default: the source size).")
@click.option("-q", "--quality", default="2,3,4,5", show_default=True, help="mvenc -q points (comma-separated).")
@click.option("--bpp", default="", help="mvenc --bpp points instead of -q (comma-separated).")
@click.option("--preset", default="medium", show_default=True, help="mvenc --preset.")
@click.option("--crf", default="22,27,32,37,42,47,51", show_default=True, help="x265 CRF ladder.")
@click.option("--x265-presets", default="medium,veryslow", show_default=True)
@click.option("--multiview/--no-multiview", default=True, show_default=True, help="Run the x265 one-stream anchor.")
@click.option("--svt-crf", default="27,35,43,51,59", show_default=True, help="SVT-AV1 CRF ladder ('' skips).")
@click.option("--svt-preset", default=8, show_default=True, help="SVT-AV1 preset (0 slowest .. 13 fastest).")
@click.option("--mvenc-args", default="", metavar="ARGS", help="More mvenc options, e.g. '--epochs 5'.")
@click.option("--device", default="auto", show_default=True, help="mvenc/mvdec --device.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), help="Keep streams here (default: temp).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the record here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the RD plot (PNG).")
@click.option("--quiet", is_flag=True, help="No progress from mvenc; one line per point only.")
def main(inputs, size, pix_fmt, views, frames, scale, quality, bpp, preset, crf, x265_presets, multiview, svt_crf,
         svt_preset, mvenc_args, device, work, json_path, plot_path, quiet):  # fmt: skip
    """Encode INPUT... with mvcodec and the anchors at several rates; print RD tables and BD-rates."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
    if plot_path:
        pyplot()  # fail before hours of encoding, not after
    points = [f"bpp:{v}" for v in split(bpp)] if bpp else [f"q:{v}" for v in split(quality)]
    jobs = [("mvcodec", "mvcodec", None, None, points)]
    for p in split(x265_presets):
        jobs.append((f"x265-{p}", f"x265 {p} simulcast", "simulcast", {"preset": p}, split(crf)))
        if multiview:
            jobs.append((f"x265-{p}-mv", f"x265 {p}, views in one stream", "multiview", {"preset": p}, split(crf)))
    if svt_crf:
        jobs.append(("svtav1", f"SVT-AV1 preset {svt_preset} simulcast", "svtav1", {}, split(svt_crf)))
    total = sum(len(j[4]) for j in jobs)
    source_opts = {"size": parse_size(size) if size else None, "pix_fmt_name": pix_fmt, "views": views}
    with tempfile.TemporaryDirectory() as tmp:
        work = work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            ref = Reference(inputs, work, frames, scale, source_opts)
        except InputError as e:
            raise click.ClickException(str(e)) from None
        f = ref.fmt
        click.echo(
            f"reference: {ref.num_views} views x {ref.num_frames} frames, {f.width}x{f.height} {f.pix_fmt.name}",
            err=True,
        )
        runs, done = {}, 0
        for name, label, mode, opts, settings in jobs:
            runs[name] = {"label": label, "points": []}
            for setting in settings:
                done += 1
                click.echo(f"[{done}/{total}] {label} {setting} ...", err=True)
                if mode is None:
                    row = mvcodec_point(ref, work, setting, preset, device, shlex.split(mvenc_args), quiet)
                elif mode == "svtav1":
                    options = {"crf": setting, "preset": str(svt_preset)}
                    row = anchor_point(ref, work, f"svt{setting}", "libsvtav1", "libdav1d", options, "simulcast")
                else:
                    options = {"crf": setting, "preset": opts["preset"], "x265-params": "log-level=error:info=0"}
                    row = anchor_point(ref, work, f"{name}{setting}", "libx265", "hevc", options, mode)
                row["setting"] = setting
                runs[name]["points"].append(row)
                click.echo(
                    f"[{done}/{total}] {label} {setting}: {row['bpp']:.4f} bpp, {row['kbps']:.1f} kbps, "
                    f"PSNR-YUV {row['psnr_yuv']:.2f} dB, SSIM {row['ssim']:.4f}, encode {row['encode_seconds']:.1f} s, "
                    f"decode {row['decode_fps']:.1f} fps",
                    err=True,
                )
    record = {
        "source": {
            "inputs": [str(i) for i in inputs],
            "views": ref.num_views,
            "frames": ref.num_frames,
            "size": f"{f.width}x{f.height}",
            "pix_fmt": f.pix_fmt.name,
            "fps": str(f.fps),
        },
        "mvcodec_preset": preset,
        "svt_preset": svt_preset,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(pick_device(device)),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "pyav": av.__version__,
        },
        "date": time.strftime("%Y-%m-%d"),
        "command": shlex.join(["python", *sys.argv]),
        "cwd": os.getcwd(),
        "runs": runs,
        "bd_psnr_yuv": bd_table(runs, "psnr_yuv"),
        "bd_psnr_y": bd_table(runs, "psnr_y"),
    }
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, record)
    if plot_path:
        plot(record, plot_path)
    click.echo(markdown(record))


def fmt_bd(value: float | None, unit: str) -> str:
    """A BD figure for the tables; beyond +-1000% a rate figure says the fit is unstable (the JSON keeps it)."""
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value:+.1f}%" if abs(value) <= 1000 else f"{'>+' if value > 0 else '<-'}1000% (unstable fit)"
    return f"{value:+.2f} dB"


def markdown(record: dict) -> str:
    lines = [
        "| codec | setting | bpp | kbps | PSNR-Y | PSNR-YUV | SSIM | encode (s) | decode (fps) | decoder peak (MiB) |"
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for run in record["runs"].values():
        for p in run["points"]:
            lines.append(
                f"| {run['label']} | {p['setting']} | {p['bpp']:.4f} | {p['kbps']:.1f} | {p['psnr_y']:.2f} | "
                f"{p['psnr_yuv']:.2f} | {p['ssim']:.4f} | {p['encode_seconds']:.1f} | {p['decode_fps']:.1f} | "
                f"{p['decoder_peak_mib']:.0f} |"
            )
    lines += [
        "",
        "| mvcodec vs (PSNR-YUV) | PSNR overlap | BD-rate (PCHIP) | BD-rate (cubic) | BD-PSNR (PCHIP) "
        "| BD-PSNR (cubic) | no overlap: anchor's worst - mvcodec's best |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in record["bd_psnr_yuv"].items():
        lines.append(
            f"| {record['runs'][name]['label']} | {row['psnr_overlap']:.0%} | {fmt_bd(row['bd_rate_pchip'], '%')} | "
            f"{fmt_bd(row['bd_rate_cubic'], '%')} | {fmt_bd(row['bd_psnr_pchip'], 'dB')} | "
            f"{fmt_bd(row['bd_psnr_cubic'], 'dB')} | {fmt_bd(row['psnr_gap'], 'dB')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
