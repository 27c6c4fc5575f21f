"""Atomic file writes: results are written whole or not at all.

Every file ShrinkML produces (checkpoints, manifests, audio, run records, benchmark results)
goes through :func:`atomic_file`: the content is written to a temporary file in the
destination's folder, flushed to disk, made world-readable, and renamed over the destination,
so an interrupted write never leaves a truncated file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_file", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str], mode: str = "wb", *, fsync: bool = True, **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the block ends without an error.

    Args:
        path: the destination; its folder is created if needed.
        mode: ``"wb"`` or ``"w"`` (text; pass ``encoding=...``).
        fsync: force the data to disk before the rename (skip it for bulk files, such as a
            corpus' audio, whose completeness another file records).

    Yields:
        The open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file mode must be 'wb' or 'w'; got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_file(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
