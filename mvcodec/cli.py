"""Command-line tools: mvenc, mvdec, mvinfo. Failures end with one line on stderr and a documented exit code.

Each command imports what it needs when it runs, so mvdec and mvinfo load no training code.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path

import click

from mvcodec import __version__
from mvcodec.errors import InputError
from mvcodec.fsutil import write_json
from mvcodec.io.formats import parse_fps, parse_size
from mvcodec.presets import DEFAULT_ARCH, DEFAULT_PRESET, LOSSES, PRESETS, preset_help

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(prog: str, message: str, code: int) -> None:
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(code)


DEFAULT_MAX_PIXELS = 8192 * 8192  # mvdec --max-pixels


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


def open_cli_source(inputs, size, pix_fmt, fps, frames, seek, views, filters=None):
    """open_source() from the CLI's option strings."""
    from mvcodec.io.source import open_source

    return open_source(
        inputs,
        size=parse_size(size) if size else None,
        pix_fmt_name=pix_fmt,
        fps=parse_fps(fps) if fps else None,
        frames=frames,
        seek=seek,
        views=views,
        filters=filters,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, metavar="INPUT... OUTPUT.mvinr")
@source_options
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output stream.")
@click.option(
    "--crop",
    metavar="WxH+X+Y",
    help="Crop every view to WxH with its top-left corner at X,Y (even numbers) as it is read, before --scale.",
)
@click.option(
    "--scale", metavar="WxH", help="Scale every view to WxH (libswscale bicubic, as ffmpeg -vf scale), after --crop."
)
@click.option(
    "--preset",
    default=DEFAULT_PRESET,
    show_default=True,
    metavar="|".join(PRESETS),
    help=preset_help(),
)
@click.option(
    "--arch",
    default=DEFAULT_ARCH,
    show_default=True,
    metavar="NAME",
    help="Network architecture, by its registered name (an unknown name lists them).",
)
@click.option(
    "-q",
    "--quality",
    type=int,
    metavar="0-8",
    help="Quality level (default 4): lambda doubles per level (the pyramid architectures, which also widen from 7 "
    "up; mv-mginr: the model size doubles too).",
)
@click.option("--params", metavar="N", help="Model size in parameters (250k, 1.5M); overrides -q.")
@click.option(
    "--bpp", type=float, metavar="X", help="Rate control: make the file X bits per pixel (all views); overrides -q."
)
@click.option(
    "-b", "--bitrate", type=float, metavar="KBPS", help="Rate control: kbit/s over all views at the input's fps."
)
@click.option(
    "--sparsity",
    type=float,
    help="Fraction of the conv weights pruned (mv-mginr: default 0.4; mv-hinerv: 0.15).",
)
@click.option("--lambda", "rate_lambda", type=float, help="Rate-distortion trade-off of QAT: L = R + lambda D.")
@click.option("--prune-epochs", type=int, help="Override the preset's fine-tuning epochs after pruning (mv-mginr).")
@click.option("--qat-epochs", type=int, help="Override the preset's quantisation-aware training epochs.")
@click.option("--epochs", type=int, help="Override the preset's fitting epochs.")
@click.option("--batch-size", type=int, help="Frames per training step (default 2).")
@click.option("--lr", type=float, help="Peak learning rate (default: the architecture's, 1e-2; mv-mginr 2e-3).")
@click.option(
    "--loss",
    type=click.Choice(LOSSES),
    help="Training loss (default: the architecture's): psnr-yuv, the frames' mean PSNR-YUV 6:1:1 as the RD tables "
    "measure it (mv-pyramid-mc's); mse-yuv, the MSE of YUV 6:1:1, which gives luma more of the rate (mv-pyramid's); "
    "l1-ssim, L1 + SSIM on RGB (mv-mginr's, its L1 motion-weighted). -q's lambda is set for the architecture's own.",
)
@click.option("--no-motion-mask", is_flag=True, help="mv-mginr: train with plain L1 + SSIM (the paper's ablation).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="Use torch.compile for training (CUDA).")
@click.option(
    "--precision",
    type=click.Choice(["bf16", "fp32"]),
    default="bf16",
    show_default=True,
    help="CUDA training arithmetic: bf16 autocast with channels-last, or plain float32. The CPU trains in float32.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation and batch order.")
@click.option(
    "--checkpoint-every",
    type=int,
    default=10,
    show_default=True,
    metavar="EPOCHS",
    help="Write OUTPUT.ckpt every so many epochs (and on Ctrl-C).",
)
@click.option(
    "--segment-frames",
    type=int,
    metavar="N",
    help="Frames per segment (an independently decodable model); default: segments of at most 100 frames.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted encode from its checkpoints.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep OUTPUT.ckpt (the trained float32 model) after writing.")
@click.option(
    "--no-info",
    is_flag=True,
    help="Leave out the encoder-information chunk (the command, settings and versions, about 1 kB), as x265's "
    "--no-info leaves out its SEI.",
)
@click.option("--threads", type=int, metavar="N", help="CPU threads for torch and OpenCV (default: all cores).")
@click.option("--no-progress", is_flag=True, help="No progress display.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors (implies --no-progress).")
@click.option(
    "--dry-run", is_flag=True, help="Check the inputs, options and output, print what would be encoded, and stop."
)
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
    crop,
    scale,
    preset,
    arch,
    quality,
    params,
    bpp,
    bitrate,
    sparsity,
    rate_lambda,
    prune_epochs,
    qat_epochs,
    epochs,
    batch_size,
    lr,
    loss,
    no_motion_mask,
    device,
    compile_,
    precision,
    seed,
    checkpoint_every,
    segment_frames,
    resume,
    keep_checkpoints,
    no_info,
    threads,
    no_progress,
    quiet,
    dry_run,
    stats,
):
    """Encode a multi-view YUV 4:2:0 video to an .mvinr stream.

    INPUT is one file per view (raw .yuv, MIV-named .yuv, .y4m, or any video PyAV reads), a directory
    of them, or one raw file holding all views with --views N.
    """
    from mvcodec.device import set_threads
    from mvcodec.fsutil import STDIN, check_output_file, stdin_copy
    from mvcodec.io.filters import SourceFilters
    from mvcodec.io.formats import parse_crop

    inputs, output = split_paths(list(paths), output)
    say = (lambda *a, **k: None) if quiet else click.echo
    set_threads(threads)
    filters = SourceFilters(parse_crop(crop) if crop else None, parse_size(scale, "--scale") if scale else None)
    from mvcodec import encoder  # after the cheap checks: it loads torch

    rec = encoder.recipe(
        preset,
        arch=arch,
        epochs=epochs,
        prune_epochs=prune_epochs,
        qat_epochs=qat_epochs,
        sparsity=sparsity,
        rate_lambda=rate_lambda,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        checkpoint_every=checkpoint_every,
        compile=compile_ or None,
        precision=precision,
        motion_weight=0.0 if no_motion_mask else None,
        loss=loss,
    )
    opts = encoder.EncodeOptions(
        rec,
        encoder.pick_device(device),
        arch=arch,
        quality=quality,
        params=params,
        bpp=bpp,
        kbps=bitrate,
        segment_frames=segment_frames,
        resume=resume,
        progress=not (no_progress or quiet),
        keep_checkpoints=keep_checkpoints,
        info=not no_info,
        command=" ".join(["mvenc", *sys.argv[1:]]),
    )
    if output is None and not dry_run:
        raise InputError("no output given; end the command with OUT.mvinr (or pass -o OUT.mvinr)")
    if output is not None and str(output) == STDIN:
        raise InputError("the output cannot be '-': a stream is written to a file (OUT.mvinr); mvdec reads one from -")
    if output is not None:
        check_output_file(output, "output", tuple(inputs))
    if stats is not None:
        check_output_file(stats, "--stats file", tuple(inputs))
    with contextlib.ExitStack() as stack:
        if STDIN in inputs:
            if len(inputs) > 1:
                raise InputError("'-' (standard input) must be the only input; it may hold all views with --views N")
            inputs = [stack.enter_context(stdin_copy(_stdin_suffix))]
        source = open_cli_source(inputs, size, pix_fmt, fps, frames, seek, views, filters)
        stack.callback(source.close)
        if dry_run:
            say("mvenc: dry run: the input and options are valid; nothing is encoded")
            for line in source.summary_lines():
                say(line)
            if output is not None:
                say(f"output   {output}")
            if stats:
                write_json(stats, source.describe())
            return
        for line in source.summary_lines():
            say(line)
        epochs_text = " + ".join(str(p.epochs) for p in rec.phases)
        say(
            f"training: preset {preset}, {epochs_text} epochs ({', '.join(p.name for p in rec.phases)}"
            f"{f'; {rec.compress.sparsity:.0%} pruning' if rec.phase('prune') else ''}), "
            f"loss {rec.train.loss}, batch {rec.train.batch_size}, lr {rec.train.lr:g}, "
            f"device {opts.device}, seed {rec.train.seed}"
        )
        try:
            result = encoder.encode(source, output, opts, log=say)
        except KeyboardInterrupt:
            click.echo(
                f"mvenc: interrupted; {output} was not written and the checkpoints keep the progress: "
                "repeat the command with --resume",
                err=True,
            )
            sys.exit(EXIT_INTERRUPTED)
        for line in encoder.summary_lines(result):
            say(line)
        if stats:
            write_json(stats, result.record())


