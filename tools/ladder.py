"""The compression ladder (the MV-MGINR paper's Table III) on a multi-view recording, every rung measured
from a written and decoded .mvinr file.

One fit (stage 1), then:
  1. FP32: every tensor stored as float32.
  2. 8-bit: post-training uniform quantisation, a float32 step per channel (max-abs), coded with a flat
     Gaussian over the 255 levels: the stand-in for fixed-length coding (about 8 bits a symbol).
  3. 8-bit + pruning: the fitted model pruned (40% of the conv weights by |w| / sqrt(P)) and fine-tuned,
     then as 2; the masks are Bernoulli-coded.
  4. + entropy coding: as 3, the symbols range-coded with one Gaussian per tensor.
  5. learned steps + Gaussian rate model: mvenc's pipeline, QAT with the rate term on the pruned model.

    python tools/ladder.py ../shared/data/caliscope/post_optimization -s 320x180 -f 8 --json bench/ladder.json
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch
from train_bench import scaled_copy

from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, parameter_hash, write_stream
from mvcodec.color import ColorSpec
from mvcodec.compress.coding import ExportedTensor, float32_tensor, quantize_uniform
from mvcodec.compress.qat import CompressibleModel, export_tensors
from mvcodec.device import pick_device
from mvcodec.encoder.assemble import measure_stream
from mvcodec.encoder.phases import run_phases
from mvcodec.encoder.plan import lambda_for_quality, model_config_for, shape_of
from mvcodec.encoder.recipe import recipe
from mvcodec.fsutil import write_json
from mvcodec.io import open_source
from mvcodec.metrics import bits_per_pixel
from mvcodec.model.base import ParamSpec
from mvcodec.model.registry import by_name

ARCH = "mv-mginr"  # the ladder of MV-MGINR's compression stages (pruning, QAT)


def write(path: Path, source, cfg, exported: list[ExportedTensor]) -> int:
    f = source.fmt
    seq = SequenceHeader(
        tuple(source.view_names), source.num_frames, f.width, f.height, f.bit_depth, ColorSpec(), f.fps, 1
    )
    seg = SegmentData(
        SegmentHeader(0, 0, source.num_frames),
        cfg,
        [e.tensor for e in exported],
        parameter_hash([e.values for e in exported]),
    )
    with open(path, "wb") as out:
        return write_stream(out, seq, [seg], {"encoder": "tools/ladder.py"})


def host_params(params: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Parameters as float32 numpy arrays on the host (copies: training goes on with the originals)."""
    return {n: p.detach().float().cpu().contiguous().numpy().copy() for n, p in params.items()}


def uniform(
    state: dict[str, np.ndarray], layout: list[ParamSpec], masks: dict | None, flat: bool
) -> list[ExportedTensor]:
    out = []
    for spec in layout:
        mask = masks[spec.name] if masks and spec.name in masks else None
        out.append(quantize_uniform(spec, state[spec.name], 8, mask, flat))
    return out


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-s", "--size", default="320x180", show_default=True)
@click.option("-f", "--frames", default=8, show_default=True)
@click.option("-q", "--quality", default=4, show_default=True)
@click.option("--preset", default="medium", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def main(src, size, frames, quality, preset, device, json_path):
    width, height = (int(x) for x in size.lower().split("x"))
    dev = pick_device(device)
    arch = by_name(ARCH)
    rec = recipe(preset, arch=ARCH).with_lambda(lambda_for_quality(quality))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = open_source(scaled_copy(src, tmp, width, height, frames))
        cfg = model_config_for(arch, shape_of(source), quality, None, False)
        layout = arch.layout(cfg)
        params = arch.params(cfg)

        def rung(label: str, exported: list[ExportedTensor], seconds: float) -> None:
            path = tmp / f"rung{len(rows)}.mvinr"
            size_ = write(path, source, cfg, exported)
            q = measure_stream(path, source, dev, progress=False)
            row = {
                "rung": label,
                "bytes": size_,
                "bpp": bits_per_pixel(size_, source.num_views, source.num_frames, width, height),
                "psnr_y": q["psnr_y"],
                "psnr_yuv": q["psnr_yuv"],
                "ssim": q["ssim"],
                "bits_per_param": 8 * size_ / params,
                "stage_seconds": seconds,
            }
            rows.append(row)
            shown = {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}
            click.echo(f"{label}: {json.dumps(shown)}", err=True)

        # The rungs after the fit and after pruning are measured between the phases (on_phase); each phase's
        # time runs from the end of the previous phase's rungs to the end of the phase.
        clock = {"start": time.monotonic()}

        def on_phase(name: str, model: CompressibleModel, data) -> None:
            seconds = time.monotonic() - clock["start"]
            if name == "fit":
                state = host_params(dict(model.base.named_parameters()))
                fp32 = [ExportedTensor(float32_tensor(p.name, state[p.name]), state[p.name]) for p in layout]
                rung("FP32", fp32, seconds)
                rung("8-bit (per-channel steps, fixed-length)", uniform(state, layout, None, flat=True), 0.0)
            elif name == "prune":
                masks = {n: m.cpu().numpy().astype(bool) for n, m in model.masks().items()}
                effective = host_params(model.effective_params(hard=True))  # masked, not quantised
                sparsity = rec.compress.sparsity
                rung(f"8-bit + {sparsity:.0%} pruning", uniform(effective, layout, masks, flat=True), seconds)
                rung("8-bit + pruning + entropy coding", uniform(effective, layout, masks, flat=False), 0.0)
            clock["start"] = time.monotonic()

        quiet = dict(progress=False, log=lambda *_: None)
        trained = run_phases(source, cfg, rec, dev, prefix=None, on_phase=on_phase, **quiet)
        quantised = trained.model.cpu()
        rung(
            "learned steps + Gaussian rate model (mvenc)", export_tensors(quantised), time.monotonic() - clock["start"]
        )
    record = {
        "source": str(src),
        "views": source.num_views,
        "frames": frames,
        "size": size,
        "quality": quality,
        "preset": preset,
        "epochs": [p.epochs for p in rec.phases],
        "lambda": rec.compress.rate_lambda,
        "params": params,
        "device": str(dev),
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "rungs": rows,
    }
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_path, record)
    click.echo("\n| rung | bytes | bpp | bits/param | PSNR-Y | PSNR-YUV | SSIM | vs FP32 rate | vs FP32 PSNR-YUV |")
    click.echo("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        click.echo(
            f"| {r['rung']} | {r['bytes']} | {r['bpp']:.4f} | {r['bits_per_param']:.2f} | {r['psnr_y']:.2f} | "
            f"{r['psnr_yuv']:.2f} | {r['ssim']:.4f} | {100 * r['bytes'] / rows[0]['bytes']:.1f}% | "
            f"{r['psnr_yuv'] - rows[0]['psnr_yuv']:+.2f} dB |"
        )


if __name__ == "__main__":
    main()
