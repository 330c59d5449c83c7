"""Overfitting a network (of any registered architecture) to a multi-view source: data on the device, the
training loop, checkpoints.

Training runs in RGB (as the papers), converted per batch from the source's YUV 4:2:0, which stays on
the device as integers. Quality is measured after converting the output back to YUV 4:2:0 at the
source's bit depth. A checkpoint (numpy .npz of plain arrays) holds the model, Adam's state, the position in
the epoch and the sampler's RNG state, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvcodec.color import ColorSpec, rgb_to_planes, yuv420_to_rgb
from mvcodec.compress.qat import NOISE_RAMP, CompressibleModel
from mvcodec.errors import InputError
from mvcodec.fsutil import atomic_write
from mvcodec.io import MultiViewSource, Planes
from mvcodec.metrics import frame_quality, mean_quality
from mvcodec.model.registry import arch_of, by_name
from mvcodec.presets import LOSSES
from mvcodec.progress import Progress
from mvcodec.train.loss import motion_aware_loss, yuv_mse_loss, yuv_psnr_loss
from mvcodec.train.optim import RowAdam

# 2: every phase checkpoints the CompressibleModel (keys model/base.*), with its arch; 3: row-lazy Adam state;
# 4: per-row statistics of the batch-row-priced latents; 5: TrainConfig.latent_proxy; 6: those statistics of the
# rounded latents; 7: TrainConfig.price_frames; 8: MV-Pyramid-MC's motion priced under a Laplace (model_mode 4),
# without per-row statistics; 9: TrainConfig.rate_warmup, and MV-Pyramid-MC's latents at 15x the learning rate;
# 10: MV-Pyramid-MC's latent grids priced in model_mode 5's 36 contexts
# 11: MV-Pyramid-MC's motion priced in model_mode 6 (located at the neighbours' median); 12: TrainConfig.noise_ramp;
# 13: the psnr-yuv loss's scale and the epoch's distortion so far; 14: TrainConfig.adam_beta2
CHECKPOINT_VERSION = 14

LEGACY_ARCH = "mv-mginr"  # the network of the checkpoints written before they named theirs


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (presets fill it; every field can be overridden)."""

    epochs: int
    batch_size: int = 2
    lr: float = 2e-3
    warmup: float = 0.1  # fraction of the steps with a linear warm-up
    min_lr: float = 0.0  # fraction of lr reached at the end of the cosine decay
    grad_clip: float = 1.0
    alpha: float = 0.7  # L1 weight in the loss; 1 - alpha on 1 - SSIM
    motion_weight: float = 1.0  # beta: L1 weight 1 + beta * mask; 0 trains without the motion mask
    seed: int = 0
    checkpoint_every: int = 10  # epochs
    compile: bool = False
    precision: str = "bf16"  # on CUDA: bf16 autocast with channels-last, or plain "fp32"; the CPU trains in fp32
    rate_weight: float = 0.0  # QAT stage: weight of the rate term (bits per pixel) in the loss, 1 / lambda
    rate_warmup: float = 0.0  # fraction of the phase's steps over which the rate weight rises linearly from 0
    step_lr: float = 0.0  # QAT stage: learning rate of the quantisation steps (0: lr)
    loss: str = "l1-ssim"  # "mse-yuv": the MSE of YUV 4:2:0, 6:1:1; "psnr-yuv": the frames' mean PSNR-YUV (loss.py)
    batch_order: str = "random"  # or "runs": a batch is consecutive frames of one view (see batch_order)
    chain_window: int | None = None  # a chain's frames trained behind each batch frame (None: all; see qat.py)
    price_frames: bool = False  # a chain's rate term prices the batch's frames alone (see qat.py)
    latent_proxy: str = "mixed"  # QAT: what the synthesis sees of a latent not yet rounded (see qat.py)
    noise_ramp: float = NOISE_RAMP  # QAT: fraction of the steps after which Quant-Noise rounds every value (see qat.py)
    adam_beta2: float = 0.999  # Adam's second-moment decay (beta1 is 0.9)

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise InputError(f"epochs must be 0 or more, got {self.epochs}")
        if self.batch_size < 1 or self.checkpoint_every < 1:
            raise InputError("--batch-size and --checkpoint-every must be 1 or more")
        if not self.lr > 0:
            raise InputError(f"--lr must be positive, got {self.lr}")
        if self.loss not in LOSSES:
            raise InputError(f"--loss: unknown loss '{self.loss}'; use one of {', '.join(LOSSES)}")
        if not 0.0 <= self.rate_warmup <= 1.0:
            raise InputError(f"rate_warmup must be 0 to 1, got {self.rate_warmup}")
        if not 0.0 < self.noise_ramp <= 1.0:
            raise InputError(f"noise_ramp must be above 0 and at most 1, got {self.noise_ramp}")
        if not 0.0 < self.adam_beta2 < 1.0:
            raise InputError(f"adam_beta2 must be above 0 and below 1, got {self.adam_beta2}")
        if self.chain_window is not None and self.chain_window < 0:
            raise InputError(f"chain_window must be 0 or more (or None: the whole chain), got {self.chain_window}")
        if self.latent_proxy not in LATENT_PROXIES:
            raise InputError(f"unknown latent proxy '{self.latent_proxy}'; use one of {', '.join(LATENT_PROXIES)}")
        if self.batch_order not in BATCH_ORDERS:
            raise InputError(f"unknown batch order '{self.batch_order}'; use one of {', '.join(BATCH_ORDERS)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision: unknown precision '{self.precision}'; use one of {', '.join(PRECISIONS)}")


