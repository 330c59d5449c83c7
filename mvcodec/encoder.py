"""Source -> trained MV-MGINR models (one per segment) -> compressed tensors -> .mvinr, checked by decoding."""

from __future__ import annotations

import io
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mvcodec import __version__
from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, parameter_hash, write_stream
from mvcodec.bitstream.syntax import CHUNK_OVERHEAD
from mvcodec.color import ColorSpec
from mvcodec.decoder import Decoder, pick_device  # noqa: F401  (mvenc's --device)
from mvcodec.errors import InputError
from mvcodec.fsutil import atomic_write
from mvcodec.io import MultiViewSource
from mvcodec.metrics import bits_per_pixel, frame_quality, kbps, mean_quality
from mvcodec.model import MVMGINR, ModelConfig, format_split, solve_config
from mvcodec.progress import Progress
from mvcodec.train.compress import (
    CompressConfig,
    CompressibleMVMGINR,
    ExportedTensor,
    export_tensors,
    prune_masks,
)
from mvcodec.train.fit import FrameStore, TrainConfig, evaluate, fit, read_checkpoint
from mvcodec.train.motion import motion_masks, source_fingerprint

QUALITY_LEVELS = range(1, 9)
DEFAULT_QUALITY = 4
PARAMS_PER_PIXEL_AT_4 = 0.002  # the paper's 0.0166 bpp at 8 bits per parameter
MIN_PARAMS_AT_4 = 50_000  # small inputs: a floor so the network can still learn the content
DEFAULT_SEGMENT_FRAMES = 100  # the papers fit 65-100 frames per model


def params_for_quality(q: int, views: int, frames: int, width: int, height: int) -> int:
    """Parameter budget of quality level q (1..8): doubling per level, with a floor for small inputs."""
    if q not in QUALITY_LEVELS:
        raise InputError(f"-q: quality level must be 1 to 8, got {q}")
    scale = 2.0 ** (q - DEFAULT_QUALITY)
    return round(max(PARAMS_PER_PIXEL_AT_4 * views * frames * width * height, MIN_PARAMS_AT_4) * scale)