def _stdin_suffix(head: bytes) -> str:
    """What mvenc takes standard input as, from its first bytes: Y4M, else raw; a container or a stream is refused."""
    from mvcodec.bitstream.syntax import SIGNATURE

    if head.startswith(b"YUV4MPEG2"):
        return ".y4m"
    if head[4:8] == b"ftyp" or head.startswith((b"\x1a\x45\xdf\xa3", b"RIFF", SIGNATURE[:4])):
        raise InputError(
            "'-': standard input holds a container or a stream, which mvenc cannot read from a pipe; "
            "pipe Y4M (ffmpeg -i IN -f yuv4mpegpipe -) or raw YUV, or give the file's path"
        )
    return ".yuv"


def _is_stream(path: Path) -> bool:
    """Whether a file starts with the .mvinr signature (an earlier output of the same command)."""
    from mvcodec.bitstream.syntax import SIGNATURE

    try:
        with open(path, "rb") as f:
            return f.read(len(SIGNATURE)) == SIGNATURE
    except OSError:
        return False


def split_paths(paths: list[str], output: Path | None) -> tuple[list[str], Path | None]:
    """mvenc's positional paths as (inputs, output), x265-style: without -o, the last of two or more paths
    is the output where it ends in .mvinr, or where it does not exist and is not named like a video file."""
    if output is not None or len(paths) < 2:
        return paths, output
    last = paths[-1]
    if last.lower().endswith(".mvinr") or _is_stream(Path(last)):
        return paths[:-1], Path(last)
    if last != "-" and not Path(last).exists():
        from mvcodec.io.source import CONTAINER_SUFFIXES, RAW_SUFFIXES, Y4M_SUFFIXES

        if Path(last).suffix.lower() in RAW_SUFFIXES | Y4M_SUFFIXES | CONTAINER_SUFFIXES:
            raise InputError(f"{last}: no such file; if it is meant as the output, name it .mvinr (or pass -o)")
        return paths[:-1], Path(last)
    return paths, output


