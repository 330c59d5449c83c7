"""MV-Pyramid at other sizes and learning rates than its defaults: registers a variant with the given
channels a level, synthesis width, first level of the view-and-frame grids and latent learning-rate scale (a
private id, this process only), encodes with it in-process (the encoder checks the stream by decoding it)
and prints one JSON line per -q point. BENCHMARKS.md, issue 14, experiments 5 and 9:

    python tools/pyramid_sweep.py /tmp/cut --fps 6 -q 6 --channels 2 --hidden 48
    python tools/pyramid_sweep.py /tmp/cut320 --fps 6 -q 2 --frame-skip 1
    python tools/pyramid_sweep.py /tmp/cut320 --fps 6 -q 2 --flow-level 4   (MV-Pyramid-MC, experiment 18)
    python tools/pyramid_sweep.py /tmp/cut320 --fps 6 -q 2,4 --arch mv-hinerv --preset medium   (issue 16)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import click

from mvcodec.bitstream import read_index
from mvcodec.bitstream.stream import read_segment_tensors
from mvcodec.compress.decoding import segment_ideal_bits, segment_symbols
from mvcodec.encoder import EncodeOptions, encode, recipe
from mvcodec.io import open_source
from mvcodec.io.formats import parse_fps
from mvcodec.model import register
from mvcodec.model.base import Role
from mvcodec.model.pyramid import MVPyramidArchitecture, PyramidConfig
from mvcodec.model.pyramid_mc import MVPyramidMCArchitecture, PyramidMCConfig
from mvcodec.presets import LOSSES
from mvcodec.train.fit import LATENT_PROXIES


def variant(
    channels: int | None,
    hidden: int | None,
    frame_skip: int,
    latent_lr: float | None,
    flow_level: int | None = None,
    arm_hidden: int = 0,
    frame_channels: int | None = None,
    motion_gaussian: bool = False,
    motion_mode4: bool = False,
    levels: int | None = None,
    bf16_tables: bool = False,
) -> str:
    """Register MV-Pyramid (MV-Pyramid-MC with its motion at `flow_level` where one is given) with
    `channels` view and view-and-frame channels a level, width `hidden` (None: as its sizing gives),
    view-and-frame grids from level `frame_skip`, the latents' learning rate scaled by `latent_lr`
    (None: as it is) and, with `motion_gaussian`, its motion coded under Gaussians (model_mode 2) rather than
    Laplace distributions, with `motion_mode4` under model_mode 4 (before experiment 31) rather than 6, with
    `levels` levels (None: the sizing's), with `bf16_tables` its model mode 5 and 6 tables in bfloat16 pairs
    (before experiment 39) rather than compact; its name."""

    mc = flow_level is not None

    @dataclass(frozen=True)
    class Config(PyramidMCConfig if mc else PyramidConfig):  # a config type of its own, as the registry asks
        pass

    class Variant(MVPyramidMCArchitecture if mc else MVPyramidArchitecture):
        id, config_type, legacy_ids = 0x80F0, Config, ()  # its base's experimental id is not its own
        name = ("mv-pyramid-mc" if mc else "mv-pyramid") + "".join(
            f"-{k}{v}"
            for k, v in (
                ("c", channels),
                ("h", hidden),
                ("s", frame_skip or None),
                ("lr", latent_lr),
                ("m", flow_level),
                ("arm", arm_hidden or None),
                ("fc", frame_channels),
                ("g", "m" if motion_gaussian else None),
                ("mm", 4 if motion_mode4 else None),
                ("l", levels),
                ("t", "bf16" if bf16_tables else None),
            )
            if v is not None
        )
        if latent_lr is not None:  # else its base's
            lr_scales = {Role.LATENT: latent_lr}
        motion_laplace = not motion_gaussian
        motion_phased = not motion_mode4
        compact_tables = mc and not bf16_tables

        def size_for(self, shape, params):
            base = super().size_for(shape, params).to_dict()
            if channels is not None:
                base.update(view_channels=channels, frame_channels=channels)
            if frame_channels is not None:
                base["frame_channels"] = frame_channels
            if hidden is not None:
                base["hidden"] = hidden
            if levels is not None:
                base["levels"] = levels
            if mc:
                base["flow_level"] = flow_level
            base["arm_hidden"] = arm_hidden
            return Config(**{**base, "frame_skip": min(frame_skip, base["levels"] - 1)})

    return register(Variant()).name


def tensor_kbits(path: Path) -> dict[str, float]:
    """Ideal kbit of each tensor of the stream's first segment (read in this process, which knows the variant)."""
    with open(path, "rb") as f:
        seg = read_index(f).segments[0]
        tensors = read_segment_tensors(f, seg)
    bits = segment_ideal_bits(tensors, segment_symbols(tensors))
    return {t.name: round(b / 1000, 2) for t, b in zip(tensors, bits, strict=True)}


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--fps", default="30", show_default=True)
@click.option("-f", "--frames", type=int, help="Frames per view (default: all).")
@click.option("--epochs", type=int, help="Override the preset's fit epochs (and --qat-epochs the QAT's).")
@click.option("--qat-epochs", type=int)
@click.option("-q", "--quality", default="4", show_default=True, help="Comma-separated -q points.")
@click.option("--preset", default="fast", show_default=True)
@click.option("--channels", type=int, help="View and view-and-frame channels a level (default: the sizing's).")
@click.option("--hidden", type=int, help="Synthesis width (default: the sizing's).")
@click.option("--frame-skip", default=0, show_default=True, help="First level with view-and-frame grids.")
@click.option("--lr", type=float, help="Learning rate (default: the architecture's).")
@click.option(
    "--latent-lr",
    type=float,
    help="The latents' learning rate as a multiple of --lr (default: the architecture's, 30 or 15).",
)
@click.option("--flow-level", type=int, help="MV-Pyramid-MC with its motion fields at this level's grid size.")
@click.option("--arm", "arm_hidden", default=0, help="Code the grids with an entropy-model network this wide.")
@click.option("--frame-channels", type=int, help="View-and-frame channels a level (0: none; after --channels).")
@click.option("--latent-proxy", type=click.Choice(LATENT_PROXIES), help="QAT's latent proxy (TrainConfig).")
@click.option("--batch-size", type=int, help="Frames a step (default: the preset's).")
@click.option("--price-frames", is_flag=True, default=None, help="A chain's rate term prices the batch's frames alone.")
@click.option("--motion-gaussian", is_flag=True, help="MV-Pyramid-MC's motion under Gaussians (before exp. 25).")
@click.option("--motion-mode4", is_flag=True, help="MV-Pyramid-MC's motion in model_mode 4 (before exp. 31).")
@click.option("--levels", type=int, help="Levels of the pyramid (default: the sizing's).")
@click.option("--bf16-tables", is_flag=True, help="MV-Pyramid-MC's mode 5 and 6 tables in bfloat16 (before exp. 39).")
@click.option("--seed", type=int, help="Seed of initialisation and batch order (default: the recipe's).")
@click.option("--rate-warmup", type=float, help="Fraction of QAT's steps over which the rate weight rises from 0.")
@click.option("--noise-ramp", type=float, help="Fraction of QAT after which Quant-Noise rounds every value.")
@click.option("--loss", type=click.Choice(LOSSES), help="Training loss (default: the architecture's).")
@click.option("--adam-beta2", type=float, help="Adam's second-moment decay (default: the recipe's).")
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the streams here (q<N>.mvinr).")
@click.option("--arch", "arch_name", help="A registered architecture, as it is (without the variant's knobs above).")
def main(
    inputs, fps, frames, epochs, qat_epochs, quality, preset, channels, hidden, frame_skip, lr, latent_lr, flow_level,
    arm_hidden, frame_channels, latent_proxy, batch_size, price_frames, motion_gaussian, motion_mode4, levels,
    bf16_tables, seed, rate_warmup, noise_ramp, loss, adam_beta2, keep, arch_name,
):  # fmt: skip
    knobs = (channels, hidden, frame_skip or None, latent_lr, flow_level, arm_hidden or None, frame_channels, levels)
    changed = any(k is not None for k in knobs)
    flags = (("--motion-gaussian", motion_gaussian), ("--motion-mode4", motion_mode4), ("--bf16-tables", bf16_tables))
    for flag, given in flags:
        if given and flow_level is None:
            raise click.BadParameter("only MV-Pyramid-MC has motion: give --flow-level", param_hint=flag)
    more = (motion_gaussian, motion_mode4, levels, bf16_tables)
    if arch_name and (changed or any(given for _, given in flags)):
        raise click.BadParameter(
            "a registered architecture runs as it is: drop the variant's options", param_hint="--arch"
        )
    name = (
        variant(channels, hidden, frame_skip, latent_lr, flow_level, arm_hidden, frame_channels, *more)
        if changed
        else arch_name or "mv-pyramid"
    )
    # None: the recipe's
    train = {"lr": lr, "latent_proxy": latent_proxy, "batch_size": batch_size, "price_frames": price_frames}
    # also recorded in each row where given
    recorded = {
        "seed": seed,
        "rate_warmup": rate_warmup,
        "noise_ramp": noise_ramp,
        "loss": loss,
        "adam_beta2": adam_beta2,
    }
    train |= recorded
    source = open_source(list(inputs), fps=parse_fps(fps), frames=frames)
    with TemporaryDirectory() as tmp:
        for q in (int(x) for x in quality.split(",")):
            rec = recipe(preset, arch=name, epochs=epochs, qat_epochs=qat_epochs, **train)
            # without the enci chunk, as rd_bench measures mvenc --no-info against x265 without its info SEI
            opts = EncodeOptions(rec, arch=name, quality=q, progress=False, info=False)
            r = encode(source, Path(tmp) / f"q{q}.mvinr", opts, log=lambda *_: None)
            row = {"arch": name, "q": q, "bpp": r.bpp, "psnr_yuv": r.quality["psnr_yuv"], "params": r.params}
            row |= {k: r.quality[k] for k in ("psnr_y", "psnr_u", "psnr_v") if k in r.quality}
            row |= {k: v for k, v in recorded.items() if v is not None}
            row |= {"macs_per_pixel": r.macs_per_pixel, "encode_seconds": r.encode_seconds}
            click.echo(json.dumps({**row, "kbit": tensor_kbits(Path(tmp) / f"q{q}.mvinr")}))
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(tmp) / f"q{q}.mvinr", Path(keep) / f"q{q}.mvinr")
    source.close()


if __name__ == "__main__":
    main()
