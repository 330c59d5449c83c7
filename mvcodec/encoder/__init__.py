"""Source -> trained networks (one per segment) -> coded tensors -> .mvinr, checked by decoding.

The stages, each in its own module: plan.py (quality -> model size, lambda, segments), recipe.py and
mvcodec/presets.py (the training phases), phases.py (one loop running the phases with named checkpoints),
rate_control.py, assemble.py (stream assembly and verification) and report.py.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mvcodec import __version__
from mvcodec.device import pick_device
from mvcodec.encoder.assemble import measure_stream, segment_data, sequence_header, stream_size, write_output
from mvcodec.encoder.phases import prepare_checkpoints, run_phases, work_files
from mvcodec.encoder.plan import check_quality, check_rate, make_plan, parse_params, plan_segments, target_bpp_of
from mvcodec.encoder.rate_control import fit_to_target
from mvcodec.encoder.recipe import Recipe, recipe
from mvcodec.encoder.report import EncodeResult, Run, encode_result, summary_lines
from mvcodec.errors import InputError
from mvcodec.io import MultiViewSource
from mvcodec.model.registry import DEFAULT, by_name
from mvcodec.presets import REFERENCE_VIEW_FRAMES

__all__ = ["EncodeOptions", "EncodeResult", "encode", "pick_device", "recipe", "summary_lines"]


@dataclass(frozen=True)
class EncodeOptions:
    """What mvenc was asked for, beyond the source and the output; checked on construction (InputError)."""

    recipe: Recipe
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    arch: str = DEFAULT
    quality: int | None = None
    params: int | str | None = None  # a count, or text such as "250k"
    bpp: float | None = None  # rate control: the file size to reach, in bits per pixel ...
    kbps: float | None = None  # ... or in kbit/s at the source's frame rate
    segment_frames: int | None = None
    resume: bool = False
    progress: bool = True
    keep_checkpoints: bool = False
    info: bool = True  # write the enci chunk (who encoded the stream, how; about 1 kB)
    command: str = ""

    def __post_init__(self) -> None:
        try:
            by_name(self.arch)
        except ValueError as e:
            raise InputError(f"--arch: {e}") from None
        if self.quality is not None:
            check_quality(self.quality)
        if isinstance(self.params, str):
            object.__setattr__(self, "params", parse_params(self.params))
        check_rate(self.bpp, self.kbps)
        plan_segments(1, self.segment_frames)


def encode(source: MultiViewSource, output: Path, opts: EncodeOptions, log=print) -> EncodeResult:
    """Encode a source to `output` (.mvinr, written atomically), decode it back and measure it."""
    started = time.monotonic()
    arch, target_bpp = by_name(opts.arch), target_bpp_of(source, opts.bpp, opts.kbps)
    plan = make_plan(
        source,
        output,
        arch,
        quality=opts.quality,
        params=opts.params,
        target_bpp=target_bpp,
        segment_frames=opts.segment_frames,
        rate_lambda=opts.recipe.compress.rate_lambda,
        log=log,
    )
    base = opts.recipe.with_lambda(plan.rate_lambda)
    # each segment's recipe: a short one trains more epochs than the preset's (presets.epoch_scale)
    recipes = [base.for_segment(s.source.num_views * s.frames, arch.short_segment_scale) for s in plan.segments]
    rec = recipes[0]
    prepare_checkpoints([c for s in plan.segments for c in work_files(s.prefix)[:-1]], opts.resume)
    trained = []
    for s, srec in zip(plan.segments, recipes, strict=True):
        if len(plan.segments) > 1:
            log(f"segment {s.index + 1}/{len(plan.segments)}: frames {s.first}-{s.first + s.frames - 1}")
        if srec.phases != base.phases:
            log(
                f"training: {s.source.num_views * s.frames} views x frames, fewer than {REFERENCE_VIEW_FRAMES}: "
                f"{' + '.join(str(p.epochs) for p in srec.phases)} epochs (the preset's, up to "
                f"{arch.short_segment_scale:g}x, so that the shared grids and synthesis train about as many steps)"
            )
        talk = dict(progress=opts.progress, log=log)
        trained.append(run_phases(s.source, s.config, srec, opts.device, prefix=s.prefix, **talk))
    seq = sequence_header(source, len(plan.segments))
    info = (
        encoder_info(opts, rec, target_bpp, sum(t.train_seconds for t in trained), source.filters.describe())
        if opts.info
        else None
    )
    exported, scales = fit_to_target(
        [t.model for t in trained],
        [s.frames for s in plan.segments],
        plan.target_bytes,
        lambda ex: stream_size(seq, segment_data(plan.segments, ex), info),
    )
    size = write_output(output, seq, segment_data(plan.segments, exported), info)
    quality = measure_stream(output, source, opts.device, opts.progress)
    if not opts.keep_checkpoints:
        for path in (p for s in plan.segments for p in work_files(s.prefix)):
            path.unlink(missing_ok=True)
    runs = Run(arch, plan, rec, trained, scales, target_bpp, str(opts.device), time.monotonic() - started)
    return encode_result(output, source, seq, size, quality, runs)


def encoder_info(
    opts: EncodeOptions, rec: Recipe, target_bpp: float | None, train_seconds: float, filters: dict | None = None
) -> dict:
    """The stream's enci record: who encoded it, how, and on what (with the source's crop and scale)."""
    return {
        "encoder": f"mvcodec {__version__}",
        "command": opts.command,
        **({"source_filters": filters} if filters else {}),
        "train": asdict(rec.train),
        "compress": rec.record(),
        "target_bpp": target_bpp,
        "device": str(opts.device),
        "train_seconds": round(train_seconds, 3),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
