"""Source -> trained MV-MGINR model: size choice, motion masks, fitting, quality report."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mvcodec.errors import InputError
from mvcodec.io import MultiViewSource
from mvcodec.model import MVMGINR, ModelConfig, format_split, solve_config
from mvcodec.train.fit import FrameStore, TrainConfig, evaluate, fit, read_checkpoint
from mvcodec.train.motion import motion_masks, source_fingerprint

QUALITY_LEVELS = range(1, 9)
DEFAULT_QUALITY = 4
PARAMS_PER_PIXEL_AT_4 = 0.002  # the paper's 0.0166 bpp at 8 bits per parameter
MIN_PARAMS_AT_4 = 50_000  # small inputs: a floor so the network can still learn the content


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


def pick_device(name: str) -> torch.device:
    """auto: CUDA when available, else CPU; cuda: InputError where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)


@dataclass
class EncodeResult:
    model: MVMGINR
    quality: dict
    train_seconds: float
    mask_seconds: float
    frames_per_second: float
    device: str


def model_config_for(source: MultiViewSource, quality: int | None, params: int | None) -> ModelConfig:
    """The model size for a source from --params, or else from -q."""
    f = source.fmt
    budget = params or params_for_quality(
        quality or DEFAULT_QUALITY, source.num_views, source.num_frames, f.width, f.height
    )
    return solve_config(source.num_views, source.num_frames, f.height, f.width, budget)


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
    if checkpoint and checkpoint.exists() and not resume:
        meta, _ = read_checkpoint(checkpoint)
        if meta["epoch"] < meta["train"]["epochs"]:
            raise InputError(
                f"{checkpoint}: an interrupted encode left this checkpoint; add --resume to continue it, or delete it"
            )
        checkpoint.unlink()  # the finished result of an earlier run: overwritten, as codecs overwrite outputs
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
    return EncodeResult(result.model, quality, result.seconds, mask_seconds, result.frames_per_second, str(device))


def quality_table(source: MultiViewSource, quality: dict) -> list[str]:
    """Per-view and mean PSNR (Y, U, V, YUV) and SSIM, as a table."""
    lines = [f"{'view':<10} {'PSNR-Y':>8} {'PSNR-U':>8} {'PSNR-V':>8} {'PSNR-YUV':>9} {'SSIM':>7}"]
    rows = list(zip(source.view_names, quality["per_view"], strict=True)) + [("mean", quality)]
    for name, q in rows:
        lines.append(
            f"{name:<10} {q['psnr_y']:8.3f} {q['psnr_u']:8.3f} {q['psnr_v']:8.3f} {q['psnr_yuv']:9.3f} {q['ssim']:7.4f}"
        )
    return lines
