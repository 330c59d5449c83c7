"""Files written so that an interruption never leaves a truncated result behind."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


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
