"""Training benchmark: fit MV-MGINR to a multi-view recording per preset, the paper's ablations, and the
CUDA training path against plain float32.

Scales every view with PyAV (libswscale, bicubic) to the requested size, then trains with the same code
path as mvenc. Prints markdown tables for BENCHMARKS.md and writes the figures as JSON.

    python tools/train_bench.py ../shared/data/caliscope/post_optimization -s 320x180 -f 8 \\
        --presets fast,medium --ablation-preset fast --json bench/train_cpu.json

--speed-check N trains the same model (same seed, data and motion masks) N epochs once per training path:
mvenc's CUDA path (bf16 autocast, channels-last, cuDNN autotuning; `bf16-compile` adds torch.compile) and
plain float32 eager, with PyTorch's default TF32 setting for convolutions and with TF32 off. Throughput
is frames per second of training over the epochs after the first (the first holds cuDNN's autotuning and
compilation); quality is the PSNR-YUV of each run's reconstruction. The issue's target: the CUDA path at
least 2x plain float32 eager with quality within 0.1 dB. On the CPU every path trains in float32.

    python tools/train_bench.py ../shared/data/caliscope/post_optimization -s 1280x720 -f 57 \\
        --presets '' --ablation-preset '' --speed-check 30 --speed-paths bf16,bf16-compile,fp32,fp32-no-tf32 \\
        --json bench/train_speed_cuda_1280x720.json
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import av
import click
import torch

from mvcodec.compress.qat import CompressibleModel
from mvcodec.device import pick_device
from mvcodec.encoder.phases import run_phases
from mvcodec.encoder.plan import model_config_for, shape_of
from mvcodec.encoder.recipe import Recipe, recipe
from mvcodec.fsutil import write_json
from mvcodec.io import MultiViewSource, RawWriter, VideoFormat, open_source, pix_fmt
from mvcodec.io.container import frame_planes
from mvcodec.model import ModelConfig, ablate
from mvcodec.model.registry import arch_of, by_name
from mvcodec.train.fit import FrameStore, TrainConfig, TrainingData, evaluate, fit
from mvcodec.train.motion import motion_masks

# key: (label, TrainConfig.precision, torch.compile, TF32 for convolutions and matmuls: None keeps PyTorch's default)
SPEED_PATHS = {
    "bf16": ("CUDA path: bf16 autocast, channels-last", "bf16", False, None),
    "bf16-compile": ("CUDA path + torch.compile", "bf16", True, None),
    "fp32": ("fp32 eager, PyTorch defaults", "fp32", False, None),
    "fp32-no-tf32": ("fp32 eager, TF32 off", "fp32", False, False),
}

ARCH = "mv-mginr"  # the network whose fit (and the paper's ablations) this benchmark times


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


def fit_recipe(preset: str, **train) -> Recipe:
    """The preset's fit phase alone (the benchmark measures the fit, not the compression phases); `train`
    are TrainConfig fields (None keeps the preset's)."""
    rec = recipe(preset, arch=ARCH, **train)
    return replace(rec, phases=rec.phases[:1])


def run(source, cfg, rec: Recipe, device, label):
    torch.manual_seed(rec.train.seed)
    t0 = time.monotonic()
    r = run_phases(source, cfg, rec, device, prefix=None, progress=False, log=lambda *_: None)
    q = r.float_quality
    row = {
        "run": label,
        "params": arch_of(cfg).params(cfg),
        "epochs": rec.train.epochs,
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


@contextmanager
def tf32(on: bool | None):
    """TF32 for cuDNN convolutions and CUDA matmuls set to `on` (None: as they are), restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if on is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def compare_paths(source: MultiViewSource, cfg, tcfg: TrainConfig, device: torch.device, keys: list[str]) -> list[dict]:
    """Train the same model once per training path in `keys`: steady frames/s, quality and peak GPU memory."""
    masks = motion_masks(source, progress=False) if tcfg.motion_weight else None
    store = FrameStore(source, device)
    data = TrainingData(store, masks)
    arch = arch_of(cfg)
    frames_per_epoch = store.views * store.frames
    cuda = device.type == "cuda"
    rows = []
    for key in keys:
        label, precision, compile_, tf32_on = SPEED_PATHS[key]
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        ends = []  # time at each epoch's end: fit reads the epoch's loss back to the host there (a device sync)
        torch.manual_seed(tcfg.seed)
        with tf32(tf32_on):
            tf32_used = torch.backends.cudnn.allow_tf32
            t0 = time.monotonic()
            fitted = fit(
                CompressibleModel(arch.build(cfg), cfg),
                data,
                replace(tcfg, precision=precision, compile=compile_),
                progress=False,
                on_epoch=lambda epoch, loss, ends=ends: ends.append(time.monotonic()),
            )
            quality = evaluate(fitted.model, store)
        row = {
            "key": key,
            "run": label,
            "precision": precision if cuda else "fp32",
            "compile": compile_,
            "tf32": tf32_used if cuda else None,
            "epochs": tcfg.epochs,
            "first_epoch_seconds": ends[0] - t0,
            "train_seconds": ends[-1] - t0,
            "steady_fps": frames_per_epoch * (len(ends) - 1) / (ends[-1] - ends[0]),
            "final_loss": fitted.final_loss,
            "psnr_y": quality["psnr_y"],
            "psnr_yuv": quality["psnr_yuv"],
            "ssim": quality["ssim"],
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        }
        rows.append(row)
        click.echo(
            f"speed check: {label}: {row['steady_fps']:.1f} frames/s, PSNR-YUV {row['psnr_yuv']:.2f} dB", err=True
        )
    return rows


def speed_verdict(rows: list[dict]) -> dict | None:
    """mvenc's CUDA path against fp32 eager with PyTorch's defaults: speed-up, quality change, target met."""
    by_key = {r["key"]: r for r in rows}
    if "bf16" not in by_key or "fp32" not in by_key:
        return None
    fast, base = by_key["bf16"], by_key["fp32"]
    speedup = fast["steady_fps"] / base["steady_fps"]
    delta = fast["psnr_yuv"] - base["psnr_yuv"]
    return {"speedup": speedup, "psnr_yuv_delta": delta, "met": speedup >= 2.0 and abs(delta) <= 0.1}


def markdown(record: dict) -> list[str]:
    """The BENCHMARKS.md tables of a record."""
    out = []
    if record["presets"]:
        out += ["| preset | epochs | params | PSNR-Y | PSNR-YUV | SSIM | train time (s) | training fps |"]
        out += ["|---|---|---|---|---|---|---|---|"]
        for r in record["presets"]:
            out.append(
                f"| {r['run']} | {r['epochs']} | {r['params']} | {r['psnr_y']:.2f} | {r['psnr_yuv']:.2f} | "
                f"{r['ssim']:.4f} | {r['train_seconds']:.0f} | {r['train_fps']:.1f} |"
            )
    if ablations := record["ablations"]:
        out += ["", "| model | params | PSNR-Y | PSNR-YUV | SSIM | vs full (PSNR-YUV) | training fps |"]
        out += ["|---|---|---|---|---|---|---|"]
        for r in ablations:
            out.append(
                f"| {r['run']} | {r['params']} | {r['psnr_y']:.2f} | {r['psnr_yuv']:.2f} | {r['ssim']:.4f} | "
                f"{r['psnr_yuv'] - ablations[0]['psnr_yuv']:+.2f} dB | {r['train_fps']:.1f} |"
            )
    if speed := record.get("speed_check"):
        out += ["", "| training path | TF32 | steady fps | first epoch (s) | PSNR-YUV | SSIM | peak GPU memory (MiB) |"]
        out += ["|---|---|---|---|---|---|---|"]
        for r in speed:
            mem = "-" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}"
            tf = "-" if r["tf32"] is None else ("on" if r["tf32"] else "off")
            out.append(
                f"| {r['run']} | {tf} | {r['steady_fps']:.1f} | {r['first_epoch_seconds']:.1f} | "
                f"{r['psnr_yuv']:.2f} | {r['ssim']:.4f} | {mem} |"
            )
        if record["device"] == "cpu":
            out += ["", "Note: on the CPU every path trains in float32; the check is meant for CUDA."]
        if v := record.get("speed_verdict"):
            out += [
                "",
                f"CUDA path vs fp32 eager (PyTorch defaults): {v['speedup']:.2f}x, "
                f"PSNR-YUV {v['psnr_yuv_delta']:+.3f} dB "
                f"(target: at least 2x, within 0.1 dB): {'met' if v['met'] else 'NOT met'}",
            ]
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-s", "--size", default="320x180", show_default=True, help="Scale every view to this size.")
@click.option("-f", "--frames", default=8, show_default=True, help="Frames per view.")
@click.option("-q", "--quality", default=4, show_default=True, help="Model size (mvenc -q).")
@click.option("--presets", default="fast,medium", show_default=True, help="Presets to run ('' skips).")
@click.option("--ablation-preset", default="fast", show_default=True, help="Preset of the ablation runs ('' skips).")
@click.option("--epochs", type=int, help="Override the epochs of every run (presets and ablations).")
@click.option("--speed-check", type=int, default=0, metavar="EPOCHS", help="Compare the training paths (0 skips).")
@click.option(
    "--speed-paths",
    default="bf16,fp32,fp32-no-tf32",
    show_default=True,
    help=f"Training paths of --speed-check, of: {', '.join(SPEED_PATHS)}.",
)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def main(src, size, frames, quality, presets, ablation_preset, epochs, speed_check, speed_paths, device, json_path):
    """Fit MV-MGINR to the videos in SRC per preset, run the ablations and compare the training paths."""
    width, height = (int(x) for x in size.lower().split("x"))
    keys = [k.strip() for k in speed_paths.split(",") if k.strip()]
    if unknown := [k for k in keys if k not in SPEED_PATHS]:
        raise click.BadParameter(
            f"unknown path {unknown[0]!r}; use {', '.join(SPEED_PATHS)}", param_hint="--speed-paths"
        )
    if speed_check == 1:
        raise click.BadParameter("needs 2 epochs or more (the first is not timed)", param_hint="--speed-check")
    dev = pick_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        source = open_source(scaled_copy(src, Path(tmp), width, height, frames))
        cfg = model_config_for(by_name(ARCH), shape_of(source), quality, None, False)
        rows, ablations, speed = [], [], []
        for preset in filter(None, presets.split(",")):
            rows.append(run(source, cfg, fit_recipe(preset, epochs=epochs), dev, preset))
        if ablation_preset:
            rec = fit_recipe(ablation_preset, epochs=epochs)
            same = [r for r in rows if r["run"] == ablation_preset]  # the full model was just trained so
            ablations.append({**same[0], "run": "full model"} if same else run(source, cfg, rec, dev, "full model"))
            if isinstance(cfg, ModelConfig):  # the grid ablations are MV-MGINR's
                ablations.append(run(source, ablate(cfg, "time_view"), rec, dev, "w/o time- and view-indexed grids"))
                ablations.append(
                    run(source, ablate(cfg, "time_view_grid"), rec, dev, "w/o integrated time-and-view grid")
                )
            no_motion = replace(rec, train=replace(rec.train, motion_weight=0.0))
            ablations.append(run(source, cfg, no_motion, dev, "w/o motion mask"))
        if speed_check:
            speed = compare_paths(source, cfg, fit_recipe("fast", epochs=speed_check).train, dev, keys)
    record = {
        "source": str(src),
        "views": source.num_views,
        "frames": frames,
        "size": size,
        "quality": quality,
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "presets": rows,
        "ablations": ablations,
        "speed_check": speed,
        "speed_verdict": speed_verdict(speed) if speed else None,
    }
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, record)
    for line in markdown(record):
        click.echo(line)


if __name__ == "__main__":
    main()
