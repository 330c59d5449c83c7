"""Encoder presets: each is the list of training phases an encode runs, in order (as Cool-Chic's presets).

A phase is named by what it does before training: "fit" trains the network from its initialisation,
"prune" fixes pruning masks and fine-tunes, "qat" adds learned quantisation steps, Quant-Noise and the
rate term. lr is the phase's learning rate as a fraction of the fit's. This module is plain data so that
the command line can print it without loading any training code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Phase:
    name: str  # "fit", "prune" or "qat"
    epochs: int
    lr: float = 1.0


PHASE_NAMES = ("fit", "prune", "qat")
# the training losses (mvcodec/train/loss.py), named here for the command line
LOSSES = ("l1-ssim", "mse-yuv", "psnr-yuv")


def _phases(fit: int, prune: int, qat: int) -> tuple[Phase, ...]:
    return (Phase("fit", fit), Phase("prune", prune, lr=0.2), Phase("qat", qat, lr=0.1))


# MV-MGINR's presets (the architectures that bring no table of their own use this one).
PRESETS: dict[str, tuple[Phase, ...]] = {
    "fast": _phases(30, 3, 7),
    "medium": _phases(100, 10, 25),
    "paper": _phases(300, 25, 75),  # the published schedule
    "slow": _phases(600, 50, 150),
}


def _fit_qat(fit: int, qat: int) -> tuple[Phase, ...]:
    return (Phase("fit", fit), Phase("qat", qat, lr=1.0))


# MV-Pyramid's: a 10% fit, then QAT at the fit's learning rate; each preset doubles the one before. `medium`
# fits the rate-distortion issue's budget at 320x180 x 16 frames x 4 views on a 2-core CPU (at most 1.5x
# MV-MGINR's medium, about 250 s a point): BENCHMARKS.md, issue 14, experiments 24-26.
PYRAMID_PRESETS = {
    "fast": _fit_qat(5, 45),
    "medium": _fit_qat(10, 90),
    "paper": _fit_qat(20, 180),
    "slow": _fit_qat(40, 360),
}
# MV-Pyramid-MC's, the default's: `medium` spends the budget (316-367 s a point at 320x180, experiment
# 30), the others about half, twice and four times its epochs (the time sweep)
PYRAMID_MC_PRESETS = {
    "fast": _fit_qat(4, 32),
    "medium": _fit_qat(7, 63),
    "paper": _fit_qat(14, 126),
    "slow": _fit_qat(28, 252),
}

# MV-HiNeRV's: HiNeRV's pipeline (fit, pruning with fine-tuning, QAT at a tenth of the learning rate), its
# `medium` about the default architecture's time at 320x180 x 16 frames x 4 views at -q 4 (130 ms a fit step, 170
# a QAT step: about 300 s of training), the others half, twice and four times its epochs (BENCHMARKS.md, issue 16)
HINERV_PRESETS = {
    "fast": _phases(25, 3, 6),
    "medium": _phases(50, 6, 12),
    "paper": _phases(100, 12, 24),
    "slow": _phases(200, 24, 48),
}

# A preset's epochs are those of a segment of REFERENCE_VIEW_FRAMES views x frames (4 x 16, where they were tuned).
# An architecture whose short_segment_scale is above 1 gives a shorter segment proportionally more epochs, at most
# that many times, so that what every step trains (the view grids, the synthesis) takes about as many steps as in
# a reference segment; the frames' own grids are trained only when their frame is in a batch, an epoch at a time.
# (MV-Pyramid-MC: at most 2x; the small cut, 4 views x 8 frames, gains 0.45-0.47 dB BD-PSNR over three seeds at twice
# its time, about 2 minutes a point: BENCHMARKS.md, issue 14, experiment 44.)
REFERENCE_VIEW_FRAMES = 64


def epoch_scale(view_frames: int, cap: float) -> float:
    """How many times the preset's epochs a segment of view_frames views x frames trains (1 to cap)."""
    if view_frames < 1:
        raise ValueError(f"a segment has at least one view and frame, got {view_frames}")
    return min(cap, max(1.0, REFERENCE_VIEW_FRAMES / view_frames))


