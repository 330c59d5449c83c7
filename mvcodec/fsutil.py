"""Files written so that an interruption never leaves a truncated result behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mvcodec.errors import InputError

STDIN = "-"


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """Open `path`.part for writing; on success fsync and rename it to `path`, on failure remove it."""
    path = Path(path)
    part = path.with_name(path.name + ".part")
    try:
        with open(part, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def write_json(path: Path, record: dict) -> None:
    """Write a JSON record atomically."""
    with atomic_write(path) as f:
        f.write((json.dumps(record, indent=2) + "\n").encode())


def check_output_file(path: Path, option: str = "output", inputs: tuple[str, ...] = ()) -> None:
    """InputError, before any work, where `path` cannot become a file: it is a directory, one of the inputs,
    or in a directory that cannot be created or written."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: the {option} is an existing directory; name a file in it, e.g. {path / 'out.mvinr'}")
    if any(i != STDIN and Path(i).exists() and path.exists() and Path(i).samefile(path) for i in inputs):
        raise InputError(f"{path}: the {option} is also an input; write it elsewhere")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{path}: the {option}'s directory cannot be made ({parent} is a file); choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write in {parent} (permission denied); choose another {option} path")


@contextlib.contextmanager
def stdin_copy(suffix_of=lambda head: "") -> Iterator[Path]:
    """Standard input copied to a temporary file (removed afterwards), named stdin<suffix>, the suffix chosen
    from its first bytes; InputError where standard input is a terminal or empty."""
    if sys.stdin is None or sys.stdin.isatty():
        raise InputError("'-' reads standard input, which is a terminal here; pipe the data in (... | mvenc - ...)")
    source = sys.stdin.buffer
    head = source.read(64)
    if not head:
        raise InputError("'-': standard input is empty")
    with tempfile.TemporaryDirectory(prefix="mvcodec-stdin-") as folder:
        path = Path(folder) / f"stdin{suffix_of(head)}"
        with open(path, "wb") as f:
            f.write(head)
            shutil.copyfileobj(source, f, 1 << 20)
        yield path
