"""Command-line tools: mvenc. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from mvcodec import __version__
from mvcodec.errors import InputError
from mvcodec.fsutil import atomic_write
from mvcodec.io import open_source, parse_fps, parse_size

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(prog: str, message: str, code: int) -> None:
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(code)


def run_cli(command: click.Command, prog: str, args: list[str] | None = None) -> None:
    """Run a click command, turning every expected failure into one line on stderr and an exit code."""
    try:
        code = command.main(args=args, prog_name=prog, standalone_mode=False)
    except InputError as e:
        _fail(prog, str(e), e.exit_code)
    except click.ClickException as e:
        _fail(prog, f"{e.format_message()} (see {prog} --help)", EXIT_USAGE)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _fail(prog, "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): nothing left to say
        sys.exit(EXIT_FAILURE)
    except OSError as e:
        _fail(prog, f"{e.filename or ''}: {e.strerror or e}".lstrip(": "), EXIT_FAILURE)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def source_options(fn):
    """The input options shared by the tools that read a source (x265/vvenc spellings)."""
    options = [
        click.option(
            "-s",
            "--size",
            "--input-res",
            "size",
            metavar="WxH",
            help="Frame size of raw .yuv inputs (read from MIV-style names when present).",
        ),
        click.option(
            "--pix-fmt",
            metavar="FMT",
            help="yuv420p (default for raw), yuv420p10le, yuv420p12le or yuv420p16le; for compressed "
            "inputs, the format to convert to (default: keeps the source's bit depth).",
        ),
        click.option("--fps", metavar="N|N/D", help="Frame rate (raw inputs default to 30; overrides Y4M/containers)."),
        click.option("-f", "--frames", type=int, metavar="N", help="Number of frames per view (default: all)."),
        click.option("--seek", type=int, default=0, show_default=True, metavar="K", help="First frame to use."),
        click.option(
            "--views",
            type=int,
            metavar="N",
            help="Number of views; with one raw file, it holds N views one after another.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def open_cli_source(inputs, size, pix_fmt, fps, frames, seek, views):
    """open_source() from the CLI's option strings."""
    return open_source(
        inputs,
        size=parse_size(size) if size else None,
        pix_fmt_name=pix_fmt,
        fps=parse_fps(fps) if fps else None,
        frames=frames,
        seek=seek,
        views=views,
    )


def write_json(path: Path, record: dict) -> None:
    """Write a JSON record atomically."""
    with atomic_write(path) as f:
        f.write((json.dumps(record, indent=2) + "\n").encode())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, metavar="INPUT... OUTPUT.mvinr")
@source_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output stream.")
@click.option(
    "--preset",
    default="medium",
    show_default=True,
    metavar="NAME",
    help="Training length: fast (30 epochs), medium (100), paper (300, as published), slow (600).",
)
@click.option(
    "-q", "--quality", type=int, metavar="1-8", help="Quality level: model size doubles per level (default 4)."
)
@click.option("--params", metavar="N", help="Model size in parameters (250k, 1.5M); overrides -q.")
@click.option("--epochs", type=int, help="Override the preset's number of epochs.")
@click.option("--batch-size", type=int, help="Frames per training step (default 2).")
@click.option("--lr", type=float, help="Peak learning rate (default 2e-3).")
@click.option("--no-motion-mask", is_flag=True, help="Train with plain L1 + SSIM (the paper's ablation).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="Use torch.compile for training (CUDA).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation and batch order.")
@click.option(
    "--checkpoint-every",
    type=int,
    default=10,
    show_default=True,
    metavar="EPOCHS",
    help="Write OUTPUT.ckpt every so many epochs (and on Ctrl-C).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted encode from OUTPUT.ckpt.")
@click.option("--no-progress", is_flag=True, help="No progress display.")
@click.option("--dry-run", is_flag=True, help="Read and check the inputs, print what would be encoded, and stop.")
@click.option(
    "--stats",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.json",
    help="Also write the summary as JSON.",
)
@click.version_option(__version__, prog_name="mvenc")
def mvenc(
    paths,
    size,
    pix_fmt,
    fps,
    frames,
    seek,
    views,
    output,
    preset,
    quality,
    params,
    epochs,
    batch_size,
    lr,
    no_motion_mask,
    device,
    compile_,
    seed,
    checkpoint_every,
    resume,
    no_progress,
    dry_run,
    stats,
):
    """Encode a multi-view YUV 4:2:0 video.

    INPUT is one file per view (raw .yuv, MIV-named .yuv, .y4m, or any video PyAV reads), a directory
    of them, or one raw file holding all views with --views N.
    """
    inputs = list(paths)
    if output is None and len(inputs) > 1 and inputs[-1].lower().endswith(".mvinr"):
        output = Path(inputs.pop())
    source = open_cli_source(inputs, size, pix_fmt, fps, frames, seek, views)
    try:
        if dry_run:
            click.echo("mvenc: dry run: the input is valid; nothing is encoded")
            for line in source.summary_lines():
                click.echo(line)
            if stats:
                write_json(stats, source.describe())
            return
        if output is None:
            raise InputError("no output given; end the command with OUT.mvinr (or pass -o OUT.mvinr)")
        from mvcodec import encoder
        from mvcodec.train.fit import train_config

        tcfg = train_config(
            preset,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            checkpoint_every=checkpoint_every,
            compile=compile_ or None,
            motion_weight=0.0 if no_motion_mask else None,
        )
        if tcfg.epochs <= 0 or tcfg.batch_size <= 0 or tcfg.checkpoint_every <= 0:
            raise InputError("--epochs, --batch-size and --checkpoint-every must be 1 or more")
        cfg = encoder.model_config_for(source, quality, encoder.parse_params(params) if params else None)
        dev = encoder.pick_device(device)
        for line in source.summary_lines():
            click.echo(line)
        click.echo(
            f"training: preset {preset}, {tcfg.epochs} epochs, batch {tcfg.batch_size}, lr {tcfg.lr:g}, "
            f"device {dev}, seed {tcfg.seed}"
        )
        started = time.monotonic()
        try:
            result = encoder.train_model(
                source, cfg, tcfg, dev, work=output, resume=resume, progress=not no_progress, log=click.echo
            )
        except KeyboardInterrupt:
            click.echo(
                f"mvenc: interrupted; {output}.ckpt keeps the progress: repeat the command with --resume", err=True
            )
            sys.exit(EXIT_INTERRUPTED)
        seconds = time.monotonic() - started
        for line in encoder.quality_table(source, result.quality):
            click.echo(line)
        click.echo(
            f"trained in {result.train_seconds:.1f} s ({result.frames_per_second:.1f} frames/s), "
            f"motion masks {result.mask_seconds:.1f} s, total {seconds:.1f} s; model saved in {output}.ckpt "
            "(the .mvinr container arrives with the bitstream issue)"
        )
        if stats:
            per_view = [
                dict(q, view=name) for name, q in zip(source.view_names, result.quality["per_view"], strict=True)
            ]
            write_json(
                stats,
                {
                    **source.describe(),
                    **{k: v for k, v in result.quality.items() if k != "per_view"},
                    "per_view": per_view,
                    "params": cfg.params,
                    "param_split": cfg.param_split(),
                    "epochs": tcfg.epochs,
                    "train_seconds": result.train_seconds,
                    "train_fps": result.frames_per_second,
                    "encode_seconds": seconds,
                    "device": result.device,
                },
            )
    finally:
        source.close()


def mvenc_main() -> None:
    run_cli(mvenc, "mvenc")