def mvenc_main() -> None:
    run_cli(mvenc, "mvenc")


EXIT_MD5_MISMATCH = 10


def parse_index_list(text: str, count: int, what: str, names: tuple[str, ...] = ()) -> list[int]:
    """Indices from '0,3', '10-19', '5-' (to the end) or view names, each checked against `count`."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if part in names:
            out.append(names.index(part))
            continue
        lo, sep, hi = part.partition("-")
        try:
            first = int(lo)
            last = (int(hi) if hi else count - 1) if sep else first
        except ValueError:
            raise InputError(f"--{what}: cannot read '{part}'; write e.g. 0,3 or 10-19") from None
        if not 0 <= first <= last < count:
            raise InputError(f"--{what}: '{part}' is outside 0-{count - 1}")
        out.extend(range(first, last + 1))
    if len(set(out)) != len(out):
        raise InputError(f"--{what}: '{text}' names an index twice")
    return sorted(out)


@contextlib.contextmanager
def stream_input(stream: str):
    """A stream argument as a path: a file that must exist, or '-' for standard input (copied to a temporary
    file, for the decoder seeks)."""
    from mvcodec.fsutil import STDIN, stdin_copy

    if stream == STDIN:
        with stdin_copy(lambda head: ".mvinr") as path:
            yield path
        return
    path = Path(stream)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give an .mvinr stream file")
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    yield path


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("stream", metavar="STREAM|-")
@click.option(
    "-o",
    "--output",
    metavar="DIR|-",
    help="Output directory (one file per view, MIV names), or - for stdout (raw: the views one after another; "
    "Y4M: one view).",
)
@click.option("--y4m", is_flag=True, help="Write Y4M (<view>.y4m) instead of raw YUV.")
@click.option("--views", "view_list", metavar="LIST", help="Views to decode: indices or names, e.g. 0,3 or 0-2.")
@click.option("--frames", "frame_list", metavar="LIST", help="Frames to decode, e.g. 10-19 or 0,5,9.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["auto", "reference", "fast"]),
    default="auto",
    show_default=True,
    help="reference: float32, deterministic (conformance); fast: float16 on CUDA. auto: fast on CUDA.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 256),
    help="Frames per forward pass (default: 4 on a GPU; on the CPU 1 for the pyramid architectures, 4 for mv-mginr).",
)
@click.option(
    "--band-rows",
    type=int,
    metavar="N",
    help="Synthesise frames N rows at a time (even; default: whole frames, in bands of about 65536 pixels for "
    "larger frames of the pyramid architectures on the CPU, and the largest band that fits --max-memory where "
    "that does not).",
)
@click.option("--threads", type=int, metavar="N", help="CPU threads (default: all cores).")
@click.option(
    "--max-pixels",
    type=click.IntRange(0),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse streams whose frames have more pixels (8192x8192; 0: no limit).",
)
@click.option(
    "--max-memory",
    metavar="SIZE",
    help="Refuse to decode what needs more memory, e.g. 4G or 512M (default: the memory available; 0: no limit).",
)
@click.option("--md5", is_flag=True, help="Print the MD5 of each output (md5sum format).")
@click.option(
    "--check-md5",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Compare the outputs' MD5s with FILE (md5sum format); exit code 10 on a mismatch.",
)
@click.option("--no-progress", is_flag=True, help="No progress display.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors and what --md5 asks for.")
@click.version_option(__version__, prog_name="mvdec")
def mvdec(
    stream,
    output,
    y4m,
    view_list,
    frame_list,
    device,
    precision,
    batch,
    band_rows,
    threads,
    max_pixels,
    max_memory,
    md5,
    check_md5,
    no_progress,
    quiet,
):
    """Decode an .mvinr stream (- reads it from standard input) to YUV 4:2:0 views.

    Without -o, the stream is decoded and checked (with --md5 or --check-md5) but nothing is written.
    """
    import time

    from mvcodec.decoder import Decoder
    from mvcodec.device import available_memory, pick_device, set_threads
    from mvcodec.io.output import ViewOutputs, md5_lines, md5_mismatches, read_md5_file
    from mvcodec.progress import Progress

    if output is None and not (md5 or check_md5):
        raise InputError("no output given: add -o DIR (or -o - for stdout), or --md5 to decode and hash only")
    set_threads(threads)
    memory_limit = parse_bytes(max_memory, "--max-memory") if max_memory is not None else available_memory()
    expected = read_md5_file(check_md5) if check_md5 else None
    info = sys.stderr if output == "-" else sys.stdout
    say = (lambda *a, **k: None) if quiet else click.echo
    started = time.monotonic()
    with stream_input(stream) as path, Decoder(path, pick_device(device), precision, batch, band_rows) as dec:
        seq = dec.sequence
        views = parse_index_list(view_list, seq.views, "views", seq.view_names) if view_list else list(range(seq.views))
        frames = parse_index_list(frame_list, seq.frames, "frames") if frame_list else list(range(seq.frames))
        if output == "-" and y4m and len(views) != 1:
            raise InputError(
                f"-o - --y4m: a Y4M stream holds one view; add --views with one of 0-{seq.views - 1}, "
                "or drop --y4m to write the views' raw frames one view after another"
            )
        dec.check_limits(frames, max_pixels, memory_limit, max_memory is None, len(views))
        names = {v: seq.view_names[v] for v in views}
        with ViewOutputs(output, names, seq.fmt, y4m, seq.color.chroma_siting) as outputs:
            bar = Progress(len(views) * len(frames), "decoding", "frames", enabled=not (no_progress or quiet))
            # stdout takes the views one after another (as mvenc reads one raw file with --views N)
            order = [[v] for v in views] if output == "-" else [views]
            for group in order:
                for out in dec.frames(group, frames):
                    outputs.write(out.view, out.planes)
                    bar.update()
            bar.close()
        seconds = time.monotonic() - started
        say(
            f"mvdec: decoded {len(views)} views x {len(frames)} frames ({seq.width}x{seq.height} "
            f"{seq.pix_fmt.name}) in {seconds:.2f} s, {len(frames) / seconds:.1f} fps per view, "
            f"{'fast' if dec.fast else 'reference'} path on {dec.device}",
            file=info,
        )
    sums = outputs.md5s()
    if md5:
        for line in md5_lines(sums):
            click.echo(line, file=info)
    if expected is not None:
        bad = md5_mismatches(sums, expected)
        for name, state in bad.items():
            click.echo(f"mvdec: {name}: {state}", err=True)
        if bad:
            click.echo(f"mvdec: error: {len(bad)} of {len(sums)} outputs do not match {check_md5}", err=True)
            sys.exit(EXIT_MD5_MISMATCH)
        say(f"mvdec: all {len(sums)} outputs match {check_md5}", file=info)


UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str, option: str) -> int:
    """A size in bytes: a number with an optional K, M, G or T (powers of 1024; then B or iB allowed), e.g. 4G."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])i?)?b?\s*", text.lower())
    value = int(float(m.group(1)) * UNITS[m.group(2) or ""]) if m and len(m.group(1)) <= 20 else -1
    if value < 0 or (value == 0 and float(m.group(1)) != 0):
        raise InputError(f"{option}: '{text}' is not a size; give bytes with an optional K, M, G or T, e.g. 4G")
    return value


def mvdec_main() -> None:
    run_cli(mvdec, "mvdec")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("stream", metavar="STREAM|-")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON record instead of text.")
@click.option(
    "--max-memory",
    metavar="SIZE",
    help="Refuse a stream whose parameters need more memory to decode, e.g. 4G (default: the memory available; "
    "0: no limit).",
)
@click.version_option(__version__, prog_name="mvinfo")
def mvinfo(stream, as_json, max_memory):
    """Show what is in an .mvinr stream (- reads it from standard input): sequence, rate, model, chunks,
    per-tensor bits, parameter hash, and what decoding it needs."""
    from mvcodec.device import available_memory
    from mvcodec.errors import HashMismatch
    from mvcodec.info import report_lines, stream_report

    limit = parse_bytes(max_memory, "--max-memory") if max_memory is not None else available_memory()
    with stream_input(stream) as path:
        report = stream_report(path, limit, max_memory is None)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for line in report_lines(report):
            click.echo(line)
    if not report["hash_ok"]:
        raise HashMismatch("decoded parameters do not match the stream's SHA-256 (the file is damaged)")


def mvinfo_main() -> None:
    run_cli(mvinfo, "mvinfo")
