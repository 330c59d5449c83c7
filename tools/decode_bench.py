"""Decoding benchmark: frames per second of the decoder, the compute floor, and peak memory vs frame count.

For each size it builds the default-size (-q 4) model of the architecture (--arch: mvenc's default) for the
given views x frames, writes it as a real .mvinr stream (weights untrained: speed does not depend on them,
motion fields of zeros cost the same warps), then decodes every frame with the
decoder (network, colour conversion, rounding; outputs are not written to disk) in a fresh process, and
reports decoded frames/s, frames/s per view (multi-view time instants per second), the network's FLOPs per
frame against this machine's measured float32 matmul peak, and the process's peak memory.

    python tools/decode_bench.py --sizes 160x96,1280x720 --views 4 --frames 16,64 --json bench/decode_cpu.json
    python tools/decode_bench.py --sizes 320x180 --frames 16 --arch mv-mginr
    python tools/decode_bench.py --sizes 1920x1080 --views 1 --frames 2 --band-rows 0,64,8   # memory by band
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import torch

from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, parameter_hash, write_stream
from mvcodec.color import ColorSpec
from mvcodec.compress.pruning import prune_masks
from mvcodec.compress.qat import CompressibleModel, export_tensors
from mvcodec.decoder import Decoder
from mvcodec.device import pick_device
from mvcodec.encoder.plan import config_for_quality
from mvcodec.fsutil import write_json
from mvcodec.model import Shape
from mvcodec.model.registry import DEFAULT, arch_of, by_name


def flops_per_frame(cfg) -> float:
    """Multiply-adds x 2 of the network for one output frame (the architecture's MACs per pixel, which count
    MV-MGINR's convs at their input resolution and the head on the padded frame, times the frame's pixels)."""
    return 2 * arch_of(cfg).macs_per_pixel(cfg) * cfg.height * cfg.width


def matmul_peak(device: torch.device, n: int = 2048, repeat: int = 10) -> float:
    """Measured float32 matmul throughput in FLOP/s (the machine's practical peak for this dtype)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeat / (time.perf_counter() - t0)


def make_stream(path: Path, width: int, height: int, views: int, frames: int, arch_name: str = DEFAULT):
    arch = by_name(arch_name)
    cfg = config_for_quality(arch, 4, Shape(views, frames, height, width))
    torch.manual_seed(0)
    net = arch.build(cfg)
    prunes = arch.presets is None  # MV-MGINR's phases (fit, prune, QAT); the pyramid architectures do not prune
    masks = prune_masks(dict(net.named_parameters()), arch.layout(cfg), 0.4) if prunes else None
    exported = export_tensors(CompressibleModel(net, cfg, masks, quantise=True))  # as mvenc codes
    tensors, digest = [e.tensor for e in exported], parameter_hash([e.values for e in exported])
    names = tuple(f"v{i}" for i in range(views))
    seq = SequenceHeader(names, frames, width, height, 8, ColorSpec(), 30, 1)
    with open(path, "wb") as f:
        write_stream(f, seq, [SegmentData(SegmentHeader(0, 0, frames), cfg, tensors, digest)])
    return cfg


def child(stream: Path, device: str, precision: str, batch: int | None, frames: int, rows: int | None = None) -> dict:
    """Decode the first `frames` frames of every view once (after a warm-up frame), in bands of `rows` rows
    (None: whole frames); runs in its own process for a clean peak memory."""
    dev = pick_device(device)
    with Decoder(stream, dev, precision, batch, rows) as dec:
        dec.model(0)
        next(iter(dec.frames(frames=[0])))
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        n = sum(1 for _ in dec.frames(frames=range(frames)))
        seconds = time.perf_counter() - t0
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
        views = dec.sequence.views
    return {
        "decoded_frames": n,
        "seconds": seconds,
        "fps": n / seconds,
        "fps_per_view": n / seconds / views,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gpu_peak_mib": gpu_peak,
        "path": "fast" if dec.fast else "reference",
    }


@click.command()
@click.option("--sizes", default="160x96,1280x720", show_default=True)
@click.option("--views", default=4, show_default=True)
@click.option("--frames", "frame_counts", default="16,64", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", default="auto", show_default=True)
@click.option("--batch", type=int, help="Frames a forward pass (default: the decoder's).")
@click.option("--arch", default=DEFAULT, show_default=True, help="The architecture of the streams.")
@click.option(
    "--band-rows", default="0", show_default=True, help="Comma-separated band heights to run (0: whole frames)."
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--child-stream", type=click.Path(path_type=Path), hidden=True)
@click.option("--child-frames", type=int, hidden=True)
@click.option("--child-rows", type=int, hidden=True)
def main(
    sizes,
    views,
    frame_counts,
    device,
    precision,
    batch,
    arch,
    band_rows,
    json_path,
    child_stream,
    child_frames,
    child_rows,
):
    """Each size gets one stream of the largest frame count; each run decodes its first N frames per view,
    so the model is the same and only the number of decoded frames changes."""
    if child_stream:
        print(json.dumps(child(child_stream, device, precision, batch, child_frames, child_rows)))
        return
    dev = pick_device(device)
    peak = matmul_peak(dev)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes.split(","):
            width, height = map(int, size.split("x"))
            counts = sorted(map(int, frame_counts.split(",")))
            stream = Path(tmp) / f"{size}.mvinr"
            cfg = make_stream(stream, width, height, views, counts[-1], arch)
            for frames, rows_ in ((f, r) for f in counts for r in map(int, band_rows.split(","))):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child-stream",
                        str(stream),
                        "--device",
                        device,
                        "--precision",
                        precision,
                        *(["--batch", str(batch)] if batch else []),
                        "--child-frames",
                        str(frames),
                        *(["--child-rows", str(rows_)] if rows_ else []),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                flops = flops_per_frame(cfg)
                r.update(
                    arch=arch,
                    size=size,
                    views=views,
                    frames=frames,
                    band_rows=rows_ or None,
                    params=arch_of(cfg).params(cfg),
                    bytes=stream.stat().st_size,
                    gflops_per_frame=flops / 1e9,
                    floor_fps=peak / flops,
                )
                rows.append(r)
                click.echo(
                    f"{size} x{frames}{f' in bands of {rows_}' if rows_ else ''}: {r['fps']:.1f} frames/s, "
                    f"{r['fps_per_view']:.1f} per view, "
                    f"floor {r['floor_fps']:.0f} frames/s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                    err=True,
                )
    machine = {
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_peak_gflops": peak / 1e9,
    }
    click.echo(f"machine: {machine}")
    click.echo(
        "| size | band rows | decoded frames per view | params | GFLOP/frame | decoded frames/s | frames/s per view | "
        "compute floor (frames/s) | share of floor | peak RSS (MiB) | peak GPU (MiB) | path |"
    )
    click.echo("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gpu = f"{r['gpu_peak_mib']:.0f}" if r["gpu_peak_mib"] is not None else "-"
        click.echo(
            f"| {r['size']} | {r['band_rows'] or 'whole'} | {r['frames']} | {r['params']} | "
            f"{r['gflops_per_frame']:.3f} | {r['fps']:.1f} | "
            f"{r['fps_per_view']:.1f} | {r['floor_fps']:.0f} | {100 * r['fps'] / r['floor_fps']:.0f}% | "
            f"{r['peak_rss_mib']:.0f} | {gpu} | {r['path']} |"
        )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, {"machine": machine, "rows": rows})


if __name__ == "__main__":
    main()
