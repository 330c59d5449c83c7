"""Command-line tools: mvenc. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import json
import sys
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
@click.argument("paths", nargs=-1, required=True, metavar="INPUT... [OUTPUT.mvinr]")
@source_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output .mvinr stream.")
@click.option("--dry-run", is_flag=True, help="Read and check the inputs, print what would be encoded, and stop.")
@click.option(
    "--stats",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.json",
    help="Also write the summary as JSON.",
)
@click.version_option(__version__, prog_name="mvenc")
def mvenc(paths, size, pix_fmt, fps, frames, seek, views, output, dry_run, stats):
    """Encode a multi-view YUV 4:2:0 video.

    INPUT is one file per view (raw .yuv, MIV-named .yuv, .y4m, or any video PyAV reads), a directory
    of them, or one raw file holding all views with --views N.
    """
    inputs = list(paths)
    if output is None and len(inputs) > 1 and inputs[-1].lower().endswith(".mvinr"):
        output = Path(inputs.pop())
    source = open_cli_source(inputs, size, pix_fmt, fps, frames, seek, views)
    try:
        if not dry_run:
            raise InputError("this build cannot encode yet; run with --dry-run to check the input")
        click.echo("mvenc: dry run: the input is valid; nothing is encoded")
        for line in source.summary_lines():
            click.echo(line)
        if stats:
            write_json(stats, source.describe())
    finally:
        source.close()


def mvenc_main() -> None:
    run_cli(mvenc, "mvenc")