PRECISIONS = ("bf16", "fp32")
BATCH_ORDERS = ("random", "runs")
LATENT_PROXIES = ("mixed", "noise")


def batch_order(views: int, frames: int, batch: int, order: str, gen: torch.Generator) -> torch.Tensor:
    """An epoch's order of the samples view * frames + frame, served `batch` at a time. "random": a random
    permutation. "runs": runs of `batch` consecutive frames of one view, cut at a random offset per view
    and shuffled, the pieces left at a view's ends last (they fill mixed batches). An architecture whose
    frames read all earlier frames of their view (a chain) then reads a view's rows once for a batch's
    frames, not once for each."""
    if order == "random" or batch == 1:
        return torch.randperm(views * frames, generator=gen)
    runs, pieces = [], []
    offsets = torch.randint(0, min(batch, frames), (views,), generator=gen).tolist()
    for v, offset in enumerate(offsets):
        cuts = [0, *range(offset or batch, frames, batch), frames]
        for a, b in zip(cuts, cuts[1:], strict=False):
            (runs if b - a == batch else pieces).append(torch.arange(v * frames + a, v * frames + b))
    runs = [runs[i] for i in torch.randperm(len(runs), generator=gen).tolist()]
    pieces = [pieces[i] for i in torch.randperm(len(pieces), generator=gen).tolist()]
    return torch.cat(runs + pieces)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate at an optimiser step: linear warm-up, then cosine decay to min_lr * lr."""
    warm = max(1, round(cfg.warmup * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * (cfg.min_lr + (1 - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def rate_weight_at(step: int, total: int, cfg: TrainConfig) -> float:
    """The rate term's weight at an optimiser step: rate_weight, reached linearly over the first rate_warmup
    of the steps."""
    warm = round(cfg.rate_warmup * total)
    return cfg.rate_weight * min(1.0, (step + 1) / warm) if warm > 0 else cfg.rate_weight


class FrameStore:
    """A source's planes held on a device as integers, served as RGB batches and compared in YUV."""

    def __init__(self, source: MultiViewSource, device: torch.device, color: ColorSpec | None = None):
        self.views, self.frames = source.num_views, source.num_frames
        color = color or ColorSpec(chroma_siting=getattr(source, "siting", "left"))
        self.bit_depth, self.color, self.device = source.fmt.bit_depth, color, device
        dtype = np.uint8 if self.bit_depth == 8 else np.int16 if self.bit_depth < 16 else np.int32
        planes = [[], [], []]
        for v in range(self.views):
            for p in source.frames(v):
                for i in range(3):
                    planes[i].append(p[i].astype(dtype))
        n = (self.views, self.frames)
        self.y, self.u, self.v = (torch.from_numpy(np.stack(ps).reshape(*n, *ps[0].shape)).to(device) for ps in planes)
        self.height, self.width = self.y.shape[-2:]

    def rgb(self, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Target RGB (B, 3, H, W) in [0, 1], float32, for index tensors on the device."""
        y, u, v = (p[view, frame].float() for p in (self.y, self.u, self.v))
        return yuv420_to_rgb(y, u, v, self.bit_depth, self.color).clamp_(0, 1)

    def yuv(self, view: torch.Tensor, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The source planes (B, H, W), (B, H/2, W/2) x 2 of index tensors, as stored (integer code values)."""
        return self.y[view, frame], self.u[view, frame], self.v[view, frame]

    def planes(self, view: int, frame: int) -> Planes:
        """The source frame as numpy planes."""
        return Planes(*(p[view, frame].cpu().numpy() for p in (self.y, self.u, self.v)))


class _DeferredInterrupt:
    """Holds back Ctrl-C until the current optimiser step is done; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@contextmanager
def _cudnn_benchmark(on: bool):
    """cuDNN times its algorithms once for the fixed shapes of training (the setting is restored after)."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = saved or on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


@dataclass
class TrainingData:
    """What a training phase fits: the frames on the device, their motion masks, the source's fingerprint."""

    store: FrameStore
    masks: np.ndarray | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class Checkpoint:
    """Where a phase keeps its checkpoint (resumed from when it exists) and what it must have been made with."""

    path: Path
    tag: dict = field(default_factory=dict)


@dataclass
class FitState:
    """Where training stands: epoch, step within it, the epoch's sample order and the sampler's RNG."""

    epoch: int
    step_in_epoch: int
    perm: torch.Tensor
    rng_state: torch.Tensor
    seconds: float = 0.0
    # the psnr-yuv loss's scale: the previous epoch's mean distortion (None in a phase's first epoch: each
    # batch's own), and this epoch's sum of it so far
    loss_scale: float | None = None
    distortion_sum: float = 0.0


def save_checkpoint(
    path: Path,
    model: CompressibleModel,
    opt: RowAdam,
    tcfg: TrainConfig,
    state: FitState,
    fingerprint: str,
    tag: dict | None = None,
) -> None:
    """Write a resumable checkpoint atomically (.npz of plain arrays plus a JSON record)."""
    arrays = {f"model/{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    index = {p: i for i, p in enumerate(model.parameters())}
    for p, s in opt.state.items():
        for k, v in s.items():
            arrays[f"adam/{index[p]}/{k}"] = v.detach().cpu().numpy()
    arrays["perm"] = state.perm.cpu().numpy()
    arrays["rng"] = state.rng_state.numpy()
    meta = {
        "version": CHECKPOINT_VERSION,
        "arch": arch_of(model.cfg).name,
        "model": model.cfg.to_dict(),
        "train": asdict(tcfg),
        "epoch": state.epoch,
        "step_in_epoch": state.step_in_epoch,
        "seconds": state.seconds,
        "loss_scale": state.loss_scale,
        "distortion_sum": state.distortion_sum,
        "fingerprint": fingerprint,
        "tag": tag or {},
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def read_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta record, arrays) of a checkpoint; InputError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("meta").tobytes())
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a readable mvenc checkpoint ({e}); delete it to start afresh") from None
    if meta.get("version") != CHECKPOINT_VERSION:
        raise InputError(
            f"{path}: a version {meta.get('version')} checkpoint (another mvenc's); this one reads version "
            f"{CHECKPOINT_VERSION}: delete it to start afresh"
        )
    return meta, arrays


def _model_state(arrays: dict[str, np.ndarray], prefix: str = "model/") -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint's arrays (the keys under `prefix`)."""
    return {k.removeprefix(prefix): torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)}


