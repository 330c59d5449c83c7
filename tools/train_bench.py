"""Training benchmark: fit MV-MGINR to a multi-view recording per preset, and the paper's ablations.

Scales every view with PyAV (libswscale, bicubic) to the requested size, then trains with the same code
path as mvenc. Prints markdown tables for BENCHMARKS.md and writes the figures as JSON.

    python tools/train_bench.py ../shared/data/caliscope/post_optimization -s 320x180 -f 8 \\
        --presets fast,medium --ablation-preset fast --json bench/train_cpu.json
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import av
import click
import torch

from mvcodec.encoder import model_config_for, pick_device, train_model
from mvcodec.fsutil import write_json
from mvcodec.io import RawWriter, VideoFormat, open_source, pix_fmt
from mvcodec.io.container import frame_planes
from mvcodec.model import ablate
from mvcodec.train.fit import train_config


def scaled_copy(src: Path, dst: Path, width: int, height: int, frames: int) -> list[Path]:
    """Each cam_*.mp4 (or other video) of `src` scaled to width x height as MIV-named 8-bit raw files."""
    fmt = pix_fmt("yuv420p")
    out = []
    for k, path in enumerate(sorted(p for p in src.iterdir() if p.suffix in {".mp4", ".mkv", ".mov"})):
        target = dst / f"v{k}_texture_{width}x{height}_yuv420p.yuv"
        with av.open(str(path)) as c, RawWriter(target, VideoFormat(width, height, fmt, 30)) as w:
            for i, frame in enumerate(c.decode(video=0)):
                if i == frames:
                    break
                w.write(frame_planes(frame.reformat(width=width, height=height, interpolation="BICUBIC"), fmt))
        out.append(target)
    return out


def run(source, cfg, tcfg, device, label):
    torch.manual_seed(tcfg.seed)
    t0 = time.monotonic()
    r = train_model(source, cfg, tcfg, device, work=None, progress=False, log=lambda *_: None)
    q = r.quality
    row = {
        "run": label,
        "params": cfg.params,
        "epochs": tcfg.epochs,
        "psnr_y": q["psnr_y"],
        "psnr_yuv": q["psnr_yuv"],
        "ssim": q["ssim"],
        "train_seconds": r.train_seconds,
        "mask_seconds": r.mask_seconds,
        "train_fps": r.frames_per_second,
        "wall_seconds": time.monotonic() - t0,
    }
    click.echo(
        f"{label}: {json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})}", err=True
    )
    return row


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-s", "--size", default="320x180", show_default=True)
@click.option("-f", "--frames", default=8, show_default=True)
@click.option("-q", "--quality", default=4, show_default=True)
@click.option("--presets", default="fast,medium", show_default=True)
@click.option("--ablation-preset", default="fast", show_default=True, help="Preset of the ablation runs ('' skips).")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def main(src, size, frames, quality, presets, ablation_preset, device, json_path):
    width, height = (int(x) for x in size.lower().split("x"))
    dev = pick_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        source = open_source(scaled_copy(src, Path(tmp), width, height, frames))
        cfg = model_config_for(source, quality, None)
        rows, ablations = [], []
        for preset in filter(None, presets.split(",")):
            rows.append(run(source, cfg, train_config(preset), dev, preset))
        if ablation_preset:
            tcfg = train_config(ablation_preset)
            ablations.append(run(source, cfg, tcfg, dev, "full model"))
            ablations.append(run(source, ablate(cfg, "time_view"), tcfg, dev, "w/o time- and view-indexed grids"))
            ablations.append(run(source, ablate(cfg, "time_view_grid"), tcfg, dev, "w/o integrated time-and-view grid"))
            ablations.append(run(source, cfg, replace(tcfg, motion_weight=0.0), dev, "w/o motion mask"))
    record = {
        "source": str(src),
        "views": source.num_views,
        "frames": frames,
        "size": size,
        "quality": quality,
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "presets": rows,
        "ablations": ablations,
    }
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, record)
    click.echo("| preset | epochs | params | PSNR-Y | PSNR-YUV | SSIM | train time (s) | training fps |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for r in rows:
        click.echo(
            f"| {r['run']} | {r['epochs']} | {r['params']} | {r['psnr_y']:.2f} | {r['psnr_yuv']:.2f} | "
            f"{r['ssim']:.4f} | {r['train_seconds']:.0f} | {r['train_fps']:.1f} |"
        )
    if ablations:
        click.echo("\n| model | params | PSNR-Y | PSNR-YUV | SSIM | vs full (PSNR-YUV) |")
        click.echo("|---|---|---|---|---|---|")
        for r in ablations:
            click.echo(
                f"| {r['run']} | {r['params']} | {r['psnr_y']:.2f} | {r['psnr_yuv']:.2f} | {r['ssim']:.4f} | "
                f"{r['psnr_yuv'] - ablations[0]['psnr_yuv']:+.2f} dB |"
            )


if __name__ == "__main__":
    main()