DEFAULT_PRESET = "medium"
DEFAULT_ARCH = "mv-pyramid-mc"  # the network mvenc fits unless --arch names another registered one
DEFAULT_PRESETS = PYRAMID_MC_PRESETS  # its table
# Seconds each of its presets' encode of the bundled sample took (README's first command: 4 views x 8 frames
# at 160x96, 10-bit, -q 4) on a 2-core CPU with nothing else running, its bits per pixel and PSNR-YUV:
# BENCHMARKS.md, "Presets on the bundled sample" (tools/preset_times.py, after experiment 44: the sample's 4 x 8
# views x frames train twice each preset's epochs).
SAMPLE_SECONDS = {"fast": 58.0, "medium": 114.5, "paper": 234.4, "slow": 470.8}
SAMPLE_BPP = {"fast": 0.39, "medium": 0.35, "paper": 0.38, "slow": 0.40}
SAMPLE_PSNR = {"fast": 36.7, "medium": 36.9, "paper": 37.4, "slow": 37.8}


def phases_for(
    preset: str, epochs: dict[str, int | None] | None = None, table: dict[str, tuple[Phase, ...]] | None = None
) -> tuple[Phase, ...]:
    """A preset's phases (from `table`, default PRESETS) with the given phases' epochs replaced (None keeps
    the preset's); ValueError on an unknown preset, phase or a negative count."""
    table = PRESETS if table is None else table
    if preset not in table:
        raise ValueError(f"--preset: unknown preset '{preset}'; use one of {', '.join(table)}")
    epochs = {k: v for k, v in (epochs or {}).items() if v is not None}
    unknown = set(epochs) - set(PHASE_NAMES)
    if unknown:
        raise ValueError(f"unknown training phases {sorted(unknown)}; the phases are {', '.join(PHASE_NAMES)}")
    for name, n in epochs.items():
        if n < (1 if name == "fit" else 0):
            option = "--epochs" if name == "fit" else f"--{name}-epochs"
            raise ValueError(f"{option} must be {1 if name == 'fit' else 0} or more, got {n}")
    return tuple(replace(p, epochs=epochs.get(p.name, p.epochs)) for p in table[preset])


def preset_help() -> str:
    """The --preset help text, from the default architecture's table: fastest to slowest, with the bundled
    sample's times."""

    def epochs(phases: tuple[Phase, ...]) -> str:
        return " + ".join(str(p.epochs) for p in phases)

    def figures(name: str) -> str:
        return f"{SAMPLE_SECONDS[name]:.0f} s, {SAMPLE_BPP[name]:.2f} bpp, {SAMPLE_PSNR[name]:.1f} dB"

    parts = [f"{name} ({epochs(phases)}; {figures(name)})" for name, phases in DEFAULT_PRESETS.items()]
    return (
        f"Training schedule, fastest to slowest, epochs of fit + QAT of the default architecture ({DEFAULT_ARCH}; "
        "encode time, bits per pixel and PSNR-YUV of the bundled sample at -q 4 on a 2-core CPU; time grows with "
        f"pixels x frames; a segment of fewer than {REFERENCE_VIEW_FRAMES} views x frames, as the sample's 4 x 8, "
        "trains up to twice the epochs): "
        + ", ".join(parts)
        + "; each architecture has its own (mv-mginr: fit + fine-tuning after pruning + QAT, "
        + ", ".join(f"{name} {epochs(phases)}" for name, phases in PRESETS.items())
        + "; mv-hinerv: "
        + ", ".join(f"{name} {epochs(phases)}" for name, phases in HINERV_PRESETS.items())
        + "; README)."
    )