def parse_params(text: str) -> int:
    """A parameter count from '250000', '250k' or '1.5M'."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise InputError(f"--params: cannot read '{text}'; write a count like 250000, 250k or 1.5M")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if value < 1000:
        raise InputError(f"--params: {text} is too small; give at least 1k parameters")
    return round(value)


@dataclass
class EncodeResult:
    model: MVMGINR
    quality: dict
    train_seconds: float
    mask_seconds: float
    frames_per_second: float
    device: str
    store: FrameStore | None = None
    masks: np.ndarray | None = None
    fingerprint: str = ""


BITS_PER_PARAM = 3.0  # file bits per model parameter after the default compression (measured: BENCHMARKS.md)


LAMBDA_AT_4 = 8.0  # QAT's rate-distortion weight at -q 4 (R in bits per pixel); it doubles per level


def lambda_for_quality(q: int | None) -> float:
    """lambda of L = R + lambda * D for quality level q (default 4)."""
    return LAMBDA_AT_4 * 2.0 ** ((q or DEFAULT_QUALITY) - DEFAULT_QUALITY)


def target_bpp_of(source: MultiViewSource, bpp: float | None, kbps_: float | None) -> float | None:
    """The rate to reach in bits per pixel, from --bpp or from -b/--bitrate (kbit/s at the source's fps)."""
    if bpp is not None and kbps_ is not None:
        raise InputError("give either --bpp or -b/--bitrate, not both")
    if kbps_ is not None:
        if not kbps_ > 0:
            raise InputError(f"-b/--bitrate must be positive, got {kbps_}")
        f = source.fmt
        return kbps_ * 1000 / (float(f.fps) * source.num_views * f.width * f.height)
    if bpp is not None and not bpp > 0:
        raise InputError(f"--bpp must be positive, got {bpp}")
    return bpp


def params_for_bytes(target_bytes: int, ccfg: CompressConfig) -> int:
    """Model size whose compressed stream is expected to take target_bytes."""
    return max(round(target_bytes * 8 / BITS_PER_PARAM), 1000)


def model_config_for(
    source: MultiViewSource, quality: int | None, params: int | None, at_least: bool = False
) -> ModelConfig:
    """The model size for a source (or one segment of it) from --params (at_least: or the smallest model
    above them, for rate control), or else from -q."""
    f = source.fmt
    if params and at_least:
        return config_at_least(params, source.num_views, source.num_frames, f.width, f.height)
    if params:
        return solve_config(source.num_views, source.num_frames, f.height, f.width, params)
    return config_for_quality(quality or DEFAULT_QUALITY, source.num_views, source.num_frames, f.width, f.height)


def config_for_quality(q: int, views: int, frames: int, width: int, height: int) -> ModelConfig:
    """The model of quality level q."""
    return config_at_least(params_for_quality(q, views, frames, width, height), views, frames, width, height)


def config_at_least(budget: int, views: int, frames: int, width: int, height: int) -> ModelConfig:
    """The model of a budget; where the budget is below the smallest model for this many views and frames
    (the grids grow with both), the budget is raised until a model fits."""
    for _ in range(40):
        try:
            return solve_config(views, frames, height, width, budget)
        except InputError:
            budget = round(budget * 1.25)
    raise InputError(f"no model size fits {views} views x {frames} frames at {width}x{height}; use --params")


def prepare_checkpoints(checkpoints: list[Path], resume: bool) -> None:
    """Without --resume: refuse if an interrupted encode left a checkpoint, delete finished ones (outputs are
    overwritten, as codecs do)."""
    if resume:
        return
    for checkpoint in checkpoints:
        if checkpoint.exists():
            meta, _ = read_checkpoint(checkpoint)
            if meta["epoch"] < meta["train"]["epochs"]:
                raise InputError(
                    f"{checkpoint}: an interrupted encode left this checkpoint; add --resume to continue it, "
                    "or delete it"
                )
    for checkpoint in checkpoints:
        checkpoint.unlink(missing_ok=True)


def train_model(
    source: MultiViewSource,
    cfg: ModelConfig,
    tcfg: TrainConfig,
    device: torch.device,
    *,
    work: Path | None,
    resume: bool = False,
    progress: bool = True,
    log=print,
) -> EncodeResult:
    """Fit the network to the source; `work` is the path prefix of the checkpoint and the mask cache."""
    checkpoint = Path(f"{work}.ckpt") if work else None
    if checkpoint:
        prepare_checkpoints([checkpoint], resume)
    if work:
        Path(work).parent.mkdir(parents=True, exist_ok=True)
    log(f"model: {format_split(cfg)}")
    log(
        f"layout: latent {cfg.latent_h}x{cfg.latent_w}, strides {','.join(map(str, cfg.strides))}, "
        f"widths {','.join(map(str, cfg.widths))}, grid channels c1={cfg.c1} c2={cfg.c2}"
    )
    t0 = time.monotonic()
    fingerprint = source_fingerprint(source)
    masks = None
    if tcfg.motion_weight:
        masks = motion_masks(source, Path(f"{work}.motion.npz") if work else None, progress=progress, key=fingerprint)
    mask_seconds = time.monotonic() - t0
    store = FrameStore(source, device)
    torch.manual_seed(tcfg.seed)
    model = MVMGINR(cfg)
    result = fit(
        model,
        store,
        masks,
        tcfg,
        checkpoint=checkpoint,
        resume=resume,
        fingerprint=fingerprint,
        progress=progress,
    )
    quality = evaluate(result.model, store)
    return EncodeResult(
        result.model,
        quality,
        result.seconds,
        mask_seconds,
        result.frames_per_second,
        str(device),
        store,
        masks,
        fingerprint,
    )


def stage_checkpoints(prefix: str) -> list[Path]:
    """The checkpoint of each stage of one segment's encode: fit, prune + fine-tune, QAT."""
    return [Path(f"{prefix}{suffix}") for suffix in (".ckpt", ".prune.ckpt", ".qat.ckpt")]


def prune_stage(
    result: EncodeResult, tcfg: TrainConfig, ccfg: CompressConfig, *, work: str | None, progress=True, log=print
) -> CompressibleMVMGINR:
    """Stage 2: prune the fitted model and fine-tune it with the masks fixed (resumable)."""
    prune_ckpt = stage_checkpoints(work)[1] if work else None
    pruned = CompressibleMVMGINR(result.model, prune_masks(result.model, ccfg.sparsity))
    kept = sum(int(m.sum()) for m in pruned.buffers())
    total = sum(m.numel() for m in pruned.buffers())
    log(f"pruning: {ccfg.sparsity:.0%} of the conv weights ({total - kept} of {total}), {ccfg.prune_epochs} epochs")
    stage2 = replace(tcfg, epochs=ccfg.prune_epochs, lr=tcfg.lr * ccfg.prune_lr, warmup=0.0)
    tag = {"stage": "prune", "sparsity": ccfg.sparsity}
    _fit_stage(pruned, result, stage2, prune_ckpt, tag, "fine-tuning", progress)
    return pruned


def _fit_stage(model, result: EncodeResult, stage: TrainConfig, checkpoint, tag: dict, label: str, progress) -> None:
    """Train a compression stage (none when it has 0 epochs), resuming from its checkpoint."""
    if stage.epochs:
        fit(
            model,
            result.store,
            result.masks,
            stage,
            checkpoint=checkpoint,
            resume=True,
            fingerprint=result.fingerprint,
            progress=progress,
            tag=tag,
            label=label,
        )


def qat_stage(
    pruned: CompressibleMVMGINR,
    result: EncodeResult,
    tcfg: TrainConfig,
    ccfg: CompressConfig,
    *,
    work: str | None,
    progress=True,
    log=print,
) -> CompressibleMVMGINR:
    """Stage 3: learned steps, Quant-Noise and the rate term on the pruned model (resumable). Returns the
    quantising model in eval mode, ready for export."""
    qat_ckpt = stage_checkpoints(work)[2] if work else None
    quantised = CompressibleMVMGINR(pruned.base, pruned.masks(), quantise=True)
    quantised.noise_seed = tcfg.seed
    stage3 = replace(
        tcfg,
        epochs=ccfg.qat_epochs,
        lr=tcfg.lr * ccfg.qat_lr,
        warmup=0.0,
        rate_weight=1.0 / ccfg.rate_lambda,
        step_lr=tcfg.lr * ccfg.step_lr,
    )
    log(f"quantisation-aware training: {ccfg.qat_epochs} epochs, lambda {ccfg.rate_lambda:g}")
    tag = {"stage": "qat", "sparsity": ccfg.sparsity, "lambda": ccfg.rate_lambda}
    _fit_stage(quantised, result, stage3, qat_ckpt, tag, "QAT", progress)
    quantised.train(False)
    return quantised


def compress_stages(
    result: EncodeResult, tcfg: TrainConfig, ccfg: CompressConfig, *, work: str | None, progress=True, log=print
) -> CompressibleMVMGINR:
    """Stages 2 and 3 on a fitted model: prune + fine-tune, then QAT with the rate term; each resumable
    from its checkpoint. Returns the quantising model, ready for export."""
    pruned = prune_stage(result, tcfg, ccfg, work=work, progress=progress, log=log)
    return qat_stage(pruned, result, tcfg, ccfg, work=work, progress=progress, log=log)


def quality_table(source: MultiViewSource, quality: dict) -> list[str]:
    """Per-view and mean PSNR (Y, U, V, YUV) and SSIM, as a table."""
    lines = [f"{'view':<10} {'PSNR-Y':>8} {'PSNR-U':>8} {'PSNR-V':>8} {'PSNR-YUV':>9} {'SSIM':>7}"]
    rows = list(zip(source.view_names, quality["per_view"], strict=True)) + [("mean", quality)]
    for name, q in rows:
        lines.append(
            f"{name:<10} {q['psnr_y']:8.3f} {q['psnr_u']:8.3f} {q['psnr_v']:8.3f} {q['psnr_yuv']:9.3f} {q['ssim']:7.4f}"
        )
    return lines


def plan_segments(frames: int, segment_frames: int | None) -> list[tuple[int, int]]:
    """(first frame, frame count) of each segment: runs of segment_frames, or by default as few segments
    of at most DEFAULT_SEGMENT_FRAMES as possible, of near-equal length."""
    if segment_frames is not None and segment_frames < 1:
        raise InputError("--segment-frames must be 1 or more")
    if segment_frames is None:
        count = math.ceil(frames / DEFAULT_SEGMENT_FRAMES)
        segment_frames = math.ceil(frames / count)
    return [(first, min(segment_frames, frames - first)) for first in range(0, frames, segment_frames)]


def segment_source(source: MultiViewSource, first: int, count: int) -> MultiViewSource:
    """The frames [first, first + count) of a source (sharing its readers)."""
    return replace(source, seek=source.seek + first, num_frames=count)


_UNSAFE = re.compile(r"[/\\:\x00-\x1f\x7f]")


def stream_view_names(names: list[str]) -> tuple[str, ...]:
    """View names usable as file names (at most 255 UTF-8 bytes, no path separators), made unique."""
    out: list[str] = []
    for i, name in enumerate(names):
        safe = _UNSAFE.sub("_", name).encode("utf-8")[:200].decode("utf-8", "ignore")
        safe = f"v{i}" if safe in ("", ".", "..") or safe in out else safe
        out.append(safe)
    return tuple(out)


def tensor_bytes(exported: list[ExportedTensor]) -> int:
    """Bytes the tensors take in the stream (TNSR chunks with their length, type and CRC)."""
    return sum(len(e.tensor.to_bytes()) + CHUNK_OVERHEAD for e in exported)


MIN_LOG2_SCALE, MAX_LOG2_SCALE = -6.0, 12.0  # rate control: steps from 1/64 to 4096 times the trained ones


def export_for_target(model: CompressibleMVMGINR, target: int | None) -> tuple[list[ExportedTensor], float]:
    """The model's coded tensors and the step scale used: the trained steps (scale 1) without a target;
    with one, the scale 2^k that brings the tensors' bytes closest to the target without exceeding it
    (bisection on k; the size falls as the steps grow)."""
    if target is None:
        return export_tensors(model), 1.0
    lo, hi = MIN_LOG2_SCALE, MAX_LOG2_SCALE
    best = export_tensors(model, 2.0**lo)
    if tensor_bytes(best) <= target:
        return best, 2.0**lo
    best = export_tensors(model, 2.0**hi)
    if tensor_bytes(best) > target:
        return best, 2.0**hi
    for _ in range(14):
        mid = (lo + hi) / 2
        trial = export_tensors(model, 2.0**mid)
        if tensor_bytes(trial) <= target:
            hi, best = mid, trial
        else:
            lo = mid
    return best, 2.0**hi


def measure_stream(path: Path, source: MultiViewSource, device: torch.device, progress: bool = True) -> dict:
    """Decode a written stream with the real decoder and measure it against the source, per view and overall."""
    per_view: list[list[dict]] = [[] for _ in range(source.num_views)]
    bar = Progress(source.num_views * source.num_frames, "checking", "frames", enabled=progress)
    with Decoder(path, device) as dec:
        for out in dec.frames():
            per_view[out.view].append(
                frame_quality(source.read(out.view, out.frame), out.planes, dec.sequence.bit_depth)
            )
            bar.update()
    bar.close()
    views = [mean_quality(q) for q in per_view]
    return {**mean_quality(views), "per_view": views}


@dataclass
class EncodeOptions:
    """What mvenc was asked for, beyond the source and the output."""

    tcfg: TrainConfig
    device: torch.device
    ccfg: CompressConfig = CompressConfig()
    quality: int | None = None
    params: int | None = None
    target_bpp: float | None = None  # rate control: the file size to reach, in bits per pixel
    segment_frames: int | None = None
    resume: bool = False
    progress: bool = True
    keep_checkpoints: bool = False
    command: str = ""


def encode(source: MultiViewSource, output: Path, opts: EncodeOptions, log=print) -> dict:
    """Encode a source to `output` (.mvinr, written atomically), decode it back and return the summary record."""
    started = time.monotonic()
    f = source.fmt
    plan = plan_segments(source.num_frames, opts.segment_frames)
    prefixes = [str(output)] if len(plan) == 1 else [f"{output}.s{k}" for k in range(len(plan))]
    prepare_checkpoints([c for p in prefixes for c in stage_checkpoints(p)], opts.resume)
    params, ccfg = opts.params, opts.ccfg
    target_bytes = None
    if opts.target_bpp is not None:
        target_bytes = int(opts.target_bpp * source.num_views * source.num_frames * f.width * f.height / 8)
        params = params or params_for_bytes(target_bytes, ccfg)
        log(f"rate control: target {target_bytes} bytes ({opts.target_bpp:g} bpp), model of {params} parameters")
    models, results, configs = [], [], []
    for k, (first, count) in enumerate(plan):
        sub = segment_source(source, first, count)
        budget = round(params * count / source.num_frames) if params else None
        try:
            cfg = model_config_for(sub, opts.quality, budget, at_least=opts.params is None)
        except InputError as e:
            if len(plan) == 1:
                raise
            raise InputError(f"segment {k} ({count} frames) gets {budget} of --params {params}: {e}") from None
        if len(plan) > 1:
            log(f"segment {k + 1}/{len(plan)}: frames {first}-{first + count - 1}")
        result = train_model(
            sub, cfg, opts.tcfg, opts.device, work=prefixes[k], resume=True, progress=opts.progress, log=log
        )
        models.append(compress_stages(result, opts.tcfg, ccfg, work=prefixes[k], progress=opts.progress, log=log))
        result.store = result.masks = None  # the frames are no longer needed
        results.append(result)
        configs.append(cfg)
    train_seconds = sum(r.train_seconds for r in results)
    seq = SequenceHeader(
        stream_view_names(source.view_names),
        source.num_frames,
        source.fmt.width,
        source.fmt.height,
        source.fmt.bit_depth,
        ColorSpec(),
        source.fmt.fps,
        len(plan),
    )
    info = {
        "encoder": f"mvcodec {__version__}",
        "command": opts.command,
        "train": asdict(opts.tcfg),
        "compress": asdict(ccfg),
        "target_bpp": opts.target_bpp,
        "device": str(opts.device),
        "train_seconds": round(train_seconds, 3),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    exported = [export_tensors(m) for m in models]  # with a target: to measure the stream's fixed overhead
    scales = [1.0] * len(models)
    if target_bytes is not None:
        overhead = stream_size(seq, plan, configs, exported, info) - sum(tensor_bytes(e) for e in exported)
        for k, (model, (_, count)) in enumerate(zip(models, plan, strict=True)):
            share = int((target_bytes - overhead) * count / source.num_frames)
            exported[k], scales[k] = export_for_target(model, share)
    segments = segment_data(plan, configs, exported)
    with atomic_write(output) as out:
        size = write_stream(out, seq, segments, info)
    quality = measure_stream(output, source, opts.device, opts.progress)
    if not opts.keep_checkpoints:
        for p in prefixes:
            for path in [*stage_checkpoints(p), Path(p + ".motion.npz")]:
                path.unlink(missing_ok=True)
    unquantised = sum(r.quality["psnr_yuv"] * n for r, (_, n) in zip(results, plan, strict=True)) / source.num_frames
    return {
        **source.describe(),
        "bytes": size,
        "bpp": bits_per_pixel(size, source.num_views, source.num_frames, f.width, f.height),
        "kbps": kbps(size, source.num_frames, float(f.fps)),
        **{k: v for k, v in quality.items() if k != "per_view"},
        "per_view": [dict(q, view=n) for n, q in zip(seq.view_names, quality["per_view"], strict=True)],
        "psnr_yuv_unquantised": unquantised,
        "segments": [
            {"first_frame": a, "frames": b, "params": c.params} for (a, b), c in zip(plan, configs, strict=True)
        ],
        "params": sum(c.params for c in configs),
        "sparsity": ccfg.sparsity,
        "rate_lambda": ccfg.rate_lambda,
        "target_bpp": opts.target_bpp,
        "step_scale": scales,
        "epochs": opts.tcfg.epochs,
        "train_seconds": train_seconds,
        "train_fps": sum(r.frames_per_second for r in results) / len(results),
        "mask_seconds": sum(r.mask_seconds for r in results),
        "encode_seconds": time.monotonic() - started,
        "device": str(opts.device),
    }


def segment_data(plan, configs, exported) -> list[SegmentData]:
    return [
        SegmentData(SegmentHeader(k, first, count), cfg, [e.tensor for e in ex], parameter_hash([e.values for e in ex]))
        for k, ((first, count), cfg, ex) in enumerate(zip(plan, configs, exported, strict=True))
    ]


def stream_size(seq, plan, configs, exported, info) -> int:
    """Size in bytes of the stream these segments make."""
    buf = io.BytesIO()
    return write_stream(buf, seq, segment_data(plan, configs, exported), info)


def summary_lines(source: MultiViewSource, record: dict, output: Path) -> list[str]:
    """The end-of-encode summary, as HM and x265 print it: rate, then quality per view and overall."""
    lines = [
        f"wrote {output}: {record['bytes']} bytes, {record['bpp']:.5f} bpp, {record['kbps']:.2f} kbps "
        f"at {record['fps']:g} fps ({record['views']} views x {record['frames']} frames, {record['params']} params)",
        "quality of the decoded stream (the float network before quantisation: "
        f"PSNR-YUV {record['psnr_yuv_unquantised']:.3f} dB):",
    ]
    lines += quality_table(source, record)
    lines.append(
        f"encoded in {record['encode_seconds']:.1f} s (training {record['train_seconds']:.1f} s at "
        f"{record['train_fps']:.1f} frames/s, motion masks {record['mask_seconds']:.1f} s) on {record['device']}"
    )
    return lines