def load_model(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """The fitted network stored in a fit phase's checkpoint, of whichever registered architecture made it."""
    meta, arrays = read_checkpoint(path)
    if meta.get("tag"):
        raise InputError(f"{path}: a checkpoint of the {meta['tag'].get('stage')} phase; give the fit's (OUTPUT.ckpt)")
    arch = by_name(meta.get("arch", LEGACY_ARCH))
    model = arch.build(arch.config_type.from_dict(meta["model"]))
    model.load_state_dict(_model_state(arrays, "model/base."))
    return model.to(device)


def _restore(ckpt: Checkpoint, model: CompressibleModel, opt: RowAdam, tcfg: TrainConfig, fingerprint: str) -> FitState:
    path = ckpt.path
    meta, arrays = read_checkpoint(path)
    if meta.get("tag", {}) != ckpt.tag:
        raise InputError(f"{path}: checkpoint was made with other compression options; give the same ones or delete it")
    if meta["fingerprint"] != fingerprint:
        raise InputError(f"{path}: checkpoint was made from other input; delete it or give the same input")
    if meta.get("arch", LEGACY_ARCH) != arch_of(model.cfg).name or meta["model"] != model.cfg.to_dict():
        raise InputError(f"{path}: checkpoint has another model size; give the same -q/--params or delete it")
    stored = meta["train"]
    if {k: v for k, v in stored.items() if k != "compile"} != {k: v for k, v in asdict(tcfg).items() if k != "compile"}:
        raise InputError(f"{path}: checkpoint was made with other training options; give the same ones or delete it")
    device = next(model.parameters()).device
    model.load_state_dict(_model_state(arrays))
    params = list(model.parameters())
    for key, value in arrays.items():
        if key.startswith("adam/"):
            _, i, name = key.split("/")
            t = torch.from_numpy(value)
            opt.state[params[int(i)]][name] = t if name == "step" else t.to(device)
    return FitState(
        meta["epoch"],
        meta["step_in_epoch"],
        torch.from_numpy(arrays["perm"]).to(device),
        torch.from_numpy(arrays["rng"]),
        meta["seconds"],
        meta["loss_scale"],
        meta["distortion_sum"],
    )


@dataclass
class FitResult:
    model: CompressibleModel
    epochs: int
    seconds: float
    frames_per_second: float  # training throughput: frames seen per second of training
    final_loss: float


def fit(
    model: CompressibleModel,
    data: TrainingData,
    tcfg: TrainConfig,
    *,
    checkpoint: Checkpoint | None = None,
    progress: bool = True,
    label: str = "training",
    on_epoch: Callable[[int, float], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train `model` on every (view, frame) of the data for tcfg.epochs epochs; resumable from `checkpoint`
    (`log` hears where a resumed run starts)."""
    store, masks, fingerprint = data.store, data.masks, data.fingerprint
    device = store.device
    cuda = device.type == "cuda" and tcfg.precision == "bf16"  # the CUDA fast path; else plain float32
    model.to(device)
    if cuda or device.type == "cpu":  # oneDNN's convolutions too are faster channels-last (1.3-1.7x a step)
        model.to(memory_format=torch.channels_last)
    opt = RowAdam(model.param_groups(tcfg.lr, tcfg.step_lr or tcfg.lr), lr=tcfg.lr, betas=(0.9, tcfg.adam_beta2))
    pixels = store.views * store.frames * store.height * store.width
    forward = torch.compile(model) if tcfg.compile else model
    n = store.views * store.frames
    steps_per_epoch = math.ceil(n / tcfg.batch_size)
    total_steps = tcfg.epochs * steps_per_epoch
    mask_t = torch.from_numpy(masks).to(device) if masks is not None and tcfg.motion_weight else None

    gen = torch.Generator().manual_seed(tcfg.seed)
    order = partial(batch_order, store.views, store.frames, tcfg.batch_size, tcfg.batch_order, gen)
    state = FitState(0, 0, order().to(device), gen.get_state())
    if checkpoint is not None and checkpoint.path.exists():
        state = _restore(checkpoint, model, opt, tcfg, fingerprint)
        gen.set_state(state.rng_state)
        if log is not None:
            where = (
                f"resuming at epoch {state.epoch + 1} of {tcfg.epochs}, step {state.step_in_epoch + 1}"
                if state.epoch < tcfg.epochs
                else f"all {tcfg.epochs} epochs done"
            )
            log(f"{label}: {where} (from {checkpoint.path.name})")

    model.chain_window = tcfg.chain_window
    model.price_frames = tcfg.price_frames
    model.latent_noise = tcfg.latent_proxy == "noise"
    model.noise_ramp = tcfg.noise_ramp
    model.plan_epoch(state.perm, tcfg.batch_size)
    bar = Progress(total_steps, label, "steps", enabled=progress)
    bar.done = state.epoch * steps_per_epoch + state.step_in_epoch
    loss_sum = torch.zeros((), device=device)
    mse_sum = torch.zeros((), device=device)
    distortion_sum = torch.tensor(state.distortion_sum, device=device)
    last_loss = float("nan")
    shown = {"loss": "-", "rgb_psnr": "-"}
    started = time.monotonic() - state.seconds
    frames_seen = 0
    run_start = time.monotonic()

    def snapshot() -> None:
        state.seconds = time.monotonic() - started
        state.distortion_sum = float(distortion_sum)
        save_checkpoint(checkpoint.path, model, opt, tcfg, state, fingerprint, checkpoint.tag)

    with _DeferredInterrupt() as interrupt, _cudnn_benchmark(cuda):
        while state.epoch < tcfg.epochs:
            for s in range(state.step_in_epoch, steps_per_epoch):
                idx = state.perm[s * tcfg.batch_size : (s + 1) * tcfg.batch_size]
                view, frame = idx // store.frames, idx % store.frames
                global_step = state.epoch * steps_per_epoch + s
                for g in opt.param_groups:
                    g["lr"] = lr_at(global_step, total_steps, tcfg) * g.get("lr_scale", 1.0)
                model.set_step(global_step, total_steps)
                target = store.rgb(view, frame)
                mask = None
                if mask_t is not None:
                    mask = F.interpolate(
                        mask_t[view, frame][:, None].float() / 255,
                        size=target.shape[-2:],
                        mode="bilinear",
                        align_corners=False,
                    )
                if cuda:
                    target = target.contiguous(memory_format=torch.channels_last)
                rows = model.start_batch(view, frame)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                    pred = forward(view, frame)
                if tcfg.loss == "psnr-yuv":
                    loss = yuv_psnr_loss(
                        pred.float(), store.yuv(view, frame), store.bit_depth, store.color, scale=state.loss_scale
                    )
                    distortion_sum += loss.detach()
                elif tcfg.loss == "mse-yuv":
                    loss = yuv_mse_loss(pred.float(), store.yuv(view, frame), store.bit_depth, store.color)
                else:
                    loss = motion_aware_loss(pred.float(), target, mask, tcfg.alpha, tcfg.motion_weight)
                if tcfg.rate_weight and (rate := model.rate_bits(rows)) is not None:
                    loss = loss + rate_weight_at(global_step, total_steps, tcfg) * rate / pixels
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*model.parameters(), *model.batch_leaves()], tcfg.grad_clip)
                opt.step(rows=model.step_rows(), grads=model.batch_grads())
                model.end_batch()
                loss_sum += loss.detach()
                mse_sum += F.mse_loss(pred.detach().float(), target)
                frames_seen += len(idx)
                state.step_in_epoch = s + 1
                bar.update(epoch=f"{state.epoch + 1}/{tcfg.epochs}", **shown)
                if interrupt.requested:
                    if checkpoint is not None:
                        snapshot()
                    bar.close()
                    raise KeyboardInterrupt
            last_loss = float(loss_sum) / steps_per_epoch  # host syncs: once per epoch
            if tcfg.loss == "psnr-yuv":
                state.loss_scale = float(distortion_sum) / steps_per_epoch
                distortion_sum.zero_()
            mse = float(mse_sum) / steps_per_epoch
            shown = {"loss": f"{last_loss:.4f}", "rgb_psnr": f"{-10 * math.log10(max(mse, 1e-12)):.2f}"}
            loss_sum.zero_()
            mse_sum.zero_()
            state.epoch += 1
            state.step_in_epoch = 0
            state.perm = order().to(device)
            model.plan_epoch(state.perm, tcfg.batch_size)
            state.rng_state = gen.get_state()
            if checkpoint is not None and (state.epoch % tcfg.checkpoint_every == 0 or state.epoch == tcfg.epochs):
                snapshot()
            if on_epoch is not None:
                on_epoch(state.epoch, last_loss)
    bar.close()
    model.to(memory_format=torch.contiguous_format)  # evaluated and exported as the decoder runs it
    run_seconds = time.monotonic() - run_start
    return FitResult(
        model, tcfg.epochs, time.monotonic() - started, frames_seen / run_seconds if run_seconds > 0 else 0.0, last_loss
    )


@torch.no_grad()
def evaluate(model: nn.Module, store: FrameStore, batch: int = 4) -> dict:
    """Per-view and overall PSNR (Y, U, V, YUV) and SSIM of the reconstruction in YUV 4:2:0, vs the source."""
    model.train(False)  # inference mode for the measurement
    per_view = []
    for v in range(store.views):
        frames = []
        for start in range(0, store.frames, batch):
            t = torch.arange(start, min(start + batch, store.frames), device=store.device)
            rgb = model(torch.full_like(t, v), t)
            for i, planes in enumerate(rgb_to_planes(rgb, store.bit_depth, store.color)):
                frames.append(frame_quality(store.planes(v, start + i), planes, store.bit_depth))
        per_view.append(mean_quality(frames))
    model.train()
    return {**mean_quality(per_view), "per_view": per_view}
