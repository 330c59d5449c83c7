"""Time one epoch of each training phase (fit, then QAT with the rate term) of an architecture on a source,
in-process, and print the milliseconds an optimiser step costs. BENCHMARKS.md, issue 14, experiment 7:

    python tools/step_time.py /tmp/cut320 --fps 6 --arch mv-pyramid -q 4

The first epoch of each phase includes its warm-up (allocations, oneDNN's kernels): pass --epochs 2 to time
the second alone.
"""

from __future__ import annotations

import dataclasses
import json
import time

import click
import torch

from mvcodec.compress.qat import CompressibleModel
from mvcodec.encoder import recipe
from mvcodec.encoder.plan import lambda_for_quality, params_for_quality, shape_of
from mvcodec.io import open_source
from mvcodec.io.formats import parse_fps
from mvcodec.model.registry import by_name
from mvcodec.train.fit import FrameStore, TrainingData, fit


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--fps", default="30", show_default=True)
@click.option("-f", "--frames", type=int, help="Frames per view (default: all).")
@click.option("--arch", default="mv-pyramid", show_default=True)
@click.option("-q", "--quality", default=4, show_default=True)
@click.option("--epochs", default=1, show_default=True, help="Epochs timed per phase (the last one is reported).")
@click.option("--batch-order", type=click.Choice(["random", "runs"]), help="(default: the architecture's)")
@click.option("--chain-window", type=int, help="Frames of a chain trained behind each batch frame (default: all).")
@click.option("--batch-size", type=int, help="Frames a step (default: the recipe's).")
@click.option("--price-frames", is_flag=True, default=None, help="A chain's rate term prices the batch's frames alone.")
def main(inputs, fps, frames, arch, quality, epochs, batch_order, chain_window, batch_size, price_frames):
    source = open_source(list(inputs), fps=parse_fps(fps), frames=frames)
    shape = shape_of(source)
    architecture = by_name(arch)
    cfg = architecture.size_for(shape, params_for_quality(architecture, quality, shape))
    train = dict(batch_order=batch_order, chain_window=chain_window, batch_size=batch_size, price_frames=price_frames)
    rec = recipe("fast", arch=arch, **train).with_lambda(lambda_for_quality(quality, architecture))
    data = TrainingData(FrameStore(source, torch.device("cpu")))
    steps = -(-shape.views * shape.frames // rec.train.batch_size)
    size = [shape.views, shape.frames, shape.height, shape.width]
    row = {
        "arch": arch,
        "q": quality,
        "shape": size,
        "steps_per_epoch": steps,
        "batch_order": rec.train.batch_order,
        "chain_window": rec.train.chain_window,
        "batch_size": rec.train.batch_size,
        "price_frames": rec.train.price_frames,
    }
    for phase in ("fit", "qat"):
        torch.manual_seed(0)
        model = CompressibleModel(architecture.build(cfg), cfg, quantise=phase == "qat")
        tcfg = rec.phase_config(rec.phase(phase))
        seconds = []
        for _ in range(epochs):
            one = dataclasses.replace(tcfg, epochs=1)
            start = time.perf_counter()
            fit(model, data, one, progress=False)
            seconds.append(time.perf_counter() - start)
        row[f"{phase}_ms_per_step"] = round(1000 * seconds[-1] / steps, 1)
    click.echo(json.dumps(row))


if __name__ == "__main__":
    main()
