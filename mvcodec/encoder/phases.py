"""Training one segment: the recipe's phases run in order by one loop, each resumable from its checkpoint.

Checkpoints are named by phase: PREFIX.ckpt for the fit (the trained float32 model), PREFIX.<phase>.ckpt
for the others; the motion masks are cached in PREFIX.motion.npz.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mvcodec.compress.pruning import prune_masks
from mvcodec.compress.qat import CompressibleModel
from mvcodec.encoder.recipe import Recipe
from mvcodec.errors import InputError
from mvcodec.io import MultiViewSource
from mvcodec.model.registry import arch_of
from mvcodec.presets import PHASE_NAMES, Phase
from mvcodec.train.fit import Checkpoint, FrameStore, TrainingData, evaluate, fit, read_checkpoint
from mvcodec.train.motion import backward_flow, motion_masks, source_fingerprint


def checkpoint_path(prefix: str, phase: str) -> Path:
    """Where a phase of the segment with this prefix keeps its checkpoint."""
    return Path(f"{prefix}.ckpt" if phase == "fit" else f"{prefix}.{phase}.ckpt")


def work_files(prefix: str) -> list[Path]:
    """Every file an encode of this prefix may leave: the phases' checkpoints and the motion cache."""
    return [checkpoint_path(prefix, p) for p in PHASE_NAMES] + [Path(f"{prefix}.motion.npz")]


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


def training_data(
    source: MultiViewSource, motion_weight: float, device: torch.device, prefix: str | None, progress: bool
) -> TrainingData:
    """The source's frames on the device, its motion masks (cached beside the output) and fingerprint."""
    fingerprint = source_fingerprint(source)
    masks = None
    if motion_weight:
        cache = Path(f"{prefix}.motion.npz") if prefix else None
        masks = motion_masks(source, cache, progress=progress, key=fingerprint)
    return TrainingData(FrameStore(source, device), masks, fingerprint)


def start_fit(model: CompressibleModel, recipe: Recipe, log) -> CompressibleModel:
    return model


def start_prune(model: CompressibleModel, recipe: Recipe, log) -> CompressibleModel:
    sparsity = recipe.compress.sparsity
    pruned = CompressibleModel(
        model.base, model.cfg, prune_masks(dict(model.base.named_parameters()), model.layout, sparsity)
    )
    kept = sum(int(m.sum()) for m in pruned.masks().values())
    total = sum(m.numel() for m in pruned.masks().values())
    epochs = recipe.phase("prune").epochs
    log(f"pruning: {sparsity:.0%} of the conv weights ({total - kept} of {total}), {epochs} epochs")
    return pruned


def start_qat(model: CompressibleModel, recipe: Recipe, log) -> CompressibleModel:
    quantised = CompressibleModel(model.base, model.cfg, model.masks() or None, quantise=True)
    quantised.noise_seed = recipe.train.seed
    log(f"quantisation-aware training: {recipe.phase('qat').epochs} epochs, lambda {recipe.compress.rate_lambda:g}")
    return quantised


# What each phase does to the model before it trains it.
START: dict[str, Callable[[CompressibleModel, Recipe, Callable], CompressibleModel]] = {
    "fit": start_fit,
    "prune": start_prune,
    "qat": start_qat,
}
LABELS = {"fit": "training", "prune": "fine-tuning", "qat": "QAT"}


def phase_tag(phase: Phase, recipe: Recipe) -> dict:
    """What a phase's checkpoint must have been made with, beyond the training options."""
    if phase.name == "fit":
        return {}
    tag = {"stage": phase.name, "sparsity": recipe.compress.sparsity}
    return tag if phase.name == "prune" else {**tag, "lambda": recipe.compress.rate_lambda}


@dataclass
class TrainedSegment:
    """A segment's network after every phase (quantising, in eval mode), and how its fit went."""

    model: CompressibleModel
    float_quality: dict  # the fitted float network's quality, before pruning and quantisation
    train_seconds: float  # the fit's
    frames_per_second: float  # the fit's training throughput
    mask_seconds: float  # loading the frames and their optical flow (motion masks, or motion fields' start)
    phase_seconds: dict[str, float]  # each phase's training time (this run's, where a phase was resumed)


def run_phases(
    source: MultiViewSource,
    cfg,
    recipe: Recipe,
    device: torch.device,
    *,
    prefix: str | None,
    progress: bool = True,
    log=print,
    on_phase: Callable[[str, CompressibleModel, TrainingData], None] | None = None,
) -> TrainedSegment:
    """Initialise the network of `cfg` and run the recipe's phases on the source; each phase resumes from
    its checkpoint where one is left (prepare_checkpoints decides beforehand whether any may be)."""
    arch = arch_of(cfg)
    if prefix:
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    log(f"model: {arch.split_text(cfg)}")
    log(f"layout: {arch.name}, {arch.describe(cfg)}, {arch.macs_per_pixel(cfg):.0f} MACs per pixel")
    t0 = time.monotonic()
    data = training_data(source, recipe.train.motion_weight, device, prefix, progress)
    torch.manual_seed(recipe.train.seed)
    model = CompressibleModel(arch.build(cfg), cfg)
    if hasattr(model.base, "init_flows"):  # motion fields start from the source's optical flow
        luma = data.store.y.cpu().numpy()
        model.base.init_flows(np.concatenate([backward_flow(y, data.store.bit_depth) for y in luma]))
    mask_seconds = time.monotonic() - t0  # loading, and the optical flow of the motion masks or motion fields
    fitted, seconds = None, {}
    for phase in recipe.phases:
        model = START[phase.name](model, recipe, log)
        tcfg = recipe.phase_config(phase)
        if tcfg.epochs:
            ckpt = Checkpoint(checkpoint_path(prefix, phase.name), tag=phase_tag(phase, recipe)) if prefix else None
            result = fit(model, data, tcfg, checkpoint=ckpt, progress=progress, label=LABELS[phase.name], log=log)
            seconds[phase.name] = result.seconds
            if phase.name == "fit":
                fitted = result
        if phase.name == "fit":
            quality = evaluate(model, data.store)
        if on_phase is not None:
            on_phase(phase.name, model, data)
    model.train(False)
    return TrainedSegment(model, quality, fitted.seconds, fitted.frames_per_second, mask_seconds, seconds)
