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


def _phases(fit: int, prune: int, qat: int) -> tuple[Phase, ...]:
    return (Phase("fit", fit), Phase("prune", prune, lr=0.2), Phase("qat", qat, lr=0.1))


PRESETS: dict[str, tuple[Phase, ...]] = {
    "fast": _phases(30, 3, 7),
    "medium": _phases(100, 10, 25),
    "paper": _phases(300, 25, 75),  # the published schedule
    "slow": _phases(600, 50, 150),
}
# Seconds each preset's encode of the bundled sample took (README's first command: 4 views x 8 frames at
# 160x96, 10-bit, MV-MGINR) on a 2-core CPU with nothing else running, and its PSNR-YUV: BENCHMARKS.md,
# "Presets on the bundled sample" (tools/preset_times.py).
SAMPLE_SECONDS = {"fast": 16.5, "medium": 51.0, "paper": 144.6, "slow": 321.8}
SAMPLE_PSNR = {"fast": 25.2, "medium": 26.6, "paper": 28.8, "slow": 30.0}
DEFAULT_PRESET = "medium"
DEFAULT_ARCH = "mv-mginr"  # the network mvenc fits unless --arch names another registered one


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
    """The --preset help text, from the table: fastest to slowest, with the bundled sample's times."""
    parts = [
        f"{name} ({' + '.join(str(p.epochs) for p in phases)}; {SAMPLE_SECONDS[name]:.0f} s, {SAMPLE_PSNR[name]} dB)"
        for name, phases in PRESETS.items()
    ]
    return (
        "Training schedule, fastest to slowest, epochs of fit + fine-tuning after pruning + QAT (encode time and "
        "PSNR-YUV of the bundled sample on a 2-core CPU; time grows with pixels x frames): "
        + ", ".join(parts)
        + "; paper is the published one. --arch mv-pyramid has its own (README)."
    )
